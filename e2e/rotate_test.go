package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rujukan/rujukan/broker/client"
	"github.com/rujukan/rujukan/cli"
	"github.com/rujukan/rujukan/cli/clitest"
	"github.com/rujukan/rujukan/crypto"
	"go.yaml.in/yaml/v3"
)

// logBuffer collects a child process's log.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// child is a gateway process started by spawnLogged: its Wait runs in the
// background and closes exited.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// children holds the processes spawnLogged started, by network and agency.
var children sync.Map // childKey -> *child

type childKey struct {
	n  *network
	id string
}

// gatewayCmd returns the command that runs a gateway as a child process
// (`rujukan gateway --config`), logging at info into log.
func (n *network) gatewayCmd(id string, log *logBuffer) *exec.Cmd {
	n.t.Helper()
	raw, err := yaml.Marshal(n.config(id))
	if err != nil {
		n.t.Fatal(err)
	}
	path := filepath.Join(n.data, id+".yaml")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		n.t.Fatal(err)
	}
	cmd := clitest.Command("gateway", "--config", path)
	cmd.Env = append(cmd.Env, "RUJUKAN_LOG=info")
	cmd.Stderr = log
	return cmd
}

// spawnLogged runs a gateway as a child process, as spawnGateway does,
// and returns its log. The test's cleanup kills it.
func (n *network) spawnLogged(id string) *logBuffer {
	n.t.Helper()
	log := &logBuffer{}
	cmd := n.gatewayCmd(id, log)
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	c := &child{cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(c.exited) }()
	children.Store(childKey{n, id}, c)
	n.t.Cleanup(func() { n.stopLogged(id) })
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		// An HTTP answer, not just a connection: a dial to a port nothing
		// listens on can connect to itself.
		if resp, err := healthClient.Get(n.url(id) + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return log
			}
		}
		select {
		case <-c.exited:
			n.t.Fatalf("gateway %s exited: %s", id, log)
		default:
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.t.Fatalf("gateway %s did not start: %s", id, log)
	return nil
}

var healthClient = &http.Client{Timeout: time.Second}

// stopLogged stops a gateway started by spawnLogged with SIGKILL.
func (n *network) stopLogged(id string) {
	if v, ok := children.LoadAndDelete(childKey{n, id}); ok {
		c := v.(*child)
		c.cmd.Process.Signal(syscall.SIGKILL)
		<-c.exited
	}
}

func (n *network) child(id string) *exec.Cmd {
	n.t.Helper()
	v, ok := children.Load(childKey{n, id})
	if !ok {
		n.t.Fatalf("gateway %s is not running", id)
	}
	return v.(*child).cmd
}

// hup asks a gateway process to reload the directory, and waits until its
// log says it did (or refused it with want in the error).
func (n *network) hup(id string, log *logBuffer, want string) {
	n.t.Helper()
	before := strings.Count(log.String(), want)
	if err := n.child(id).Process.Signal(syscall.SIGHUP); err != nil {
		n.t.Fatal(err)
	}
	eventually(n.t, id+" reloading the directory", 20*time.Second, func() (bool, string) {
		s := log.String()
		return strings.Count(s, want) > before, lastLines(s, 3)
	})
}

func lastLines(s string, k int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-k):], "\n")
}

// rujukan runs the program in this process and returns its output.
func rujukan(t testing.TB, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	env := cli.Env{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
	if err := cli.Main(context.Background(), env, args); err != nil {
		t.Fatalf("rujukan %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// draft writes the network's signed directory out as the authority's
// working draft and returns its path.
func (n *network) draft() string {
	n.t.Helper()
	pub, err := crypto.ParseAuthorityKey("@" + filepath.Join(n.data, "authority", "authority.pub"))
	if err != nil {
		n.t.Fatal(err)
	}
	d, err := crypto.LoadDirectory(filepath.Join(n.data, "network.json"), pub)
	if err != nil {
		n.t.Fatal(err)
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		n.t.Fatal(err)
	}
	path := filepath.Join(n.data, "draft.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		n.t.Fatal(err)
	}
	return path
}

// publish signs the draft over network.json with the CLI and reloads the
// broker with it.
func (n *network) publish(draft string) {
	n.t.Helper()
	out := filepath.Join(n.data, "network.json")
	rujukan(n.t, "directory", "sign", "--draft", draft, "--authority-key", filepath.Join(n.data, "authority", "authority.pem"), "--out", out)
	signed, err := os.ReadFile(out)
	if err != nil {
		n.t.Fatal(err)
	}
	if err := n.broker.Reload(signed); err != nil {
		n.t.Fatalf("broker reload: %v", err)
	}
}

func (n *network) keyDir(id string) string { return filepath.Join(n.data, "agencies", id) }

func activeKeyID(t testing.TB, keyDir string, use crypto.KeyUse) string {
	t.Helper()
	a, err := crypto.ReadAgencyFile(filepath.Join(keyDir, crypto.AgencyFile))
	if err != nil {
		t.Fatal(err)
	}
	k, ok := a.ActiveKey(use)
	if !ok {
		t.Fatalf("%s has no active %s key", keyDir, use)
	}
	return k.ID
}

// referralReceipts returns the receipts of a referral at one gateway.
func referralReceipts(t testing.TB, base, token, id string) []map[string]any {
	t.Helper()
	r := call(t, "GET", base+"/v1/referrals/"+id+"/receipts", token, nil)
	if r.Status != 200 {
		t.Fatalf("receipts of %s: %d %s", id, r.Status, r.Raw)
	}
	var out []map[string]any
	for _, x := range r.JSON["receipts"].([]any) {
		out = append(out, x.(map[string]any))
	}
	return out
}

// refusedMetric reads rujukan_envelopes_refused_total for one sender and
// reason from a gateway's metrics.
func refusedMetric(t testing.TB, base, sender, reason string) int {
	t.Helper()
	total := 0
	sc := bufio.NewScanner(strings.NewReader(metrics(t, base)))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "rujukan_envelopes_refused_total{") ||
			!strings.Contains(line, `sender="`+sender+`"`) || !strings.Contains(line, `reason="`+reason+`"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		total += int(v)
	}
	return total
}

// readyReason returns the reason /readyz gives, or "" when ready.
func readyReason(t testing.TB, base string) string {
	t.Helper()
	r := call(t, "GET", base+"/readyz", "", nil)
	if r.Status == 200 {
		return ""
	}
	return r.str("reason")
}

// TestRotationDrill: referrals in flight to the shelter while its gateway
// is down; its age identity, signing key and NATS key are rotated with the
// CLI, the directory published and reloaded by the broker and the IOM
// gateway; the shelter's gateway then opens the envelopes sealed to its
// old key, new ones are sealed to the new key, and the receipts the old
// signing key made still verify at IOM.
func TestRotationDrill(t *testing.T) {
	n := newNetwork(t)
	n.startBroker()
	iomLog := n.spawnLogged("iom")
	n.spawnLogged("shelter")
	iom, shelter := n.url("iom"), n.url("shelter")
	iomTok, shelterTok := n.tokens["iom"], n.tokens["shelter"]

	// Before: a referral delivered and read, its receipts signed with the
	// shelter's first signing key.
	oldSign := activeKeyID(t, n.keyDir("shelter"), crypto.UseSign)
	oldEnc := activeKeyID(t, n.keyDir("shelter"), crypto.UseEncrypt)
	before := call(t, "POST", iom+"/v1/referrals", iomTok, sampleReferral("shelter")).str("id")
	waitStatus(t, iom, iomTok, before, "delivered")
	if r := call(t, "GET", shelter+"/v1/referrals/"+before, shelterTok, nil); r.Status != 200 {
		t.Fatalf("reading at the shelter: %d %s", r.Status, r.Raw)
	}
	waitStatus(t, iom, iomTok, before, "read")

	// In flight: the shelter's gateway is down, referrals wait in its inbox.
	n.stopLogged("shelter")
	var inflight []string
	for range 3 {
		r := call(t, "POST", iom+"/v1/referrals", iomTok, sampleReferral("shelter"))
		if r.Status != 202 {
			t.Fatalf("send: %d %s", r.Status, r.Raw)
		}
		inflight = append(inflight, r.str("id"))
	}
	for _, id := range inflight {
		waitStatus(t, iom, iomTok, id, "sent")
	}

	// Rotate with the CLI, sign, reload the broker and IOM's gateway.
	draft := n.draft()
	out := rujukan(t, "directory", "rotate", "--draft", draft, "--keys", n.keyDir("shelter"))
	newEnc := activeKeyID(t, n.keyDir("shelter"), crypto.UseEncrypt)
	newSign := activeKeyID(t, n.keyDir("shelter"), crypto.UseSign)
	retired := crypto.RetiredIdentityPath(n.keyDir("shelter"), oldEnc)
	for _, want := range []string{
		"shelter: active: encrypt " + newEnc + " (new), sign " + newSign + " (new)",
		"retired for decryption: encrypt " + oldEnc,
		"its private key stays in " + retired,
		"retired: sign " + oldSign,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rotate output lacks %q:\n%s", want, out)
		}
	}
	n.publish(draft)
	n.hup("iom", iomLog, "directory reloaded")

	// After: a new referral is sealed to the new key. Read it (and the
	// ones in flight) from the shelter's inbox with the shelter's new NATS
	// key, and give them back.
	after := call(t, "POST", iom+"/v1/referrals", iomTok, sampleReferral("shelter")).str("id")
	waitStatus(t, iom, iomTok, after, "sent")
	seed, err := client.LoadNKeySeed(filepath.Join(n.keyDir("shelter"), crypto.NATSSeedFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	peek, err := client.Connect(ctx, n.brokerURL(), "shelter", seed, client.NoRetryOnFailedConnect())
	if err != nil {
		t.Fatalf("the shelter's new NATS key: %v", err)
	}
	peek.SetSenders([]string{"iom"})
	keyOf := map[string]string{}
	for ctx.Err() == nil && len(keyOf) < len(inflight)+1 {
		msgs, _ := peek.Fetch(ctx, 64)
		for _, m := range msgs {
			if h, err := crypto.ParseHeader(m.Data()); err == nil && h.Kind == crypto.KindReferral {
				keyOf[h.ID] = h.RecipientKeyID
			}
			m.Nak(0)
		}
	}
	peek.Close()
	for _, id := range inflight {
		if keyOf[id] != oldEnc {
			t.Errorf("referral %s in flight is sealed to key %q, want the old key %s", id, keyOf[id], oldEnc)
		}
	}
	if keyOf[after] != newEnc {
		t.Errorf("referral sent after the rotation is sealed to key %q, want the new key %s", keyOf[after], newEnc)
	}

	// The shelter's gateway starts with its new keys: everything arrives.
	shelterLog := n.spawnLogged("shelter")
	for _, id := range append(inflight, after) {
		waitStatus(t, iom, iomTok, id, "delivered")
		r := call(t, "GET", shelter+"/v1/referrals/"+id, shelterTok, nil)
		if r.Status != 200 {
			t.Fatalf("reading %s at the shelter: %d %s", id, r.Status, r.Raw)
		}
	}
	// What the inbox stored before the rotation is still readable.
	if r := call(t, "GET", shelter+"/v1/referrals/"+before, shelterTok, nil); r.Status != 200 {
		t.Fatalf("reading the referral stored before the rotation: %d %s", r.Status, r.Raw)
	}
	if !strings.Contains(shelterLog.String(), "retired age identity kept for decryption only") ||
		!strings.Contains(shelterLog.String(), oldEnc) {
		t.Errorf("the shelter's log does not name its retired identity:\n%s", shelterLog)
	}

	// Receipts: the old signing key's still verify at IOM, new ones carry
	// the new key.
	for id, want := range map[string]string{before: oldSign, after: newSign} {
		rs := referralReceipts(t, iom, iomTok, id)
		if len(rs) == 0 {
			t.Fatalf("no receipts for %s", id)
		}
		for _, r := range rs {
			if r["verified"] != true || r["key_id"] != want {
				t.Errorf("receipt of %s: %v, want verified with key %s", id, r, want)
			}
		}
	}
}

// TestRevocation: a directory revoking IOM is published. The shelter's
// gateway, reloaded first, refuses IOM's next envelopes; after one broker
// reload IOM's connection is closed and its login refused; the dinsos
// gateway, down meanwhile, refuses IOM's envelopes still waiting in its
// inbox; IOM's own gateway says it is revoked (readyz, log, and at start).
func TestRevocation(t *testing.T) {
	n := newNetwork(t)
	n.startBroker()
	iomLog := n.spawnLogged("iom")
	shelterLog := n.spawnLogged("shelter")
	n.spawnLogged("dinsos")
	iom, shelter, dinsos := n.url("iom"), n.url("shelter"), n.url("dinsos")
	iomTok := n.tokens["iom"]

	before := call(t, "POST", iom+"/v1/referrals", iomTok, sampleReferral("shelter")).str("id")
	waitStatus(t, iom, iomTok, before, "delivered")

	// Referrals to dinsos wait in its inbox while its gateway is down.
	n.stopLogged("dinsos")
	var waiting []string
	for range 3 {
		r := call(t, "POST", iom+"/v1/referrals", iomTok, sampleReferral("dinsos"))
		waiting = append(waiting, r.str("id"))
	}
	for _, id := range waiting {
		waitStatus(t, iom, iomTok, id, "sent")
	}

	// The authority revokes IOM.
	draft := n.draft()
	out := rujukan(t, "directory", "revoke", "--draft", draft, "--agency", "iom")
	if !strings.Contains(out, "revoked agency iom") {
		t.Errorf("revoke output: %s", out)
	}
	rujukan(t, "directory", "sign", "--draft", draft, "--authority-key", filepath.Join(n.data, "authority", "authority.pem"),
		"--out", filepath.Join(n.data, "network.json"))

	// The shelter reloads first; IOM, still connected, sends on: refused.
	n.hup("shelter", shelterLog, "directory reloaded")
	var late []string
	for range 2 {
		r := call(t, "POST", iom+"/v1/referrals", iomTok, sampleReferral("shelter"))
		late = append(late, r.str("id"))
	}
	eventually(t, "the shelter refusing IOM's envelopes", 20*time.Second, func() (bool, string) {
		c := refusedMetric(t, n.metricsURL("shelter"), "iom", crypto.ReasonSenderRevoked)
		return c >= len(late), fmt.Sprint(c)
	})

	// One broker reload closes IOM's connection and refuses its login.
	signed, err := os.ReadFile(filepath.Join(n.data, "network.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.broker.Reload(signed); err != nil {
		t.Fatal(err)
	}
	eventually(t, "IOM's connection closed", 20*time.Second, func() (bool, string) {
		r := readyReason(t, iom)
		return r == "broker-disconnected", r
	})
	seed, err := client.LoadNKeySeed(filepath.Join(n.keyDir("iom"), crypto.NATSSeedFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := client.Connect(ctx, n.brokerURL(), "iom", seed, client.NoRetryOnFailedConnect()); !errors.Is(err, client.ErrAuth) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("IOM logging in after its revocation: %v, want ErrAuth", err)
	}

	// IOM's own gateway, reloaded, says it is revoked.
	n.hup("iom", iomLog, "this agency is revoked")
	if r := readyReason(t, iom); r != "agency-revoked" {
		t.Errorf("IOM readyz reason %q, want agency-revoked", r)
	}

	// Dinsos starts on the new directory: IOM's waiting envelopes are
	// refused, not stored.
	dinsosLog := n.spawnLogged("dinsos")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dinsos log:\n%s", dinsosLog)
		}
	})
	eventually(t, "dinsos refusing IOM's waiting envelopes", 20*time.Second, func() (bool, string) {
		c := refusedMetric(t, n.metricsURL("dinsos"), "iom", crypto.ReasonSenderRevoked)
		return c >= len(waiting), fmt.Sprint(c)
	})
	for base, ids := range map[string][]string{dinsos: waiting, shelter: late} {
		id := strings.TrimPrefix(base, "http://")
		for _, ref := range ids {
			tok := n.tokens["dinsos"]
			if base == shelter {
				tok = n.tokens["shelter"]
			}
			if r := call(t, "GET", base+"/v1/referrals/"+ref, tok, nil); r.Status != 404 {
				t.Errorf("%s holds referral %s from the revoked agency: %d", id, ref, r.Status)
			}
		}
	}
	eventually(t, "dinsos's audit log counting IOM's envelopes refused as revoked", 10*time.Second, func() (bool, string) {
		k := refusedCount(auditAll(t, n.api("dinsos")), "iom", crypto.ReasonSenderRevoked)
		return k > 0, fmt.Sprintf("%d refused", k)
	})
	// What IOM sent before its revocation is kept.
	if r := call(t, "GET", shelter+"/v1/referrals/"+before, n.tokens["shelter"], nil); r.Status != 200 {
		t.Errorf("referral received before the revocation: %d %s", r.Status, r.Raw)
	}

	// Started again, IOM's gateway stops at once with a plain reason.
	n.stopLogged("iom")
	log := &logBuffer{}
	cmd := n.gatewayCmd("iom", log)
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(log.String(), "agency iom is revoked in directory version") {
			t.Errorf("IOM's gateway started again: %v\n%s", err, log)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("IOM's gateway did not stop: %s", log)
	}
}
