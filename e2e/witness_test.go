package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/cli"
)

// witnessCheckpoint reads a gateway's checkpoint with its cosignatures.
func witnessCheckpoint(t *testing.T, n *network, id string) gateway.AuditCheckpoint {
	t.Helper()
	r := call(t, "GET", n.url(id)+"/v1/audit/checkpoint", n.tokens[id], nil)
	var cp gateway.AuditCheckpoint
	if r.Status != 200 || json.Unmarshal(r.Raw, &cp) != nil {
		t.Fatalf("checkpoint of %s: %d %s", id, r.Status, r.Raw)
	}
	return cp
}

// witnessViews reads a gateway's view of the other logs.
func witnessViews(t *testing.T, n *network, id string) map[string]gateway.WitnessedLog {
	t.Helper()
	r := call(t, "GET", n.url(id)+"/v1/audit/witnesses", n.tokens[id], nil)
	var ws []gateway.WitnessedLog
	if r.Status != 200 || json.Unmarshal(r.Raw, &ws) != nil {
		t.Fatalf("witnesses of %s: %d %s", id, r.Status, r.Raw)
	}
	out := map[string]gateway.WitnessedLog{}
	for _, w := range ws {
		out[w.Log] = w
	}
	return out
}

// cosignedSettled waits until id's log stops growing and every other
// agency has cosigned its checkpoint, and returns its size.
func cosignedSettled(t *testing.T, n *network, id string, every time.Duration) uint64 {
	t.Helper()
	var size uint64
	eventually(t, id+"'s checkpoint cosigned by the other three", 30*time.Second, func() (bool, string) {
		cp := witnessCheckpoint(t, n, id)
		got := 0
		for _, cs := range cp.Cosignatures {
			if cs.Size == cp.Size {
				got++
			}
		}
		if got != 3 {
			return false, fmt.Sprintf("size %d, cosignatures %+v", cp.Size, cp.Cosignatures)
		}
		time.Sleep(2 * every)
		size = cp.Size
		return witnessCheckpoint(t, n, id).Size == size, "still growing"
	})
	return size
}

func copyDB(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestWitnessRollback: four real gateways on the broker witness each
// other's audit logs: after traffic, each checkpoint of iom's is cosigned
// by the other three; then iom's gateway is stopped, its store file
// replaced by an older copy and started again, and the other three report
// the rollback within one interval (API and audit log).
func TestWitnessRollback(t *testing.T) {
	const every = time.Second
	n := newNetwork(t)
	accts, err := cli.InitDevAccounts(n.data, testArgon)
	if err != nil {
		t.Fatal(err)
	}
	n.startBroker()
	opt := gateway.Options{WitnessInterval: every}
	for _, a := range cli.DevAgencies {
		n.startGatewayWith(a.ID, n.config(a.ID), opt)
	}
	send := func(to string) {
		r := call(t, "POST", n.url("iom")+"/v1/referrals", n.tokens["iom"], sampleReferral(to))
		if r.Status != 202 {
			t.Fatalf("send: %d %s", r.Status, r.Raw)
		}
		waitStatus(t, n.url("iom"), n.tokens["iom"], r.str("id"), "delivered")
	}
	send("shelter")
	old := cosignedSettled(t, n, "iom", every)
	db := filepath.Join(n.config("iom").Data, "gateway.db")
	n.stopGateway("iom")
	copyDB(t, db, db+".old")
	n.startGatewayWith("iom", n.config("iom"), opt)
	send("dinsos")
	send("police")
	size := cosignedSettled(t, n, "iom", every)
	for _, w := range []string{"dinsos", "police", "shelter"} {
		if v := witnessViews(t, n, w)["iom"]; v.Size != size || v.Alarm != "" {
			t.Fatalf("%s's view of iom before the rollback: %+v", w, v)
		}
	}

	// Online, iom's log extends the checkpoint dinsos holds.
	vc := cli.AuditVerifyConfig{Agency: "iom", Directory: filepath.Join(n.data, "network.json"),
		Authority: "@" + filepath.Join(n.data, "authority", "authority.pub"), WitnessURL: n.url("dinsos"), WitnessToken: n.tokens["dinsos"]}
	res, err := cli.AuditVerifyURL(context.Background(), vc, n.url("iom"), n.tokens["iom"])
	if err != nil || len(res.Witnessed) != 1 || !strings.Contains(res.Witnessed[0], fmt.Sprintf("holds the checkpoint of %d events: the log extends it", size)) {
		t.Fatalf("verify --url --witness-url before the rollback: %v %q", err, res.Witnessed)
	}

	n.stopGateway("iom")
	copyDB(t, db+".old", db)
	start := time.Now()
	n.startGatewayWith("iom", n.config("iom"), opt)
	for _, w := range []string{"dinsos", "police", "shelter"} {
		eventually(t, w+" reporting iom's rollback", every+10*time.Second, func() (bool, string) {
			v := witnessViews(t, n, w)["iom"]
			return v.Alarm == gateway.ReasonRollback, fmt.Sprintf("%+v", v)
		})
		r := call(t, "GET", n.url(w)+"/v1/audit?limit=1000", n.tokens[w], nil)
		var page gateway.AuditPage
		json.Unmarshal(r.Raw, &page)
		found := false
		for _, e := range page.Events {
			if e.Action == gateway.ActWitnessRollback && e.Object == "iom" && e.Detail["seen_size"] == fmt.Sprint(size) &&
				e.Detail["new_size"] == fmt.Sprint(old) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no witness.rollback event about iom from %d to %d events", w, size, old)
		}
	}
	// Online, against dinsos's checkpoint, the rolled-back log fails.
	_, err = cli.AuditVerifyURL(context.Background(), vc, n.url("iom"), n.tokens["iom"])
	if !errors.Is(err, store.ErrAuditBroken) || !strings.Contains(err.Error(), fmt.Sprintf("holds its signed checkpoint of %d events", size)) {
		t.Errorf("verify --url --witness-url after the rollback: %v", err)
	}
	if d := time.Since(start); d > every+2*time.Second {
		t.Errorf("the rollback was reported after %v, the interval is %v", d, every)
	}
	t.Logf("iom rolled back from %d to %d events; reported by the three witnesses after %v", size, old, time.Since(start))

	// The operator of a witness sees it in the web app: the red banner,
	// and iom's log marked rolled back, in English and Bahasa Indonesia.
	t.Run("browser", func(t *testing.T) {
		bin := chromium(t)
		var pw string
		for _, a := range accts["dinsos"] {
			if a.Name == "operator" {
				pw = a.Password
			}
		}
		op := newBrowser(t, bin)
		if msg := submitLogin(t, op, n.url("dinsos"), "en", "operator", pw); msg != "" {
			t.Fatalf("operator sign-in: %q", msg)
		}
		for _, lang := range []string{"en", "id"} {
			brun(t, op, "audit page "+lang,
				chromedp.Navigate(n.url("dinsos")+"/ui/audit?lang="+lang),
				chromedp.WaitVisible(chromedp.CSS("tr.witnessed")))
			banners := value(t, op, "banners", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll(".banner.broken")).map(b => b.textContent.trim())`))
			want := map[string]string{"en": "A witness alarm", "id": "Alarm saksi"}[lang]
			if len(banners) != 1 || !strings.Contains(banners[0], want) {
				t.Errorf("%s: red banners %q, want one saying %q", lang, banners, want)
			}
			rows := value(t, op, "witnessed rows", chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("tr.witnessed")).map(r => Array.from(r.cells).map(c => c.textContent.trim()).join("|"))`))
			rolled := map[string]string{"en": "✗ Rollback", "id": "✗ Dikembalikan"}[lang]
			found := false
			for _, r := range rows {
				cells := strings.Split(r, "|")
				switch {
				case cells[0] == "iom":
					found = cells[3] == rolled
				case strings.HasPrefix(cells[3], "✗"):
					t.Errorf("%s: an alarm about %s: %q", lang, cells[0], r)
				}
			}
			if !found {
				t.Errorf("%s: witnessed logs %q, want iom marked %q", lang, rows, rolled)
			}
			shoot(t, op, "witness-rollback-"+lang)
		}
	})
}
