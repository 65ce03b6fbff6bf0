package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/membus"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// realGatewayLog runs the iom and shelter gateways of a dev data folder on
// an in-memory bus, sends referrals from iom to the shelter, lets them be
// delivered, stops the gateways and returns the data folder: iom's
// gateway.db is a real gateway's file.
func realGatewayLog(t *testing.T) string {
	t.Helper()
	data := t.TempDir()
	if err := InitDevNetwork(data); err != nil {
		t.Fatal(err)
	}
	gws := startDevGateways(t, data, membus.New(), gateway.Options{WaitRetry: 50 * time.Millisecond})
	sendReferrals(t, gws["iom"], 3)
	deadline := time.Now().Add(10 * time.Second)
	for {
		page, err := gws["iom"].Audit(policy.Principal{Agency: "iom", Subject: "auditor", Scopes: []string{policy.ScopeAuditRead}}, gateway.AuditQuery{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		receipts := 0
		for _, e := range page.Events {
			if e.Action == gateway.ActReceiptReceive {
				receipts++
			}
		}
		if receipts >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("referrals not delivered: %d receipts", receipts)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, gw := range gws {
		if err := gw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return data
}

// startDevGateways starts the iom and shelter gateways of a dev data
// folder on net.
func startDevGateways(t *testing.T, data string, net *membus.Network, opt gateway.Options) map[string]*gateway.Gateway {
	t.Helper()
	gws := map[string]*gateway.Gateway{}
	for _, id := range []string{"iom", "shelter"} {
		cfg := DevGatewayConfig(data, id, "nats://127.0.0.1:1")
		keys, err := gateway.LoadKeys(cfg)
		if err != nil {
			t.Fatal(err)
		}
		gw, err := gateway.New(cfg, keys, net.Bus(id), opt)
		if err != nil {
			t.Fatal(err)
		}
		gw.Start()
		gws[id] = gw
	}
	return gws
}

// sendReferrals sends n referrals from iom to the shelter.
func sendReferrals(t *testing.T, iom *gateway.Gateway, n int) {
	t.Helper()
	p := policy.Principal{Agency: "iom", Subject: "caseworker-1", Scopes: policy.ScopesForKind("ngo")}
	for range n {
		if _, err := iom.Send(context.Background(), p, gateway.Draft{Kind: "referral", Action: policy.ActionReferralSend, Body: benchBody}); err != nil {
			t.Fatal(err)
		}
	}
}

// tamper opens the stopped gateway's file with bbolt, as someone with the
// file could, and changes it.
func tamper(t *testing.T, data string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(data, "gateways", "iom", gatewayDBFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// verifyFails runs `rujukan audit verify` and wants a one-line error
// saying each of want.
func verifyFails(t *testing.T, data string, want ...string) {
	t.Helper()
	_, _, err := runCLI(t, "audit", "verify", "--data", data, "--agency", "iom")
	if !errors.Is(err, store.ErrAuditBroken) {
		t.Fatalf("error %v, want a broken audit log", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("error %q does not say %q in one line", err, w)
		}
	}
}

func TestAuditVerifyRealLog(t *testing.T) {
	data := realGatewayLog(t)
	out, _, err := runCLI(t, "audit", "verify", "--data", data, "--agency", "iom")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "audit log of iom verifies: ") || !strings.Contains(out, "rujukan.id/iom/audit\n") || !strings.Contains(out, "\n— rujukan.id/iom/audit ") {
		t.Fatalf("output %q does not give the event count and the checkpoint", out)
	}
	// The checkpoint printed opens with the key in the directory.
	cp := out[strings.Index(out, "rujukan.id/iom/audit\n"):]
	// The note ends with its last signature line; the lines about the
	// witnesses follow.
	text, sigs, _ := strings.Cut(cp, "\n\n")
	var lines []string
	for _, l := range strings.SplitAfter(sigs, "\n") {
		if !strings.HasPrefix(l, "— ") {
			break
		}
		lines = append(lines, l)
	}
	cp = text + "\n\n" + strings.Join(lines, "")
	if !strings.Contains(out, "witness shelter holds no checkpoint of iom\n") {
		t.Errorf("output %q does not say what the shelter holds", out)
	}
	a, err := crypto.ReadAgencyFile(filepath.Join(data, "agencies", "iom", "agency.json"))
	if err != nil {
		t.Skipf("no agency file to read the public key from: %v", err)
	}
	for _, k := range a.Keys {
		if k.Use != crypto.UseSign {
			continue
		}
		pub, err := crypto.ParseSigningPublicKey(k.Public)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := crypto.AuditNoteVerifier("iom", pub)
		if _, err := note.Open([]byte(cp), note.VerifierList(v)); err != nil {
			t.Fatalf("printed checkpoint: %v\n%s", err, cp)
		}
	}
}

func TestAuditVerifyOneByteChanged(t *testing.T) {
	data := realGatewayLog(t)
	tamper(t, data, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		v := bytes.Clone(b.Get(seqKey(3)))
		i := bytes.Index(v, []byte(`"outcome":"`)) + len(`"outcome":"`)
		v[i] ^= 0x01
		return b.Put(seqKey(3), v)
	})
	verifyFails(t, data, "event 3 was altered")
}

func TestAuditVerifyEventDeleted(t *testing.T) {
	data := realGatewayLog(t)
	tamper(t, data, func(tx *bolt.Tx) error { return tx.Bucket([]byte("audit")).Delete(seqKey(4)) })
	verifyFails(t, data, "event 4 is missing")
}

func TestAuditVerifyEventsSwapped(t *testing.T) {
	data := realGatewayLog(t)
	tamper(t, data, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		e2, e5 := bytes.Clone(b.Get(seqKey(2))), bytes.Clone(b.Get(seqKey(5)))
		if err := b.Put(seqKey(2), e5); err != nil {
			return err
		}
		return b.Put(seqKey(5), e2)
	})
	verifyFails(t, data, "event 2 is out of place")
}

// The swapped events also have their sequence numbers rewritten, so that
// each looks in place: the bytes no longer match the tree.
func TestAuditVerifyEventsSwappedAndRenumbered(t *testing.T) {
	data := realGatewayLog(t)
	tamper(t, data, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		e2, e5 := bytes.Clone(b.Get(seqKey(2))), bytes.Clone(b.Get(seqKey(5)))
		e2 = bytes.Replace(e2, []byte(`{"seq":2,`), []byte(`{"seq":5,`), 1)
		e5 = bytes.Replace(e5, []byte(`{"seq":5,`), []byte(`{"seq":2,`), 1)
		if err := b.Put(seqKey(2), e5); err != nil {
			return err
		}
		return b.Put(seqKey(5), e2)
	})
	verifyFails(t, data, "event 2 was altered")
}

// The last events are cut off, the checkpoint left as it was: it names
// more events than the log holds. (Rolling the checkpoint back too, to an
// older one, is seen only against a witness: a later part of the work.)
func TestAuditVerifyTailTruncated(t *testing.T) {
	data := realGatewayLog(t)
	var last uint64
	tamper(t, data, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		k, _ := b.Cursor().Last()
		last = binary.BigEndian.Uint64(k)
		for seq := last - 2; seq <= last; seq++ {
			if err := b.Delete(seqKey(seq)); err != nil {
				return err
			}
		}
		return nil
	})
	verifyFails(t, data, fmt.Sprintf("event %d is missing", last-2))
}

// A checkpoint over the very same tree, signed with a key that is not the
// agency's, does not verify.
func TestAuditVerifyCheckpointOtherKey(t *testing.T) {
	data := realGatewayLog(t)
	_, other, _ := ed25519.GenerateKey(nil)
	signer, err := crypto.NewAuditNoteSigner("iom", other)
	if err != nil {
		t.Fatal(err)
	}
	tamper(t, data, func(tx *bolt.Tx) error {
		meta := tx.Bucket([]byte("meta"))
		text, _, _ := strings.Cut(string(meta.Get([]byte("audit-checkpoint"))), "\n\n")
		msg, err := note.Sign(&note.Note{Text: text + "\n"}, signer)
		if err != nil {
			return err
		}
		return meta.Put([]byte("audit-checkpoint"), msg)
	})
	verifyFails(t, data, "checkpoint is not signed by the agency's key")
}

// An event is edited and every stored tree hash rebuilt to match: the
// root no longer matches the signed checkpoint (which event changed is
// not known then).
func TestAuditVerifyRebuiltTree(t *testing.T) {
	data := realGatewayLog(t)
	tamper(t, data, func(tx *bolt.Tx) error {
		b, hb := tx.Bucket([]byte("audit")), tx.Bucket([]byte("audit-hashes"))
		v := bytes.Replace(bytes.Clone(b.Get(seqKey(1))), []byte(`"outcome":"`), []byte(`"outcome":"x`), 1)
		if err := b.Put(seqKey(1), v); err != nil {
			return err
		}
		// Rebuild every stored hash from the events.
		r := tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(ix))
			for i, x := range ix {
				copy(out[i][:], hb.Get(binary.BigEndian.AppendUint64(nil, uint64(x))))
			}
			return out, nil
		})
		n := int64(0)
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			hs, err := tlog.StoredHashes(n, v, r)
			if err != nil {
				return err
			}
			for i, h := range hs {
				if err := hb.Put(binary.BigEndian.AppendUint64(nil, uint64(tlog.StoredHashIndex(0, n)+int64(i))), bytes.Clone(h[:])); err != nil {
					return err
				}
			}
			n++
		}
		return nil
	})
	verifyFails(t, data, "does not match the signed checkpoint")
}

// TestAuditVerifyRolledBackToOlderCopy: iom's whole file replaced by an
// older copy of itself verifies on its own (every event, the tree and the
// checkpoint are iom's), and is detected against the later checkpoint the
// shelter witnessed: exit 1, naming the first missing sequence number and
// the witness. Without a witness, audit verify says a rollback would not
// show.
func TestAuditVerifyRolledBackToOlderCopy(t *testing.T) {
	data := t.TempDir()
	if err := InitDevNetwork(data); err != nil {
		t.Fatal(err)
	}
	net := membus.New()
	auditor := policy.Principal{Agency: "shelter", Subject: "auditor", Scopes: []string{policy.ScopeAuditRead}}
	// run sends n referrals and waits until the shelter holds iom's
	// latest checkpoint; it returns that size.
	run := func(n int) uint64 {
		t.Helper()
		gws := startDevGateways(t, data, net, gateway.Options{WaitRetry: 50 * time.Millisecond, WitnessInterval: 50 * time.Millisecond})
		defer func() {
			for _, gw := range gws {
				if err := gw.Close(); err != nil {
					t.Fatal(err)
				}
			}
		}()
		sendReferrals(t, gws["iom"], n)
		deadline := time.Now().Add(10 * time.Second)
		for {
			cp, err := gws["iom"].AuditCheckpoint(policy.Principal{Agency: "iom", Subject: "auditor", Scopes: []string{policy.ScopeAuditRead}})
			if err != nil {
				t.Fatal(err)
			}
			ws, err := gws["shelter"].Witnesses(auditor)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range ws {
				if w.Log == "iom" && w.Size == cp.Size && cp.Size > 0 {
					time.Sleep(200 * time.Millisecond)
					if again, _ := gws["iom"].AuditCheckpoint(policy.Principal{Agency: "iom", Subject: "auditor", Scopes: []string{policy.ScopeAuditRead}}); again.Size == cp.Size {
						return cp.Size
					}
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the shelter does not hold iom's checkpoint of %d events: %+v", cp.Size, ws)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	db := filepath.Join(data, "gateways", "iom", gatewayDBFile)
	old := run(1)
	copyFile(t, db, db+".old")
	later := run(2)
	if later <= old {
		t.Fatalf("the log did not grow: %d then %d events", old, later)
	}
	out, _, err := runCLI(t, "audit", "verify", "--data", data, "--agency", "iom")
	if err != nil {
		t.Fatalf("before the rollback: %v", err)
	}
	if want := fmt.Sprintf("witness shelter holds the checkpoint of %d events: the log extends it\n", later); !strings.Contains(out, want) {
		t.Fatalf("output %q does not say %q", out, want)
	}

	copyFile(t, db+".old", db)
	// The older copy is a sound log of its own...
	out, _, err = runCLI(t, "audit", "verify", "--db", db, "--agency", "iom", "--directory", filepath.Join(data, "network.json"),
		"--authority", "@"+filepath.Join(data, "authority", "authority.pub"))
	if err != nil || !strings.Contains(out, fmt.Sprintf("verifies: %d events", old)) || !strings.Contains(out, "a rollback of the whole log to an older copy would not show") {
		t.Fatalf("the older copy without a witness: %v %q", err, out)
	}
	// ...that the witness shows to be rolled back.
	verifyFails(t, data, fmt.Sprintf("at seq %d: the log ends at %d events, but shelter holds its signed checkpoint of %d events: rolled back", old+1, old, later))
	_, _, err = runCLI(t, "audit", "verify", "--db", db, "--agency", "iom", "--directory", filepath.Join(data, "network.json"),
		"--authority", "@"+filepath.Join(data, "authority", "authority.pub"), "--witness-db", filepath.Join(data, "gateways", "shelter", gatewayDBFile))
	if !errors.Is(err, store.ErrAuditBroken) || !strings.Contains(err.Error(), "rolled back to an older copy") {
		t.Fatalf("with --witness-db: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
