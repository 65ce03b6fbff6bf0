package web

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
	"golang.org/x/mod/sumdb/note"
)

const testWitnessInterval = 200 * time.Millisecond

// TestAuditPageCheckpoint: after some traffic, the operator's audit page
// shows the signed checkpoint (size, root, the note) and the witnesses'
// verified cosignatures, and this gateway's view of the other logs.
func TestAuditPageCheckpoint(t *testing.T) {
	n := mustNetworkOpts(t, gateway.Options{WitnessInterval: testWitnessInterval})
	iom := mustApp(t, n, "iom")
	cw := iom.client().signedIn(iom, "cw")
	if r := cw.post("/ui/referrals/new", "/ui/referrals", referralValues("shelter")); r.Code != http.StatusSeeOther {
		t.Fatalf("send: %d\n%s", r.Code, r.Body)
	}
	op := iom.client().signedIn(iom, "op")
	var body string
	eventually(t, "a verified cosignature on iom's audit page", func() bool {
		body = op.get("/ui/audit").Body
		return strings.Contains(body, `<tr class="cosignature">`) && strings.Contains(body, "✓ Yes")
	})
	// The page and the checkpoint of the same size (witnessing does not
	// append to iom's log, but receipts may still arrive).
	var cp gateway.AuditCheckpoint
	eventually(t, "a settled checkpoint", func() bool {
		body = op.get("/ui/audit").Body
		var err error
		if cp, err = n.gws["iom"].AuditCheckpoint(n.staffOf("iom")); err != nil {
			t.Fatal(err)
		}
		return strings.Contains(body, esc(cp.Root))
	})
	for _, want := range []string{"Signed checkpoint", "Cosignatures", `<pre class="mono checkpoint">` + esc(cp.Checkpoint) + "</pre>",
		"<dd>" + fmt.Sprint(cp.Size) + "</dd>", esc(cp.Root)} {
		if !strings.Contains(body, want) {
			t.Errorf("audit page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "✗ No") || strings.Contains(body, `class="banner broken"`) {
		t.Errorf("an unverified cosignature or a red banner:\n%s", body)
	}
	// The other agencies' logs as iom witnesses them.
	eventually(t, "iom witnessing shelter's log", func() bool {
		return strings.Contains(op.get("/ui/audit").Body, `<tr class="witnessed">`+"\n"+`<td data-label="Log">shelter</td>`)
	})
	op.lang = "id"
	if b := op.get("/ui/audit").Body; !strings.Contains(b, "Checkpoint bertanda tangan") || !strings.Contains(b, "Tanda tangan saksi") {
		t.Errorf("audit page in Bahasa Indonesia:\n%s", b)
	}
}

// TestAuditPageWitnessAlarm: a checkpoint signed with iom's key that
// forks the log shelter witnessed raises the red banner on shelter's
// audit page and names the fork.
func TestAuditPageWitnessAlarm(t *testing.T) {
	n := mustNetworkOpts(t, gateway.Options{WitnessInterval: testWitnessInterval})
	shelter, iom := mustApp(t, n, "shelter"), mustApp(t, n, "iom")
	op := shelter.client().signedIn(shelter, "op")
	cw := iom.client().signedIn(iom, "cw")
	if r := cw.post("/ui/referrals/new", "/ui/referrals", referralValues("shelter")); r.Code != http.StatusSeeOther {
		t.Fatalf("send: %d\n%s", r.Code, r.Body)
	}
	var size uint64
	eventually(t, "shelter witnessing iom's log", func() bool {
		ws, err := n.gws["shelter"].Witnesses(n.staffOf("shelter"))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range ws {
			if w.Log == "iom" && w.Size > 0 {
				size = w.Size
				return true
			}
		}
		return false
	})
	if b := op.get("/ui/audit").Body; strings.Contains(b, `class="banner broken"`) {
		t.Fatalf("a red banner before any alarm:\n%s", b)
	}
	signer, err := crypto.NewAuditNoteSigner("iom", n.keys["iom"].SigningKey)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%d\n%s\n", crypto.AuditOrigin("iom"), size,
		base64.StdEncoding.EncodeToString(make([]byte, 32)))}, signer)
	if err != nil {
		t.Fatal(err)
	}
	n.bus.Inject("shelter", "iom", n.seal(t, "iom", "shelter", crypto.KindCheckpoint,
		map[string]any{"checkpoint": string(forged), "from": 0, "proof": []string{}}))
	var body string
	eventually(t, "the red banner on shelter's audit page", func() bool {
		body = op.get("/ui/audit").Body
		return strings.Contains(body, `<p class="banner broken" role="alert">✗ A witness alarm`)
	})
	if !strings.Contains(body, "✗ Fork") {
		t.Errorf("the fork is not named:\n%s", body)
	}
}

// esc is s as html/template writes it in text.
func esc(s string) string { return strings.ReplaceAll(html.EscapeString(s), "+", "&#43;") }

// staffOf is an auditor of agency id.
func (n *network) staffOf(id string) policy.Principal {
	return policy.Principal{Agency: id, Subject: "auditor", Scopes: []string{policy.ScopeAuditRead}}
}

// seal makes an envelope with agency from's own keys, bypassing its
// gateway, as a hostile member could.
func (n *network) seal(t *testing.T, from, to, kind string, body any) []byte {
	t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	authority, _ := crypto.ParseAuthorityKey("@" + filepath.Join(n.data, "authority", "authority.pub"))
	dir, err := crypto.LoadDirectory(filepath.Join(n.data, "network.json"), authority)
	if err != nil {
		t.Fatal(err)
	}
	rcpt, _ := dir.Agency(to)
	now := time.Now().UTC()
	env, err := crypto.Seal(crypto.Header{ID: crypto.NewID(), Kind: kind, From: from, To: to, Created: now,
		Expires: now.Add(time.Hour)}, raw, n.keys[from].Signer, rcpt)
	if err != nil {
		t.Fatal(err)
	}
	return env
}
