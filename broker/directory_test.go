package broker

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/rujukan/rujukan/broker/client"
	"github.com/rujukan/rujukan/crypto"
)

// signRaw signs arbitrary directory JSON with the network's authority, in
// the directory file form, so tests can produce signed but invalid
// contents that SignDirectory would refuse to sign.
func (n *testNet) signRaw(t *testing.T, body []byte) []byte {
	t.Helper()
	sig := ed25519.Sign(n.AuthPriv, append([]byte("rujukan/v1/directory\x00"), body...))
	out, err := json.Marshal(map[string]any{
		"directory": json.RawMessage(body),
		"signature": map[string]string{
			"alg": "Ed25519", "key_id": crypto.AuthorityKeyID(n.AuthPub),
			"value": base64.StdEncoding.EncodeToString(sig),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// badDirectories returns directories the broker must refuse, each with
// the sentinel and a fragment of the message it must give. n.Dir must be
// at version v.
func badDirectories(t *testing.T, n *testNet) []struct {
	name string
	dir  []byte
	is   error
	msg  string
} {
	cur := n.Dir
	next := cur
	next.Version = cur.Version + 1
	next.Agencies = append([]crypto.Agency(nil), cur.Agencies...)

	older := next
	older.Version = cur.Version - 1
	olderSigned := []byte(nil)
	if older.Version > 0 {
		olderSigned, _ = crypto.SignDirectory(&older, n.AuthPriv)
	}
	_, otherAuthority, _ := ed25519.GenerateKey(nil)
	forged, err := crypto.SignDirectory(&next, otherAuthority)
	if err != nil {
		t.Fatal(err)
	}
	valid, err := crypto.SignDirectory(&next, n.AuthPriv)
	if err != nil {
		t.Fatal(err)
	}
	tampered := []byte(strings.Replace(string(valid), `"version": `, `"version": 9`, 1))
	unsigned, _ := json.Marshal(next)

	dup := next
	dup.Agencies = append(append([]crypto.Agency(nil), next.Agencies...), next.Agencies[0])
	dupBody, _ := json.Marshal(dup)

	badKey := next
	badKey.Agencies = append([]crypto.Agency(nil), next.Agencies...)
	a := badKey.Agencies[0]
	a.Keys = append([]crypto.PublicKey(nil), a.Keys...)
	for i := range a.Keys {
		if a.Keys[i].Use == crypto.UseNATS {
			a.Keys[i].Public = "UNOTANKEY"
			a.Keys[i].ID = crypto.KeyID(crypto.UseNATS, "UNOTANKEY")
		}
	}
	badKey.Agencies[0] = a
	badKeyBody, _ := json.Marshal(badKey)

	seedAsKey := next
	seedAsKey.Agencies = append([]crypto.Agency(nil), next.Agencies...)
	b := seedAsKey.Agencies[0]
	b.Keys = append([]crypto.PublicKey(nil), b.Keys...)
	for i := range b.Keys {
		if b.Keys[i].Use == crypto.UseNATS {
			seed := string(n.Agencies[b.ID].Seed)
			b.Keys[i] = crypto.NewPublicKey(crypto.UseNATS, seed)
		}
	}
	seedAsKey.Agencies[0] = b
	seedBody, _ := json.Marshal(seedAsKey)

	// Right shape (crypto accepts it), wrong checksum: only the broker's
	// nkey parser refuses it.
	badSum := next
	badSum.Agencies = append([]crypto.Agency(nil), next.Agencies...)
	c := badSum.Agencies[0]
	c.Keys = append([]crypto.PublicKey(nil), c.Keys...)
	for i := range c.Keys {
		if c.Keys[i].Use == crypto.UseNATS {
			k := []byte(c.Keys[i].Public)
			k[20] = map[bool]byte{true: 'B', false: 'A'}[k[20] == 'A']
			c.Keys[i] = crypto.NewPublicKey(crypto.UseNATS, string(k))
		}
	}
	badSum.Agencies[0] = c
	badSumBody, _ := json.Marshal(badSum)
	if _, err := crypto.ParseDraft(badSumBody); err != nil {
		t.Fatalf("crypto refuses the key with a bad checksum (%v); this case tests the broker's own check", err)
	}

	sameVersion := cur
	sameVersion.Network = "changed"
	sameSigned, _ := crypto.SignDirectory(&sameVersion, n.AuthPriv)

	cases := []struct {
		name string
		dir  []byte
		is   error
		msg  string
	}{
		{"unsigned", unsigned, crypto.ErrDirectoryMalformed, "malformed directory"},
		{"empty object", []byte("{}"), crypto.ErrDirectorySignature, "unsigned"},
		{"not JSON", []byte("network"), crypto.ErrDirectoryMalformed, "malformed directory"},
		{"forged", forged, crypto.ErrDirectorySignature, "not valid for the pinned authority key"},
		{"tampered", tampered, crypto.ErrDirectorySignature, "signature"},
		{"same version", sameSigned, crypto.ErrDirectoryStale, "not newer"},
		{"duplicate agency id", n.signRaw(t, dupBody), crypto.ErrDirectoryMalformed, "appears twice"},
		{"malformed nkey", n.signRaw(t, badKeyBody), crypto.ErrDirectoryMalformed, "not a NATS user public nkey"},
		{"seed in place of a public nkey", n.signRaw(t, seedBody), crypto.ErrDirectoryMalformed, "not a NATS user public nkey"},
		{"nkey with a bad checksum", n.signRaw(t, badSumBody), crypto.ErrDirectoryMalformed, "not a valid NATS user public nkey"},
	}
	if olderSigned != nil {
		cases = append(cases, struct {
			name string
			dir  []byte
			is   error
			msg  string
		}{"older", olderSigned, crypto.ErrDirectoryStale, "not newer"})
	}
	return cases
}

func checkOneLine(t *testing.T, err error, is error, msg string) {
	t.Helper()
	if err == nil {
		t.Fatal("directory accepted")
	}
	if !errors.Is(err, is) {
		t.Fatalf("error %q does not wrap %q", err, is)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error is not one line: %q", err)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Fatalf("error %q does not say %q", err, msg)
	}
}

func TestNewRefusesBadDirectory(t *testing.T) {
	n := newTestNet(t, "iom", "shelter")
	n.Dir.Version = 2
	for _, tc := range badDirectories(t, n) {
		t.Run(tc.name, func(t *testing.T) {
			if tc.is == crypto.ErrDirectoryStale {
				t.Skip("staleness at start is relative to the accepted directory; see TestRestartRefusesOlderDirectory")
			}
			cfg := n.config(t)
			cfg.Directory = tc.dir
			_, err := New(cfg)
			checkOneLine(t, err, tc.is, tc.msg)
		})
	}
}

func TestRestartRefusesOlderDirectory(t *testing.T) {
	n := newTestNet(t, "iom", "shelter")
	n.Dir.Version = 5
	cfg := n.config(t)
	s := mustStart(t, cfg)
	s.Close()

	n.Dir.Version = 4
	n.add(t, "revived") // an older file cannot bring anyone back
	cfg.Directory = n.sign(t)
	_, err := New(cfg)
	checkOneLine(t, err, crypto.ErrDirectoryStale, "older than")

	n.Dir.Version = 5
	cfg.Directory = n.sign(t)
	_, err = New(cfg)
	checkOneLine(t, err, crypto.ErrDirectoryStale, "conflicts with version 5")

	n.Dir.Version = 6
	cfg.Directory = n.sign(t)
	s = mustStart(t, cfg)
	if s.Directory().Version != 6 {
		t.Fatalf("running version %d", s.Directory().Version)
	}
	b, err := os.ReadFile(filepath.Join(cfg.DataDir, acceptedDirectoryFile))
	if err != nil || string(b) != string(cfg.Directory) {
		t.Fatalf("accepted directory not saved: %v", err)
	}
}

// watchClosed connects as a with raw nats.go without reconnecting and
// returns a channel closed when the broker drops the connection.
func watchClosed(t *testing.T, url string, a *testAgency) chan struct{} {
	t.Helper()
	kp, _ := nkeys.FromSeed(a.Seed)
	closed := make(chan struct{})
	nc, err := nats.Connect(url, nats.Nkey(a.Pub, kp.Sign), nats.NoReconnect(),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return closed
}

func TestReload(t *testing.T) {
	n := newTestNet(t, "iom", "dinsos", "police")
	s := mustStart(t, n.config(t))
	url := s.ClientURL()
	ctx := context.Background()

	iom := mustConnect(t, url, n.Agencies["iom"])
	dinsosClosed := watchClosed(t, url, n.Agencies["dinsos"])
	policeClosed := watchClosed(t, url, n.Agencies["police"])
	oldPolice := n.Agencies["police"]

	// v2: dinsos revoked, shelter-ntb added, police rotates its nats key.
	n.Dir.Version = 2
	n.revoke("dinsos")
	shelter := n.add(t, "shelter-ntb")
	newPolice := rotateNATS(t, n, "police")
	if err := s.Reload(n.sign(t)); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]chan struct{}{"revoked dinsos": dinsosClosed, "police's old key": policeClosed} {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("connection of %s still open after reload", name)
		}
	}
	if _, err := client.Connect(ctx, url, "dinsos", n.Agencies["dinsos"].Seed, client.NoRetryOnFailedConnect()); !errors.Is(err, client.ErrAuth) {
		t.Fatalf("revoked agency logged in: %v", err)
	}
	if _, err := client.Connect(ctx, url, "police", oldPolice.Seed, client.NoRetryOnFailedConnect()); !errors.Is(err, client.ErrAuth) {
		t.Fatalf("old police key logged in: %v", err)
	}
	mustConnect(t, url, newPolice)
	if !iom.Connected() {
		t.Fatal("reload dropped an agency that stayed active")
	}
	gwShelter := mustConnect(t, url, shelter)
	if err := iom.Publish(ctx, "shelter-ntb", "m1", []byte("welcome")); err != nil {
		t.Fatalf("publish to an agency added by reload: %v", err)
	}
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	msgs, err := gwShelter.Fetch(fctx, 1)
	cancel()
	if err != nil || len(msgs) != 1 || string(msgs[0].Data()) != "welcome" {
		t.Fatalf("fetch: %v %d", err, len(msgs))
	}
	if err := msgs[0].AckSync(ctx); err != nil {
		t.Fatal(err)
	}

	// Every bad directory is refused and the running configuration stays.
	for _, tc := range badDirectories(t, n) {
		t.Run(tc.name, func(t *testing.T) {
			checkOneLine(t, s.Reload(tc.dir), tc.is, tc.msg)
			if v := s.Directory().Version; v != 2 {
				t.Fatalf("running version %d after a refused reload", v)
			}
			if !gwShelter.Connected() || !iom.Connected() {
				t.Fatal("a refused reload dropped a connection")
			}
			if _, err := client.Connect(ctx, url, "dinsos", n.Agencies["dinsos"].Seed, client.NoRetryOnFailedConnect()); !errors.Is(err, client.ErrAuth) {
				t.Fatalf("revoked agency logged in after a refused reload: %v", err)
			}
		})
	}
}

// rotateNATS gives an agency a new active nats key and revokes the old.
func rotateNATS(t *testing.T, n *testNet, id string) *testAgency {
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	for i := range n.Dir.Agencies {
		a := &n.Dir.Agencies[i]
		if a.ID != id {
			continue
		}
		keys := append([]crypto.PublicKey(nil), a.Keys...)
		for j := range keys {
			if keys[j].Use == crypto.UseNATS {
				keys[j].Status = crypto.StatusRevoked
			}
		}
		a.Keys = append(keys, crypto.NewPublicKey(crypto.UseNATS, pub))
	}
	ag := &testAgency{ID: id, Seed: seed, Pub: pub}
	n.Agencies[id] = ag
	return ag
}

// TestGoldenDirectoryNKeys: the NATS keys of crypto's golden directory,
// which crypto's tests encode without the NATS libraries, parse as nkeys.
func TestGoldenDirectoryNKeys(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "crypto", "testdata", "vectors", "directory.json"))
	if err != nil {
		t.Fatal(err)
	}
	var signed struct {
		Directory json.RawMessage `json:"directory"`
	}
	if err := json.Unmarshal(b, &signed); err != nil {
		t.Fatal(err)
	}
	d, err := crypto.ParseDraft(signed.Directory)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckDirectory(d); err != nil {
		t.Fatal(err)
	}
}

func TestNewNATSKey(t *testing.T) {
	nk, err := NewNATSKey()
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.FromSeed(nk.Seed)
	if err != nil {
		t.Fatal(err)
	}
	if pub, _ := kp.PublicKey(); pub != nk.Public || !nkeys.IsValidPublicUserKey(pub) {
		t.Fatalf("public key %s, seed gives %s", nk.Public, pub)
	}
	// crypto takes it as an agency's key.
	if _, err := crypto.GenerateAgencyKeys(t.TempDir(), "iom", "iom", "", nk); err != nil {
		t.Fatal(err)
	}
}
