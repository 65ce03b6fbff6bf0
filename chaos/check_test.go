package chaos

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/cli"
)

// record kinds as the API paths name them.
var recordPaths = map[string]string{"referral": "/v1/referrals", "statement-request": "/v1/statement-requests"}

// holding is what the four gateways hold at one moment: each agency's
// outbox and inbox (referrals and statement requests together; ids are
// unique across kinds), and the duplicates seen while listing them.
type holding struct {
	out, in map[string]map[string]gateway.Item // agency -> id -> record
	dups    []string
}

// list reads a whole box of one kind at gateway id.
func (n *network) list(id, path, box string) ([]gateway.Item, error) {
	var all []gateway.Item
	for cursor := ""; ; {
		var page struct {
			Items []gateway.Item `json:"items"`
			Next  string         `json:"next_cursor"`
		}
		if err := n.get(id, fmt.Sprintf("%s?box=%s&limit=200&cursor=%s", path, box, cursor), &page); err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		if cursor = page.Next; cursor == "" {
			return all, nil
		}
	}
}

// hold lists every box of every gateway: first every outbox, then every
// inbox. A record is stored at its recipient before its sender learns it
// was delivered, and no record is ever removed, so a record that an outbox
// shows delivered is in the inbox listed after it, even if it was still on
// its way when the listing began. (Listed the other way round, a record
// that arrives between the two listings would look delivered at its sender
// and missing at its recipient.)
func (n *network) hold() (*holding, error) {
	h := &holding{out: map[string]map[string]gateway.Item{}, in: map[string]map[string]gateway.Item{}}
	for _, id := range agencies {
		h.out[id], h.in[id] = map[string]gateway.Item{}, map[string]gateway.Item{}
	}
	// Where each id was first listed, by box: an id is in one outbox and
	// one inbox.
	where := map[string]map[string]string{"outbox": {}, "inbox": {}}
	for _, b := range []struct {
		box string
		all map[string]map[string]gateway.Item
	}{{"outbox", h.out}, {"inbox", h.in}} {
		box := b.box
		for _, id := range agencies {
			m := b.all[id]
			for _, path := range recordPaths {
				items, err := n.list(id, path, box)
				if err != nil {
					return nil, err
				}
				for _, it := range items {
					place := id + " " + box
					if prev, ok := where[box][it.ID]; ok {
						h.dups = append(h.dups, fmt.Sprintf("%s %s listed in the %s and in the %s", it.Kind, it.ID, prev, place))
						continue
					}
					where[box][it.ID] = place
					m[it.ID] = it
				}
			}
		}
	}
	return h, nil
}

// inFlight reports whether a sent record has no delivery outcome yet.
func inFlight(it gateway.Item) bool { return it.Status == "queued" || it.Status == "sent" }

// statements are the statements the network owes: those the load was
// promised, and those the holders hold as answered (a 200 lost with its
// gateway), by request id, with their holder.
func statements(h *holding, acc []accepted) map[string]string {
	out := map[string]string{}
	for _, a := range acc {
		if a.Kind == kindStatement {
			out[a.ID] = a.From
		}
	}
	for _, holder := range holders {
		for id, it := range h.in[holder] {
			if it.Kind == "statement-request" && it.Status == "answered" {
				out[id] = holder
			}
		}
	}
	return out
}

// count is how many timeline entries of it are event.
func count(it gateway.Item, event string) int {
	c := 0
	for _, e := range it.Timeline {
		if e.Event == event {
			c++
		}
	}
	return c
}

// entry returns the first timeline entry of event.
func entry(it gateway.Item, event string) (gateway.TimelineEvent, bool) {
	for _, e := range it.Timeline {
		if e.Event == event {
			return e, true
		}
	}
	return gateway.TimelineEvent{}, false
}

// record reads one record with its timeline.
func (n *network) record(id, kind, rid string) (gateway.Item, error) {
	var it gateway.Item
	err := n.get(id, recordPaths[kind]+"/"+rid, &it)
	return it, err
}

// settled reports whether every message sent has its outcome: no record
// queued or sent, every statement owed answered at the police and its
// delivery noted at the holder.
func (n *network) settled(acc []accepted) (*holding, bool, string) {
	h, err := n.hold()
	if err != nil {
		return nil, false, err.Error()
	}
	flying := 0
	for _, id := range agencies {
		for _, it := range h.out[id] {
			if inFlight(it) {
				flying++
			}
		}
	}
	if flying > 0 {
		return h, false, fmt.Sprintf("%d records queued or sent", flying)
	}
	waiting, example := 0, ""
	for rid, holder := range statements(h, acc) {
		if s := h.out["police"][rid].Status; s != "answered" {
			waiting++
			example = fmt.Sprintf("request %s is %s at the police", rid, s)
			continue
		}
		it, err := n.record(holder, "statement-request", rid)
		if err != nil {
			return h, false, err.Error()
		}
		if count(it, "statement-delivered")+count(it, "statement-rejected") == 0 {
			waiting++
			example = fmt.Sprintf("request %s at %s: %+v", rid, holder, it.Timeline)
		}
	}
	if waiting > 0 {
		return h, false, fmt.Sprintf("%d statements not answered at the police or not noted delivered at the holder (%s)", waiting, example)
	}
	return h, true, ""
}

// tally is the outcome of one kind of message.
type tally struct {
	accepted, unconfirmed, delivered, failed, lost, duplicates int
	worst                                                      time.Duration
	worstID                                                    string
}

// check compares what the load was promised with what the gateways hold,
// and returns the problems found and a tally by kind.
func (n *network) check(h *holding, acc []accepted) ([]string, map[string]*tally) {
	var bad []string
	fail := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	tallies := map[string]*tally{}
	for _, k := range kinds {
		tallies[k] = &tally{}
	}
	for _, d := range h.dups {
		fail("duplicate: %s", d)
	}
	promised := map[string]accepted{}
	for _, a := range acc {
		tallies[a.Kind].accepted++
		if a.Kind == kindStatement {
			continue
		}
		if _, ok := promised[a.ID]; ok {
			fail("duplicate: two 202 answers with id %s", a.ID)
			tallies[a.Kind].duplicates++
		}
		promised[a.ID] = a
	}

	// Every record sent, promised or not: at its recipient exactly when
	// delivered at its sender; failed ones with a reason.
	for _, from := range agencies {
		for id, it := range h.out[from] {
			a, ok := promised[id]
			kind := a.Kind
			if !ok {
				kind = kindReferral
				if it.Kind == "statement-request" {
					kind = kindRequest
				}
				tallies[kind].unconfirmed++
			} else if it.To != a.To || it.Kind != recordKind(a.Kind) {
				fail("%s %s: 202 from %s to %s, but the sender holds a %s to %s", a.Kind, id, from, a.To, it.Kind, it.To)
			}
			got, there := h.in[it.To][id]
			switch {
			case it.Status == "failed":
				tallies[kind].failed++
				if there {
					fail("%s %s: failed at %s but in %s's inbox (%s)", kind, id, from, it.To, got.Status)
				}
				full, err := n.record(from, it.Kind, id)
				if e, found := entry(full, "failed"); err != nil || !found || e.Reason == "" {
					fail("%s %s: failed at %s without a reason (%v): %+v", kind, id, from, err, full.Timeline)
				}
			case !there:
				fail("%s %s: %s at %s but not in %s's inbox", kind, id, it.Status, from, it.To)
			case got.From != from:
				fail("%s %s: sent by %s, in %s's inbox as from %s", kind, id, from, it.To, got.From)
			default:
				tallies[kind].delivered++
			}
		}
	}
	// Every record received was sent.
	for _, to := range agencies {
		for id, it := range h.in[to] {
			if sent, ok := h.out[it.From][id]; !ok || sent.To != to {
				fail("%s %s in %s's inbox, from %s, which holds no such record sent to %s", it.Kind, id, to, it.From, to)
			}
		}
	}
	// Every promise kept: the record at its sender (a missing one is a
	// lost 202), the file with its hash, and how long delivery took.
	for id, a := range promised {
		it, ok := h.out[a.From][id]
		if !ok {
			fail("LOST: %s %s accepted (202) by %s at %s, to %s: no record at %s", a.Kind, id, a.From,
				a.At.UTC().Format(time.RFC3339Nano), a.To, a.From)
			tallies[a.Kind].lost++
			continue
		}
		if it.Status == "failed" {
			continue
		}
		full, err := n.record(a.From, it.Kind, id)
		if err != nil {
			fail("%s %s at %s: %v", a.Kind, id, a.From, err)
			continue
		}
		if e, ok := entry(full, "delivered"); ok {
			tallies[a.Kind].see(id, a.At, e.At)
		}
		if a.FileID != "" {
			if sum, err := n.fileHash(a.To, id, a.FileID); err != nil || sum != a.FileSHA {
				fail("file %s of referral %s at %s: sha256 %s (%v), uploaded %s", a.FileID, id, a.To, sum, err, a.FileSHA)
			}
		}
	}
	// Statements: answered once at the police, delivered once at the
	// holder.
	stmts := statements(h, acc)
	confirmed := map[string]accepted{}
	for _, a := range acc {
		if a.Kind == kindStatement {
			confirmed[a.ID] = a
		}
	}
	for rid, holder := range stmts {
		t := tallies[kindStatement]
		a, ok := confirmed[rid]
		if !ok {
			t.unconfirmed++
		}
		if got := h.in[holder][rid].Status; got != "answered" {
			fail("LOST: statement answering %s: accepted (200 answered) by %s, the request is %q there", rid, holder, got)
			t.lost++
			continue
		}
		police, err := n.record("police", "statement-request", rid)
		if err != nil {
			fail("statement answering %s: %v", rid, err)
			continue
		}
		sent, err := n.record(holder, "statement-request", rid)
		if err != nil {
			fail("statement answering %s at %s: %v", rid, holder, err)
			continue
		}
		rejected := count(sent, "statement-rejected")
		switch {
		case rejected > 0:
			t.failed++
			if police.Status == "answered" {
				fail("statement answering %s: rejected at the police, but answered there", rid)
			}
		case police.Status != "answered" || count(police, "answered") != 1:
			fail("statement answering %s: %s at the police with %d answered entries", rid, police.Status, count(police, "answered"))
		case count(sent, "statement-delivered") != 1:
			fail("statement answering %s: %d statement-delivered entries at %s", rid, count(sent, "statement-delivered"), holder)
			t.duplicates++
		default:
			t.delivered++
			if e, found := entry(sent, "statement-delivered"); ok && found {
				t.see(rid, a.At, e.At)
			}
		}
	}
	return bad, tallies
}

// recordKind is the record kind of a kind of message the load sends.
func recordKind(kind string) string {
	if kind == kindRequest {
		return "statement-request"
	}
	return "referral"
}

// see keeps the longest time from acceptance to delivery.
func (t *tally) see(id string, from time.Time, at string) {
	to, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return
	}
	if d := to.Sub(from); d > t.worst {
		t.worst, t.worstID = d, id
	}
}

// fileHash downloads a referral's file at gateway id.
func (n *network) fileHash(id, ref, file string) (string, error) {
	req, err := http.NewRequest("GET", n.url(id)+"/v1/referrals/"+ref+"/attachments/"+file, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+n.tokens[id])
	resp, err := n.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(resp.Body)
		return "", fmt.Errorf("%d %s", resp.StatusCode, raw)
	}
	s := sha256.New()
	if _, err := io.Copy(s, resp.Body); err != nil {
		return "", err
	}
	return hex.EncodeToString(s.Sum(nil)), nil
}

// auditOnline checks every running gateway's audit log through its API
// and every witness's view of the other logs: no alarm. It returns what
// each witness holds, for the summary.
func (n *network) auditOnline() ([]string, []string) {
	var bad, held []string
	for _, id := range agencies {
		var v gateway.AuditVerification
		if err := n.get(id, "/v1/audit/verify", &v); err != nil || !v.OK {
			bad = append(bad, fmt.Sprintf("audit log of %s does not verify: %v %s", id, err, v.Error))
		}
		var ws []gateway.WitnessedLog
		if err := n.get(id, "/v1/audit/witnesses", &ws); err != nil {
			bad = append(bad, fmt.Sprintf("witnesses of %s: %v", id, err))
			continue
		}
		sort.Slice(ws, func(i, j int) bool { return ws[i].Log < ws[j].Log })
		if len(ws) != len(agencies)-1 {
			bad = append(bad, fmt.Sprintf("%s witnessed %d logs, want the %d others", id, len(ws), len(agencies)-1))
		}
		var seen []string
		for _, w := range ws {
			if w.Alarm != "" {
				bad = append(bad, fmt.Sprintf("%s raises a %s alarm about %s's log (it holds %d events)", id, w.Alarm, w.Log, w.Size))
			}
			seen = append(seen, fmt.Sprintf("%s@%d", w.Log, w.Size))
		}
		held = append(held, fmt.Sprintf("%s holds %s (log %d events)", id, strings.Join(seen, " "), v.Events))
	}
	return bad, held
}

// refusals lists what the gateways refused or dropped, as their audit
// logs say: envelopes refused one by one or counted, envelopes expired
// unsent. The load sends only valid messages, so there should be none.
func (n *network) refusals() []string {
	var bad []string
	for _, id := range agencies {
		for _, action := range []string{"envelope.receive", "envelope.refused", "envelope.expire"} {
			for after := uint64(0); ; {
				var page gateway.AuditPage
				if err := n.get(id, fmt.Sprintf("/v1/audit?action=%s&limit=1000&after=%d", action, after), &page); err != nil {
					bad = append(bad, err.Error())
					break
				}
				for _, e := range page.Events {
					bad = append(bad, fmt.Sprintf("%s audited %s %s by %s: %s %s %v", id, e.Action, e.Object, e.Actor, e.Outcome, e.Reason, e.Detail))
				}
				if after = page.Next; after == 0 {
					break
				}
			}
		}
	}
	return bad
}

// auditOffline runs `rujukan audit verify --data DATA --agency ID` for
// every gateway, once they are stopped: each log verifies and extends
// the checkpoint of it every other gateway witnessed.
func (n *network) auditOffline() []string {
	var bad []string
	for _, id := range agencies {
		var out bytes.Buffer
		err := cli.Main(context.Background(), cli.Env{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }},
			[]string{"audit", "verify", "--data", n.data, "--agency", id})
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("rujukan audit verify --agency %s: %v\n%s", id, err, out.String()))
		case strings.Contains(out.String(), "alarm"):
			// A witness raised an alarm after the online check.
			bad = append(bad, fmt.Sprintf("rujukan audit verify --agency %s reports a witness alarm:\n%s", id, out.String()))
		}
		n.t.Logf("audit verify --agency %s: %s", id, strings.ReplaceAll(strings.TrimSpace(out.String()), "\n", "; "))
	}
	return bad
}

// summary is the table of a run.
func summary(tallies map[string]*tally, kills map[string]int, l *ledger) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-18s %8s %11s %9s %6s %4s %4s %10s %s\n", "kind", "accepted", "unconfirmed", "delivered", "failed", "lost", "dup", "no answer", "longest 202->delivered")
	var total tally
	for _, k := range kinds {
		t := tallies[k]
		fmt.Fprintf(&b, "%-18s %8d %11d %9d %6d %4d %4d %10d %v %s\n", k, t.accepted, t.unconfirmed, t.delivered, t.failed, t.lost,
			t.duplicates, l.down[k], t.worst.Round(time.Millisecond), t.worstID)
		total.accepted += t.accepted
		total.unconfirmed += t.unconfirmed
		total.delivered += t.delivered
		total.failed += t.failed
		total.lost += t.lost
		total.duplicates += t.duplicates
		total.worst = max(total.worst, t.worst)
	}
	fmt.Fprintf(&b, "%-18s %8d %11d %9d %6d %4d %4d %10d %v\n", "all", total.accepted, total.unconfirmed, total.delivered,
		total.failed, total.lost, total.duplicates, l.down[kindReferral]+l.down[kindFile]+l.down[kindRequest]+l.down[kindStatement],
		total.worst.Round(time.Millisecond))
	var ks []string
	sum := 0
	for _, id := range append([]string{brokerID}, agencies...) {
		ks = append(ks, fmt.Sprintf("%s %d", id, kills[id]))
		sum += kills[id]
	}
	fmt.Fprintf(&b, "kills: %d (%s)\n", sum, strings.Join(ks, ", "))
	if r := l.refusals(); len(r) > 0 {
		fmt.Fprintf(&b, "answers other than the promise: %s\n", strings.Join(r, "; "))
	}
	if c := l.down["upload"] + l.down["consent"] + l.down["open request"]; c > 0 {
		fmt.Fprintf(&b, "uploads, consents and opens without an answer: %d\n", c)
	}
	return strings.TrimRight(b.String(), "\n")
}
