package gateway_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/membus"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/broker"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// keyCore is a core network whose test holds the authority key, to publish
// new directories.
type keyCore struct {
	*core
	authority ed25519.PrivateKey
}

// mustKeyCore is mustCore for iom and the shelter, keeping the authority
// key.
func mustKeyCore(t *testing.T) *keyCore {
	t.Helper()
	agencies := []agency{{"iom", "iom"}, {"shelter", "shelter"}}
	c := &core{t: t, net: membus.New(), data: t.TempDir(), clock: &clock{}, gws: map[string]*gateway.Gateway{},
		kinds: map[string]string{}, keys: map[string]gateway.Keys{}, stopped: map[*gateway.Gateway]bool{}}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(c.data, "authority"), 0o700)
	if err := os.WriteFile(filepath.Join(c.data, "authority", "authority.pub"), []byte(base64.StdEncoding.EncodeToString(pub)), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := crypto.NewDirectory("test", policy.DefaultRulesJSON())
	for _, a := range agencies {
		nk, err := broker.NewNATSKey()
		if err != nil {
			t.Fatal(err)
		}
		entry, err := crypto.WriteAgencyKeys(filepath.Join(c.data, "agencies", a.id), a.id, a.kind, a.id, nk, false)
		if err != nil {
			t.Fatal(err)
		}
		if err := dir.Add(*entry); err != nil {
			t.Fatal(err)
		}
		c.kinds[a.id] = a.kind
	}
	k := &keyCore{core: c, authority: priv}
	k.publish(dir)
	for _, a := range agencies {
		c.start(a.id)
	}
	return k
}

// directory returns the directory in network.json.
func (k *keyCore) directory() *crypto.Directory {
	k.t.Helper()
	d, err := crypto.LoadDirectory(filepath.Join(k.data, "network.json"), k.authority.Public().(ed25519.PublicKey))
	if err != nil {
		k.t.Fatal(err)
	}
	return d
}

// publish signs d one version up and writes it over network.json.
func (k *keyCore) publish(d *crypto.Directory) {
	k.t.Helper()
	d.Version++
	signed, err := crypto.SignDirectory(d, k.authority)
	if err != nil {
		k.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(k.data, "network.json"), signed, 0o644); err != nil {
		k.t.Fatal(err)
	}
}

// TestRetiredIdentity: after the shelter's age identity and signing key are
// rotated, a referral sealed to the old key while its gateway was down is
// opened; one sealed to it that arrives after the key's not_after is
// refused; what was stored stays readable.
func TestRetiredIdentity(t *testing.T) {
	k := mustKeyCore(t)
	k.stop("shelter")
	inFlight := k.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter")).ID
	k.waitStatus("iom", policy.ActionReferralRead, inFlight, policy.RefSent)
	// An envelope sealed to the old key (valid for an hour), to arrive
	// late.
	late := k.seal("iom", "shelter", "referral", referral("shelter"))

	keyDir := filepath.Join(k.data, "agencies", "shelter")
	r, err := crypto.RotateAgencyKeys(keyDir, []crypto.KeyUse{crypto.UseEncrypt, crypto.UseSign}, crypto.NATSKey{})
	if err != nil {
		t.Fatal(err)
	}
	d := k.directory()
	until := k.clock.Now().Add(30 * time.Minute)
	if err := d.Rotate(*r.Entry, until); err != nil {
		t.Fatal(err)
	}
	k.publish(d)
	if err := k.gws["iom"].Reload(); err != nil {
		t.Fatal(err)
	}
	k.start("shelter")
	k.waitStatus("iom", policy.ActionReferralRead, inFlight, policy.RefDelivered)
	after := k.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter")).ID
	k.waitStatus("iom", policy.ActionReferralRead, after, policy.RefDelivered)

	// Past not_after (and within its own time window), an envelope sealed
	// to the retired key is refused.
	k.clock.Advance(45 * time.Minute)
	k.net.Inject("shelter", "iom", late)
	k.waitRefused("shelter", "iom", crypto.ReasonCode(crypto.ErrNotForUs))
	// Stored before, sealed to the retired key: still readable.
	it, err := k.gws["shelter"].Get(context.Background(), k.staff("shelter"), inFlight)
	if err != nil || !strings.Contains(string(it.Referral), "V-2026-0042") {
		t.Fatalf("reading the referral sealed to the retired key: %v %s", err, it.Referral)
	}
}

// TestReloadRevokesOwnAgency: a gateway that reloads a directory revoking
// its own agency keeps the one in force, audits it, says so in Ready, and
// does not start on it again; the other gateway refuses the revoked
// agency's envelopes.
func TestReloadRevokesOwnAgency(t *testing.T) {
	k := mustKeyCore(t)
	d := k.directory()
	if err := d.Revoke("iom", ""); err != nil {
		t.Fatal(err)
	}
	k.publish(d)
	iom := k.gws["iom"]
	err := iom.Reload()
	if !errors.Is(err, gateway.ErrAgencyRevoked) || !strings.Contains(err.Error(), "agency iom is revoked in directory version") {
		t.Fatalf("reload of a directory revoking iom: %v", err)
	}
	if r := iom.Ready(); r != gateway.ReasonAgencyRevoked {
		t.Errorf("Ready = %q, want %s", r, gateway.ReasonAgencyRevoked)
	}
	k.waitAudit("iom", func(e store.AuditEvent) bool {
		return e.Action == gateway.ActDirectoryReload && e.Outcome == "refused" && e.Reason == gateway.ReasonAgencyRevoked
	})
	// A second reload of the same file says the same, without a new event.
	n := len(k.audit("iom"))
	if err := iom.Reload(); !errors.Is(err, gateway.ErrAgencyRevoked) {
		t.Errorf("second reload: %v", err)
	}
	if len(k.audit("iom")) != n {
		t.Error("a second reload of the same revoking directory was audited again")
	}

	// The shelter reloads: iom's envelopes are refused from then on.
	if err := k.gws["shelter"].Reload(); err != nil {
		t.Fatal(err)
	}
	env := k.seal("iom", "shelter", "referral", referral("shelter"))
	k.net.Inject("shelter", "iom", env)
	k.waitRefused("shelter", "iom", crypto.ReasonSenderRevoked)

	// Started again, iom's gateway stops with the plain reason.
	k.stop("iom")
	keys, err := gateway.LoadKeys(k.config("iom"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = gateway.New(k.config("iom"), keys, k.net.Bus("iom"), gateway.Options{Logger: quiet})
	if !errors.Is(err, gateway.ErrAgencyRevoked) {
		t.Fatalf("start on a directory revoking iom: %v", err)
	}
	raw, _ := json.Marshal(err.Error())
	if strings.Contains(string(raw), "\\n") {
		t.Errorf("the start error is not one line: %s", raw)
	}
}

// TestReloadAfterOwnRotation: a running gateway whose keys a directory
// replaced keeps the directory in force and says it needs a restart.
func TestReloadAfterOwnRotation(t *testing.T) {
	k := mustKeyCore(t)
	r, err := crypto.RotateAgencyKeys(filepath.Join(k.data, "agencies", "shelter"), []crypto.KeyUse{crypto.UseSign}, crypto.NATSKey{})
	if err != nil {
		t.Fatal(err)
	}
	d := k.directory()
	if err := d.Rotate(*r.Entry, k.clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	k.publish(d)
	if err := k.gws["shelter"].Reload(); err == nil || !strings.Contains(err.Error(), "restart the gateway") {
		t.Fatalf("reload of a directory that rotated the shelter's own key: %v", err)
	}
	if r := k.gws["shelter"].Ready(); r != "" {
		t.Errorf("Ready = %q after a refused reload", r)
	}
	// IOM reloads and still accepts what the shelter's running gateway
	// signs with its retired key.
	if err := k.gws["iom"].Reload(); err != nil {
		t.Fatal(err)
	}
	id := k.mustSend("shelter", "referral", policy.ActionReferralSend, "", referral("iom")).ID
	k.waitStatus("shelter", policy.ActionReferralRead, id, policy.RefDelivered)
}

// TestQueuedToRevokedAgency: a referral queued while the broker was down,
// to an agency the next directory revokes, is not published to the
// revoked agency's inbox (nobody can read it any more) but reported
// failed at once, with reason recipient-revoked.
func TestQueuedToRevokedAgency(t *testing.T) {
	k := mustKeyCore(t)
	k.net.SetDown(true)
	acc := k.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("shelter"))
	if acc.Status != policy.RefQueued {
		t.Fatalf("sent while the broker is down: %s", acc.Status)
	}
	d := k.directory()
	if err := d.Revoke("shelter", ""); err != nil {
		t.Fatal(err)
	}
	k.publish(d)
	if err := k.gws["iom"].Reload(); err != nil {
		t.Fatal(err)
	}
	k.net.SetDown(false)
	it := k.waitStatus("iom", policy.ActionReferralRead, acc.ID, policy.RefFailed)
	last := it.Timeline[len(it.Timeline)-1]
	if last.Reason != gateway.ReasonRecipientRevoked {
		t.Errorf("failed with %+v, want reason %s", last, gateway.ReasonRecipientRevoked)
	}
	k.waitAudit("iom", func(e store.AuditEvent) bool {
		return e.Action == gateway.ActEnvelopeExpire && e.Object == acc.ID && e.Reason == gateway.ReasonRecipientRevoked
	})
	if n := k.net.Len("shelter"); n != 0 {
		t.Errorf("%d envelopes published to the revoked shelter", n)
	}
}
