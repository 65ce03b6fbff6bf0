package chaos

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
)

// Kinds of message the load sends.
const (
	kindReferral  = "referral"
	kindFile      = "referral+file" // a referral listing one uploaded file
	kindRequest   = "statement-request"
	kindStatement = "statement"
)

var kinds = []string{kindReferral, kindFile, kindRequest, kindStatement}

// holders are the agencies the police may ask for a statement.
var holders = []string{"iom", "dinsos", "shelter"}

// accepted is a message a gateway accepted: 202 for a referral or a
// request, 200 "answered" for a statement. ID is the record's id (for a
// statement, the id of the request it answers).
type accepted struct {
	ID, Kind, From, To string
	At                 time.Time
	// FileID and FileSHA are the uploaded file of a kindFile referral.
	FileID, FileSHA string
}

// ledger is what the load was promised, and what it could not send.
type ledger struct {
	mu       sync.Mutex
	accepted []accepted
	// requests are the accepted requests not answered yet.
	requests []accepted
	// down counts requests that got no answer (the gateway was dead),
	// refused counts other answers than the promise, by operation and
	// status.
	down    map[string]int
	refused map[string]int
	samples map[string]string
}

func newLedger() *ledger {
	return &ledger{down: map[string]int{}, refused: map[string]int{}, samples: map[string]string{}}
}

func (l *ledger) accept(a accepted) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.accepted = append(l.accepted, a)
	if a.Kind == kindRequest {
		l.requests = append(l.requests, a)
	}
}

// outcome records an answer that was not the promise: no answer (err
// wraps errDown), or another status.
func (l *ledger) outcome(op string, status int, raw []byte, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if errors.Is(err, errDown) {
		l.down[op]++
		return
	}
	key := fmt.Sprintf("%s %d", op, status)
	if err != nil {
		key = op + " error"
	}
	l.refused[key]++
	if _, ok := l.samples[key]; !ok {
		l.samples[key] = fmt.Sprintf("%s %v", raw, err)
	}
}

// claim takes an accepted request not answered yet off the list, for
// one worker to answer; release puts one not answered back.
func (l *ledger) claim(rng *rand.Rand) (accepted, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.requests) == 0 {
		return accepted{}, false
	}
	i := rng.IntN(len(l.requests))
	a := l.requests[i]
	l.requests = slices.Delete(l.requests, i, i+1)
	return a, true
}

func (l *ledger) release(a accepted) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.requests = append(l.requests, a)
}

func (l *ledger) snapshot() []accepted {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.accepted)
}

// refusals lists the answers that were not promises, with a sample of each.
func (l *ledger) refusals() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for k, c := range l.refused {
		out = append(out, fmt.Sprintf("%s: %d (first: %.300s)", k, c, l.samples[k]))
	}
	sort.Strings(out)
	return out
}

// trap lets the killer strike right after a gateway accepted a message
// from or to its victim: the envelope is committed and being published,
// or on its way to the victim.
type trap struct {
	mu     sync.Mutex
	victim string
	fire   chan struct{}
}

func (t *trap) arm(victim string) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.victim, t.fire = victim, make(chan struct{})
	return t.fire
}

func (t *trap) disarm() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.victim, t.fire = "", nil
}

// spring fires the trap if a message from or to its victim (any, for the
// broker) was just accepted.
func (t *trap) spring(from, to string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fire != nil && (t.victim == brokerID || t.victim == from || t.victim == to) {
		close(t.fire)
		t.victim, t.fire = "", nil
	}
}

// driver is the load: workers sending messages between random pairs of
// agencies the network rules allow.
type driver struct {
	n    *network
	l    *ledger
	trap *trap
	seq  sync.Mutex
	next int
}

// pseudonym is a fresh pseudonym of the default pattern.
func (d *driver) pseudonym() string {
	d.seq.Lock()
	defer d.seq.Unlock()
	d.next++
	return fmt.Sprintf("CH-2026-%06d", d.next)
}

// run sends until ctx ends; rng makes the worker's choices.
func (d *driver) run(ctx context.Context, rng *rand.Rand) {
	for ctx.Err() == nil {
		var err error
		switch p := rng.IntN(100); {
		case p < 45:
			err = d.referral(rng)
		case p < 60:
			err = d.fileReferral(rng)
		case p < 78:
			err = d.request(rng)
		default:
			err = d.answer(rng)
		}
		pause := time.Duration(20+rng.IntN(80)) * time.Millisecond
		if errors.Is(err, errDown) {
			pause = time.Duration(100+rng.IntN(200)) * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

func pair(rng *rand.Rand) (from, to string) {
	from = agencies[rng.IntN(len(agencies))]
	for to = from; to == from; {
		to = agencies[rng.IntN(len(agencies))]
	}
	return from, to
}

// referralBody is a valid referral to agency to.
func referralBody(to, pseudonym string) map[string]any {
	purpose := "services"
	if to == "police" {
		purpose = "law-enforcement"
	}
	return map[string]any{
		"to":       to,
		"priority": []string{"urgent", "normal"}[len(pseudonym)%2],
		"person": map[string]any{"pseudonym": pseudonym, "sex": "female", "age": 19, "nationality": "ID",
			"languages": []string{"id"}},
		"exploitation": []string{"labour"},
		"identified":   map[string]any{"date": "2026-11-20", "place": "Lembar harbour", "by": "iom"},
		"needs":        []string{"shelter"},
		"risk":         "medium",
		"consent": map[string]any{"given": true, "purposes": []string{purpose}, "method": "written",
			"witness": "social worker", "recorded_at": "2026-11-20T09:00:00Z"},
	}
}

// referral sends a referral between a random pair.
func (d *driver) referral(rng *rand.Rand) error {
	from, to := pair(rng)
	_, err := d.post(from, to, kindReferral, "/v1/referrals", referralBody(to, d.pseudonym()), accepted{})
	return err
}

// fileReferral uploads a small file at a random sender and sends a
// referral listing it.
func (d *driver) fileReferral(rng *rand.Rand) error {
	from, to := pair(rng)
	// At least the PDF header: a file of a few bytes, "%PD", is no PDF
	// and is rightly refused (415).
	const head = "%PDF-1.7\n"
	file := make([]byte, len(head)+rng.IntN(48<<10))
	for i := range file {
		file[i] = byte(rng.Uint32())
	}
	copy(file, head)
	sum := sha256.Sum256(file)
	status, raw, err := d.n.send(from, "POST", "/v1/attachments", strings.NewReader(string(file)),
		map[string]string{"Content-Type": "application/pdf", "Content-Disposition": `attachment; filename="record.pdf"`})
	var up struct {
		ID string `json:"id"`
	}
	if err != nil || status != http.StatusCreated || json.Unmarshal(raw, &up) != nil || up.ID == "" {
		d.l.outcome("upload", status, raw, err)
		return err
	}
	b := referralBody(to, d.pseudonym())
	b["attachments"] = []map[string]string{{"id": up.ID}}
	_, err = d.post(from, to, kindFile, "/v1/referrals", b, accepted{FileID: up.ID, FileSHA: hex.EncodeToString(sum[:])})
	return err
}

// request sends a statement request from the police to a holder.
func (d *driver) request(rng *rand.Rand) error {
	to := holders[rng.IntN(len(holders))]
	b := map[string]any{"to": to, "pseudonym": d.pseudonym(), "legal_basis": "LP/B/123/XI/2026/NTB",
		"purpose": "investigation", "questions": []string{"Who arranged the journey?"},
		"due": time.Now().Add(72 * time.Hour).UTC().Format(time.RFC3339)}
	_, err := d.post("police", to, kindRequest, "/v1/statement-requests", b, accepted{})
	return err
}

// post sends one message; a 202 is recorded as accepted.
func (d *driver) post(from, to, kind, path string, body any, a accepted) (string, error) {
	start := time.Now()
	status, raw, err := d.n.call(from, "POST", path, body)
	var r struct {
		ID string `json:"id"`
	}
	if err != nil || status != http.StatusAccepted || json.Unmarshal(raw, &r) != nil || r.ID == "" {
		d.l.outcome(kind, status, raw, err)
		return "", err
	}
	a.ID, a.Kind, a.From, a.To, a.At = r.ID, kind, from, to, start
	d.l.accept(a)
	d.trap.spring(from, to)
	return r.ID, nil
}

// answer takes an accepted request one step on at the holder: consent,
// then the statement. A request not arrived yet is left for later.
func (d *driver) answer(rng *rand.Rand) error {
	req, ok := d.l.claim(rng)
	if !ok {
		return nil
	}
	done := false
	defer func() {
		if !done {
			d.l.release(req)
		}
	}()
	holder, path := req.To, "/v1/statement-requests/"+req.ID
	var it gateway.Item
	status, raw, err := d.n.call(holder, "GET", path, nil)
	if err != nil || status == http.StatusNotFound {
		return err
	}
	if status != http.StatusOK || json.Unmarshal(raw, &it) != nil {
		d.l.outcome("open request", status, raw, err)
		return nil
	}
	switch it.Status {
	case "delivered", "read":
		consent := map[string]any{"given": true, "purposes": []string{"statement"}, "method": "written",
			"witness_role": "social-worker", "witness": "S. Rahma", "person": map[string]any{"age": 30}}
		status, raw, err := d.n.call(holder, "POST", path+"/consent", consent)
		if err != nil || status != http.StatusOK {
			d.l.outcome("consent", status, raw, err)
			return err
		}
		fallthrough
	case "consent-given":
		start := time.Now()
		stmt := map[string]any{"statement": map[string]any{"text": "He took our passports at the harbour.", "language": "id",
			"taken_at": time.Now().UTC().Truncate(time.Second).Format(time.RFC3339), "taken_by": holder + "/officer"}}
		status, raw, err := d.n.call(holder, "POST", path+"/response", stmt)
		if err != nil || status != http.StatusOK || json.Unmarshal(raw, &it) != nil || it.Status != "answered" {
			d.l.outcome(kindStatement, status, raw, err)
			return err
		}
		done = true
		d.l.accept(accepted{ID: req.ID, Kind: kindStatement, From: holder, To: "police", At: start})
		d.trap.spring(holder, "police")
	default:
		// Answered already: the answer's 200 was lost with its gateway
		// (not a promise; the check still follows it).
		done = true
	}
	return nil
}

// killer kills one process at a time, at random moments, and starts it
// again on the same data and ports.
type killer struct {
	n     *network
	trap  *trap
	gap   [2]time.Duration // time between kills, from..to
	down  [2]time.Duration // time a process stays dead, from..to
	kills map[string]int
	// errs are restarts that failed.
	errs []error
}

func between(rng *rand.Rand, r [2]time.Duration) time.Duration {
	return r[0] + time.Duration(rng.Int64N(int64(r[1]-r[0])+1))
}

// run kills until ctx ends and at least min kills were made.
func (k *killer) run(ctx context.Context, rng *rand.Rand, min int, logf func(string, ...any)) {
	for total := 0; ctx.Err() == nil || total < min; total++ {
		time.Sleep(between(rng, k.gap))
		victim := brokerID
		if p := rng.IntN(3); p > 0 {
			victim = agencies[rng.IntN(len(agencies))]
		}
		how := "at a random moment"
		if rng.IntN(2) == 0 {
			// Right after a message from or to the victim was accepted.
			select {
			case <-k.trap.arm(victim):
				how = "right after a 202"
			case <-time.After(3 * time.Second):
			}
			k.trap.disarm()
		}
		k.n.kill(victim)
		k.kills[victim]++
		dead := between(rng, k.down)
		logf("kill %d: %s %s, dead for %v", total+1, victim, how, dead.Round(time.Millisecond))
		time.Sleep(dead)
		if err := k.n.start(victim); err != nil {
			k.errs = append(k.errs, fmt.Errorf("restart of %s after kill %d: %w", victim, total+1, err))
			return
		}
	}
}
