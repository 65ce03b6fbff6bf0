package e2e

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rujukan/rujukan/broker"
	"github.com/rujukan/rujukan/broker/client"
	"github.com/rujukan/rujukan/cli"
	"github.com/rujukan/rujukan/cli/clitest"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// A hostile member: an agency of the network that bypasses its own
// gateway and uses its own keys and broker credentials to send what its
// gateway never would.

// sealer seals envelopes as agency from, with its own signing key, loading
// the keys and the directory once.
func sealer(t *testing.T, n *network, from string) func(to, kind, id string, body []byte) []byte {
	t.Helper()
	signer, err := crypto.LoadSigner(filepath.Join(n.data, "agencies", from, crypto.SigningKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := crypto.LoadDirectory(filepath.Join(n.data, "network.json"), mustAuthority(t, n))
	if err != nil {
		t.Fatal(err)
	}
	return func(to, kind, id string, body []byte) []byte {
		rcpt, ok := dir.Agency(to)
		if !ok {
			t.Fatalf("no agency %s", to)
		}
		now := time.Now()
		env, err := crypto.Seal(crypto.Header{ID: id, Kind: kind, From: from, To: to, Created: now, Expires: now.Add(time.Hour)}, body, signer, rcpt)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// addAgency adds an agency to the network's directory (its keys written
// beside the others'), signs the directory at a higher version, and
// mints a token for its staff. Call it before starting the broker.
func addAgency(t *testing.T, n *network, id, kind, name string) {
	t.Helper()
	path := filepath.Join(n.data, "network.json")
	dir, err := crypto.LoadDirectory(path, mustAuthority(t, n))
	if err != nil {
		t.Fatal(err)
	}
	nk, err := broker.NewNATSKey()
	if err != nil {
		t.Fatal(err)
	}
	entry, err := crypto.WriteAgencyKeys(filepath.Join(n.data, "agencies", id), id, kind, name, nk, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := dir.Add(*entry); err != nil {
		t.Fatal(err)
	}
	dir.Version++
	dir.IssuedAt = time.Now().UTC().Truncate(time.Second)
	priv, err := crypto.LoadEd25519PrivateKey(filepath.Join(n.data, "authority", "authority.pem"))
	if err != nil {
		t.Fatal(err)
	}
	signed, err := crypto.SignDirectory(dir, priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, signed, 0o644); err != nil {
		t.Fatal(err)
	}
	n.ports[id] = clitest.FreePort(t)
	tok, err := cli.MintDevToken(cli.TokenConfig{Data: n.data, Agency: id, Subject: "tester-" + id, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	n.tokens[id] = tok
}

// forgedStatement is a statement body answering ref, with a consent record
// that would pass every rule.
func forgedStatement(ref string) map[string]any {
	now := time.Now().UTC().Truncate(time.Second).Format(time.RFC3339)
	return map[string]any{"ref": ref,
		"statement": map[string]any{"text": "forged", "language": "id", "taken_at": now, "taken_by": "shelter/x"},
		"consent": map[string]any{"given": true, "purposes": []string{"statement"}, "method": "written",
			"recorded_by": "shelter/x", "recorded_at": now},
		"person": map[string]any{"age": 30}}
}

// TestForgedStatement: a statement sealed with the shelter's own keys,
// bypassing its gateway, answering no request: the police refuse it,
// audit it under the shelter and say so with a signed rejected receipt,
// which the shelter's gateway (that never sent it) refuses in turn.
func TestForgedStatement(t *testing.T) {
	n := startNet(t, "police", "shelter")
	id := crypto.NewID()
	env := sealAs(t, n, "shelter", "police", crypto.KindStatement, id, mustJSON(t, forgedStatement(crypto.NewID())))
	publishAs(t, n, "shelter", "police", id, env)
	e := waitAudit(t, n.api("police"), "the police refusing the forged statement", func(e map[string]any) bool {
		return e["action"] == "envelope.receive" && e["outcome"] == "rejected" && e["object"] == id
	})
	if e["actor"] != "peer:shelter" || e["reason"] == "" || detail(e, "kind") != "statement" {
		t.Errorf("audit of the forged statement: %v", e)
	}
	// The signed rejected receipt reaches the shelter, which sent no such
	// envelope and refuses it (receipts are never answered).
	r := waitAudit(t, n.api("shelter"), "the rejected receipt reaching the shelter", func(e map[string]any) bool {
		return e["action"] == "envelope.receive" && e["actor"] == "peer:police" && detail(e, "kind") == "receipt"
	})
	if r["outcome"] != "rejected" {
		t.Errorf("the shelter's audit of the receipt: %v", r)
	}
	if l := n.api("police").do(t, "GET", "/v1/statement-requests?box=outbox", nil); len(l.JSON["items"].([]any)) != 0 {
		t.Errorf("the police hold a request: %s", l.Raw)
	}
}

// TestStatementToAnotherPolice: the shelter's answer to police A's
// request, sealed to police B, is refused at B; A's request is not
// changed.
func TestStatementToAnotherPolice(t *testing.T) {
	n := newNetwork(t)
	addAgency(t, n, "polda", policy.KindPolice, "Kepolisian Daerah NTB")
	n.startBroker()
	for _, id := range []string{"police", "polda", "shelter"} {
		n.startGateway(id)
	}
	police, shelter := n.api("police"), n.api("shelter")
	id := openedRequest(t, police, shelter, time.Now().Add(72*time.Hour))
	if c := shelter.do(t, "POST", "/v1/statement-requests/"+id+"/consent", consentGiven(30, "")); c.Status != 200 {
		t.Fatalf("consent: %d %s", c.Status, c.Raw)
	}
	waitListed(t, police, "outbox", id, "consent-given")

	eid := crypto.NewID()
	publishAs(t, n, "shelter", "polda", eid, sealAs(t, n, "shelter", "polda", crypto.KindStatement, eid, mustJSON(t, forgedStatement(id))))
	e := waitAudit(t, n.api("polda"), "police B refusing the statement", func(e map[string]any) bool {
		return e["outcome"] == "rejected" && e["object"] == eid
	})
	if e["actor"] != "peer:shelter" || e["reason"] == "" {
		t.Errorf("audit at police B: %v", e)
	}
	if l := n.api("polda").do(t, "GET", "/v1/statement-requests?box=outbox", nil); len(l.JSON["items"].([]any)) != 0 {
		t.Errorf("police B holds a request: %s", l.Raw)
	}
	if s := listedStatus(t, police, "outbox", id); s != "consent-given" {
		t.Errorf("police A's request is %s, want consent-given", s)
	}
}

// publishMany publishes envelopes to agency to with agency from's own
// broker credentials, over one connection.
func publishMany(t *testing.T, n *network, from, to string, ids []string, envs [][]byte) {
	t.Helper()
	seed, err := client.LoadNKeySeed(filepath.Join(n.data, "agencies", from, crypto.NATSSeedFile))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Connect(context.Background(), n.brokerURL(), from, seed, client.NoRetryOnFailedConnect())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A sender that fills its share of the inbox is refused by the broker
	// until the recipient has read some: it tries again, as a flooding
	// agency would.
	deadline := time.Now().Add(time.Minute)
	for i := range envs {
		for {
			err := c.Publish(context.Background(), to, ids[i], envs[i])
			if err == nil {
				break
			}
			if !errors.Is(err, client.ErrLimit) || time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestWaitingFloodDoesNotBlockInbox: the shelter floods IOM (a real
// gateway process) with status envelopes about records that do not exist.
// A bounded number wait aside, the rest are refused at once, and a
// referral from dinsos is still delivered promptly.
func TestWaitingFloodDoesNotBlockInbox(t *testing.T) {
	n := newNetwork(t)
	n.startBroker()
	n.spawnGateway("iom")
	n.startGateway("dinsos")
	seal := sealer(t, n, "shelter")
	const flood = 1100
	ids := make([]string, flood)
	envs := make([][]byte, flood)
	at := time.Now().UTC().Truncate(time.Second).Format(time.RFC3339)
	for i := range envs {
		ids[i] = crypto.NewID()
		envs[i] = seal("iom", crypto.KindStatus, ids[i], mustJSON(t, map[string]any{"ref": crypto.NewID(),
			"status": "accepted", "by": "shelter/x", "at": at}))
	}
	publishMany(t, n, "shelter", "iom", ids, envs)

	start := time.Now()
	dinsos := n.api("dinsos")
	r := dinsos.do(t, "POST", "/v1/referrals", sampleReferral("iom"))
	if r.Status != 202 {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	eventually(t, "dinsos's referral being delivered to iom", 10*time.Second, func() (bool, string) {
		s, _ := statusOf(t, dinsos.url, dinsos.tok, r.str("id"))
		return s == "delivered", s
	})
	t.Logf("delivered %s after the flood was published", time.Since(start))

	iom := n.api("iom")
	waitRefusedCount(t, n, "iom", "shelter", "too-many-waiting", 1)
	eventually(t, "the refusals being counted", 20*time.Second, func() (bool, string) {
		for _, line := range strings.Split(metrics(t, n.metricsURL("iom")), "\n") {
			if strings.HasPrefix(line, "rujukan_envelopes_refused_total{") && strings.Contains(line, `sender="shelter"`) &&
				strings.Contains(line, `reason="too-many-waiting"`) {
				return true, line
			}
		}
		return false, "no rujukan_envelopes_refused_total for the shelter"
	})
	// At most 64 of the shelter's wait aside; every other one is refused.
	// A few are audited one by one, the rest counted in summaries.
	eventually(t, "every envelope beyond the 64 waiting being refused", 30*time.Second, func() (bool, string) {
		refused := refusedCount(auditAll(t, iom), "shelter", "too-many-waiting")
		return refused == flood-64, fmt.Sprintf("%d refused", refused)
	})
}

// TestScopesFollowKind: a police token that claims consent:override is
// refused by the police gateway, and a referral sealed with the police's
// own keys that overrides consent is refused by the shelter.
func TestScopesFollowKind(t *testing.T) {
	n := startNet(t, "police", "shelter")
	if _, err := cli.MintDevToken(cli.TokenConfig{Data: n.data, Agency: "police", Subject: "officer-1",
		Scopes: []string{"referral:read", "consent:override"}, TTL: time.Hour}); err == nil {
		t.Error("rujukan token minted consent:override for a police officer")
	}
	key, err := crypto.LoadEd25519PrivateKey(filepath.Join(n.data, "agencies", "police", crypto.JWTIssuerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	tok, err := policy.MintToken(key, crypto.JWTKeyID(key.Public().(ed25519.PublicKey)), policy.TokenClaims{
		Issuer: policy.DevIssuer("police"), Subject: "officer-1", Audience: []string{"police"},
		Scopes: []string{"referral:read", "referral:send", "consent:override"}, IssuedAt: now, Expiry: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	r := call(t, "GET", n.url("police")+"/v1/referrals?box=inbox", tok, nil)
	if r.Status != 401 || r.str("reason") != "token-scope-not-allowed" {
		t.Errorf("police token with consent:override: %d %s, want 401 token-scope-not-allowed", r.Status, r.Raw)
	}

	body := sampleReferral("shelter")
	delete(body, "consent")
	body["priority"] = "urgent"
	body["consent_override"] = map[string]any{"justification": "urgent removal from the boat tonight"}
	id := crypto.NewID()
	publishAs(t, n, "police", "shelter", id, sealAs(t, n, "police", "shelter", crypto.KindReferral, id, mustJSON(t, body)))
	e := waitAudit(t, n.api("shelter"), "the shelter refusing the police override", func(e map[string]any) bool {
		return e["outcome"] == "rejected" && e["object"] == id
	})
	if e["reason"] != "override-scope" || e["actor"] != "peer:police" {
		t.Errorf("audit of the police override: %v", e)
	}
	if in := listAll(t, n.url("shelter"), n.tokens["shelter"], "inbox"); len(in) != 0 {
		t.Errorf("the shelter stored the referral: %v", in)
	}
}

// TestPseudonymNames: a person is named by the network's case code, never
// by a name; the refusal does not echo what was sent.
func TestPseudonymNames(t *testing.T) {
	st, _ := MustDev(t)
	iom := devAPI(st, "iom")
	for _, name := range []string{"Siti-Aminah-1990", "Siti.Aminah1", "aminah.siti.1", "Budi2"} {
		body := sampleReferral("shelter")
		body["person"].(map[string]any)["pseudonym"] = name
		r := iom.do(t, "POST", "/v1/referrals", body)
		if r.Status != 422 {
			t.Errorf("pseudonym %q: %d %s, want 422", name, r.Status, r.Raw)
			continue
		}
		var fields []string
		errs, _ := r.JSON["errors"].([]any)
		for _, e := range errs {
			fields = append(fields, fmt.Sprint(e.(map[string]any)["field"]))
		}
		if len(fields) != 1 || fields[0] != "/person/pseudonym" {
			t.Errorf("pseudonym %q: errors at %v, want /person/pseudonym", name, fields)
		}
		if strings.Contains(strings.ToLower(string(r.Raw)), strings.ToLower(name)) {
			t.Errorf("pseudonym %q is echoed: %s", name, r.Raw)
		}
	}
	// The same for a statement request.
	r := devAPI(st, "police").do(t, "POST", "/v1/statement-requests", requestBody("shelter", "Budi2", time.Now().Add(time.Hour)))
	if r.Status != 422 || strings.Contains(string(r.Raw), "Budi2") {
		t.Errorf("statement request naming Budi2: %d %s, want 422 without the name", r.Status, r.Raw)
	}
	if l := listAll(t, devAPI(st, "iom").url, iom.tok, "outbox"); len(l) != 0 {
		t.Errorf("referrals were sent: %v", l)
	}
}

// TestRefusalAttribution: an envelope sealed by the shelter and published
// by dinsos is refused before decryption and counted under dinsos, the
// sender the broker authenticated.
func TestRefusalAttribution(t *testing.T) {
	n := startNet(t, "iom")
	id := crypto.NewID()
	publishAs(t, n, "dinsos", "iom", id, sealAs(t, n, "shelter", "iom", crypto.KindReferral, id, mustJSON(t, sampleReferral("iom"))))
	e := waitAudit(t, n.api("iom"), "iom refusing the forwarded envelope", func(e map[string]any) bool {
		return e["outcome"] == "rejected"
	})
	if e["actor"] != "peer:dinsos" || e["action"] != "envelope.refused" || detail(e, "refused.sender-mismatch") != "1" {
		t.Errorf("audit of the forwarded envelope: %v", e)
	}
	eventually(t, "the refusal being counted under dinsos", 5*time.Second, func() (bool, string) {
		m := metrics(t, n.metricsURL("iom"))
		return strings.Contains(m, `reason="sender-mismatch",sender="dinsos"`), "not counted under dinsos"
	})
	if in := listAll(t, n.url("iom"), n.tokens["iom"], "inbox"); len(in) != 0 {
		t.Errorf("iom stored the referral: %v", in)
	}
}

// handToken signs a token built by hand: header and claims JSON exactly
// as given, signed with the agency's development issuer key.
func handToken(t *testing.T, n *network, agency, claims string) string {
	t.Helper()
	key, err := crypto.LoadEd25519PrivateKey(filepath.Join(n.data, "agencies", agency, crypto.JWTIssuerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	kid := crypto.JWTKeyID(key.Public().(ed25519.PublicKey))
	b64 := base64.RawURLEncoding.EncodeToString
	input := b64([]byte(`{"alg":"EdDSA","typ":"at+jwt","kid":"`+kid+`"}`)) + "." + b64([]byte(claims))
	return input + "." + b64(ed25519.Sign(key, []byte(input)))
}

// TestTokenClaims: tokens correctly signed by the trusted issuer whose
// claims are ambiguous or unprintable are refused.
func TestTokenClaims(t *testing.T) {
	n := startNet(t, "iom")
	exp := time.Now().Add(time.Hour).Unix()
	past := time.Now().Add(-time.Hour).Unix()
	claims := func(sub, expJSON string) string {
		s, _ := json.Marshal(sub)
		return fmt.Sprintf(`{"iss":"rujukan-dev/iom","aud":"iom","sub":%s,%s,"scope":"referral:read"}`, s, expJSON)
	}
	url := n.url("iom") + "/v1/referrals?box=inbox"
	if r := call(t, "GET", url, handToken(t, n, "iom", claims("caseworker-1", fmt.Sprintf(`"exp":%d`, exp))), nil); r.Status != 200 {
		t.Fatalf("a well-formed hand-made token: %d %s", r.Status, r.Raw)
	}
	cases := map[string]string{
		"exp as a string":  claims("caseworker-1", fmt.Sprintf(`"exp":"%d"`, exp)),
		"exp twice":        claims("caseworker-1", fmt.Sprintf(`"exp":%d,"exp":%d`, past, exp)),
		"exp twice, other": claims("caseworker-1", fmt.Sprintf(`"exp":%d,"EXP":%d`, exp, exp)),
		"sub with newline": claims("caseworker-1\nadmin", fmt.Sprintf(`"exp":%d`, exp)),
		"sub with U+202E":  claims("caseworker-1\u202enimda", fmt.Sprintf(`"exp":%d`, exp)),
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := call(t, "GET", url, handToken(t, n, "iom", c), nil)
			if r.Status != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("%s: %d %s, want 401", c, r.Status, r.Raw)
			}
		})
	}
}

// TestConcurrentDeclineWithdraw: the shelter declines and IOM withdraws
// before either hears of the other; both end withdrawn (the documented
// precedence) and neither refuses the other's envelope.
func TestConcurrentDeclineWithdraw(t *testing.T) {
	n, id := deliveredOne(t)
	n.stopBroker()
	if r := call(t, "POST", n.url("shelter")+"/v1/referrals/"+id+"/status", n.tokens["shelter"],
		map[string]string{"status": "declined", "reason": "no bed free"}); r.Status != 200 || r.str("status") != "declined" {
		t.Fatalf("decline: %d %s", r.Status, r.Raw)
	}
	if r := call(t, "POST", n.url("iom")+"/v1/referrals/"+id+"/status", n.tokens["iom"],
		map[string]string{"status": "withdrawn", "reason": "placed with family"}); r.Status != 200 || r.str("status") != "withdrawn" {
		t.Fatalf("withdraw: %d %s", r.Status, r.Raw)
	}
	n.startBroker()
	waitStatus(t, n.url("shelter"), n.tokens["shelter"], id, "withdrawn")
	waitStatus(t, n.url("iom"), n.tokens["iom"], id, "withdrawn")
	// IOM keeps the shelter's decline as superseded; the shelter applies
	// the withdrawal over its own decline.
	waitAudit(t, n.api("iom"), "iom recording the superseded decline", func(e map[string]any) bool { return e["outcome"] == "superseded" })
	waitAudit(t, n.api("shelter"), "the shelter applying the withdrawal over its decline", func(e map[string]any) bool {
		return e["outcome"] == "withdrawn (supersedes declined)"
	})
	_, one := statusOf(t, n.url("iom"), n.tokens["iom"], id)
	var superseded bool
	for _, e := range timeline(one) {
		superseded = superseded || (e["event"] == "declined" && e["reason"] == "superseded")
	}
	if !superseded {
		t.Errorf("iom's timeline does not keep the decline as superseded: %v", eventNames(one))
	}
	time.Sleep(time.Second)
	for _, a := range []string{"iom", "shelter"} {
		for _, e := range auditAll(t, n.api(a)) {
			if e["outcome"] == "rejected" {
				t.Errorf("%s refused an envelope: %v", a, e)
			}
		}
		if s, _ := statusOf(t, n.url(a), n.tokens[a], id); s != "withdrawn" {
			t.Errorf("%s: %s, want withdrawn", a, s)
		}
	}
}

// TestAuditAfterOverflow: an after beyond the last sequence number a log
// can hold is a bad request, not a wrap-around.
func TestAuditAfterOverflow(t *testing.T) {
	st, _ := MustDev(t)
	iom := devAPI(st, "iom")
	for _, after := range []string{"18446744073709551615", "18446744073709551616", "-1", "1e3"} {
		if r := iom.do(t, "GET", "/v1/audit?after="+after, nil); r.Status != 400 {
			t.Errorf("after=%s: %d %s, want 400", after, r.Status, r.Raw)
		}
	}
	if r := iom.do(t, "GET", "/v1/audit?after=18446744073709551614", nil); r.Status != 200 {
		t.Errorf("after=2^64-2: %d %s, want 200", r.Status, r.Raw)
	}
}

// TestForgedStatementMinorConsent: a statement sealed with the shelter's
// own keys answering the police's open request, carrying a consent that
// the shelter's gateway would have refused (a 16-year-old's verbal consent
// without a witness), is refused by the police gateway too.
func TestForgedStatementMinorConsent(t *testing.T) {
	n := startNet(t, "police", "shelter")
	police, shelter := n.api("police"), n.api("shelter")
	id := openedRequest(t, police, shelter, time.Now().Add(72*time.Hour))
	body := forgedStatement(id)
	body["consent"].(map[string]any)["method"] = "verbal"
	body["person"] = map[string]any{"age": 16}
	eid := crypto.NewID()
	publishAs(t, n, "shelter", "police", eid, sealAs(t, n, "shelter", "police", crypto.KindStatement, eid, mustJSON(t, body)))
	e := waitAudit(t, police, "the police refusing the statement", func(e map[string]any) bool {
		return e["outcome"] == "rejected" && e["object"] == eid
	})
	if e["reason"] != "consent-minor" || e["actor"] != "peer:shelter" {
		t.Errorf("audit of the statement: %v", e)
	}
	if s := listedStatus(t, police, "outbox", id); s != "read" {
		t.Errorf("the request is %s at the police, want read", s)
	}
	// Consent recorded by staff of another agency is refused as well.
	body = forgedStatement(id)
	body["consent"].(map[string]any)["recorded_by"] = "iom/caseworker-1"
	eid = crypto.NewID()
	publishAs(t, n, "shelter", "police", eid, sealAs(t, n, "shelter", "police", crypto.KindStatement, eid, mustJSON(t, body)))
	e = waitAudit(t, police, "the police refusing the second statement", func(e map[string]any) bool {
		return e["outcome"] == "rejected" && e["object"] == eid
	})
	if e["reason"] != "consent-invalid" {
		t.Errorf("audit of the statement with another agency's consent: %v", e)
	}
	if got := police.do(t, "GET", "/v1/statement-requests/"+id, nil); got.JSON["statement"] != nil {
		t.Errorf("the police show a statement: %s", got.Raw)
	}
}
