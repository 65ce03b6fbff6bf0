package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/broker"
	"github.com/rujukan/rujukan/crypto"
)

// The floor is the least CPU time one referral can cost: the primitives it
// needs from the POST at the sender to the delivered outcome there, each
// measured alone in this process, in busy loops and at a paced run's rate
// (FloorMeter.MeasurePaced). `rujukan bench` shows the CPU time per
// referral as a multiple of it.

// floorSteps are the primitives one referral needs and how many times it
// needs each. They are counted from the gateway (agency-gateway send.go,
// outbox.go, receive.go, referral.go, receipt.go, thread.go and store):
//
//   - the sender's Send puts a fresh thread key in the referral, seals it
//     (crypto.Seal: sign, hybrid encrypt, sign), keeps an at-rest copy of
//     the body and the thread key sealed at rest (AtRest.Seal), and
//     commits: bbolt commit 1;
//   - its publish sends the envelope with a JetStream acknowledgement; the
//     bookkeeping (dequeue, record sent) joins the next commit
//     (store.DB.Later), so it needs no commit of its own;
//   - the recipient fetches it, checks the outer signature (VerifyOuter)
//     and opens it (OpenVerified: hybrid decrypt, inner signature), keeps
//     the thread key sealed at rest, signs the delivered receipt
//     (crypto.SignReceipt) and seals it in the thread (crypto.SealThread:
//     AES-256-GCM, sign), commits (commit 2), then acks the message
//     (AckSync);
//   - its publish sends the receipt with an acknowledgement; the
//     bookkeeping joins the next commit;
//   - the sender fetches the receipt, checks its outer signature, opens its
//     thread key kept at rest (AtRest.Open) and the receipt with it,
//     verifies the receipt (crypto.VerifyReceiptEnvelope), commits the
//     delivered record (commit 3: the outcome), then acks the message.
//
// So two JetStream messages (the referral, then the receipt), each
// published with an acknowledgement and pulled and acked on a work-queue
// stream (SyncAlways), and at the least three fsynced bbolt commits, two
// at the sender and one at the recipient. A publish's bookkeeping that
// finds no commit to join within store.LaterDelay commits alone (at a low
// rate the recipient's does: four commits), and the gateways group
// concurrent commits (store.DB.Batch), so under load they make fewer; the
// bench reports the number it saw.
//
// Not counted, being a choice of the implementation rather than a need of
// the protocol: the store signs its audit checkpoint in every commit that
// adds an audit event.
var floorSteps = []floorStep{
	{"seal referral: sign, hybrid age encrypt, sign", 1, sealReferral},
	{"open referral: verify, hybrid decrypt, verify", 1, openReferral},
	{"at-rest copy of the referral (AES-256-GCM)", 1, atRestCopy},
	{"thread key sealed at rest (AES-256-GCM)", 2, sealThreadKey},
	{"thread key opened from rest (AES-256-GCM)", 1, openThreadKey},
	{"sign delivered receipt (Ed25519)", 1, signReceipt},
	{receiptSeal.sealName, 1, sealReceipt},
	{receiptSeal.openName, 1, openReceipt},
	{"JetStream message of the referral: acked publish, pull, AckSync (fsync)", 1,
		jetStreamRoundTrip(func(k *floorKit) []byte { return k.referral })},
	{"JetStream message of the receipt: acked publish, pull, AckSync (fsync)", 1,
		jetStreamRoundTrip(func(k *floorKit) []byte { return k.sealedReceipt })},
	{"bbolt commit of a small write: one envelope (fsync)", 3, bboltCommit},
}

// receiptSeal is how a signed receipt travels back to the sender: a thread
// envelope (receiptAge is how it travels when the referral carries no
// thread key).
var receiptSeal = receiptThread

// receiptCodec is a way to carry a signed receipt from the recipient
// (shelter) to the sender (iom).
type receiptCodec struct {
	sealName, openName string
	// seal seals the signed receipt k.receipt to the sender.
	seal func(k *floorKit) ([]byte, error)
	// open opens, at the sender, what seal made and verifies the receipt.
	open func(k *floorKit, sealed []byte) error
}

var receiptThread = receiptCodec{
	sealName: "seal receipt in the thread: AES-256-GCM, sign",
	openName: "open receipt in the thread: verify, AES-256-GCM; verify receipt",
	seal: func(k *floorKit) ([]byte, error) {
		return crypto.SealThread(k.header(crypto.KindReceipt, "shelter"), k.receipt, k.shelterSigner, k.iomAgency, k.thread)
	},
	open: openReceiptEnvelope,
}

var receiptAge = receiptCodec{
	sealName: "seal receipt envelope to the sender: sign, hybrid age encrypt, sign",
	openName: "open receipt envelope: verify, hybrid decrypt, verify; verify receipt",
	seal: func(k *floorKit) ([]byte, error) {
		return crypto.Seal(k.header(crypto.KindReceipt, "shelter"), k.receipt, k.shelterSigner, k.iomAgency)
	},
	open: openReceiptEnvelope,
}

// openReceiptEnvelope opens a receipt envelope at the sender and verifies
// the receipt.
func openReceiptEnvelope(k *floorKit, sealed []byte) error {
	h, body, err := k.iomOpener.Open(sealed, time.Now())
	if err != nil {
		return err
	}
	_, err = crypto.VerifyReceiptEnvelope(h, body, k.dir)
	return err
}

// floorStep is one primitive: make prepares it (not measured) and returns
// the operation, which does it n times.
type floorStep struct {
	name  string
	count int
	make  func(*floorKit) (floorOp, error)
}

type floorOp func(n int) error

// FloorStep is the measured cost of one primitive.
type FloorStep struct {
	Name  string `json:"name"`
	Count int    `json:"count"`
	// CPU is the process CPU time (user and system) of one operation and
	// Wall its elapsed time, on one goroutine.
	CPU  time.Duration `json:"cpu_ns"`
	Wall time.Duration `json:"wall_ns"`
	// Ops is how many operations were timed, in every measurement.
	Ops int `json:"ops"`
	// Switches is the context switches of this process per operation in
	// the paced measurement of the lowest CPU time, less the idle tick's
	// (zero in busy loops, which are not counted).
	Switches float64 `json:"switches,omitempty"`
}

// Floor is the cost of the primitives one referral needs.
type Floor struct {
	// Rate is 0 for the floor measured in busy loops, each step done again
	// as soon as it is done; else each step was done Rate times a second,
	// as a paced run does it (see FloorMeter.MeasurePaced).
	Rate  int         `json:"rate,omitempty"`
	Steps []FloorStep `json:"steps"`
	// CPU and Wall sum each step's cost times its count.
	CPU  time.Duration `json:"cpu_ns"`
	Wall time.Duration `json:"wall_ns"`
	// Measured is the CPU of each measurement on its own, in the order
	// they were taken (the bench's: before the runs, then after). CPU
	// keeps each step's lowest cost of them all; their spread shows how
	// far the load on the machine moved meanwhile.
	Measured []time.Duration `json:"measured_cpu_ns,omitempty"`
	// Chained is the CPU time of every step, each its count of times, done
	// one after another on one goroutine (once per tick at Rate), the
	// lowest of the measurements: the steps as a referral chains them,
	// without the wake-up from idle that each step alone pays at a low
	// rate. It is shown beside the floor; no run is held to it.
	Chained time.Duration `json:"chained_cpu_ns,omitempty"`
}

// Each step is repeated for at least floorBudget and floorOps operations,
// and at most floorMax (a step that waits on the disk may be slow).
const (
	floorBudget = 100 * time.Millisecond
	floorOps    = 50
	floorMax    = 400 * time.Millisecond
)

// FloorMeter measures the floor, as often as asked, with the same keys,
// server and store.
type FloorMeter struct {
	k   *floorKit
	ops []floorOp
	// chain does every step, each its count of times, one after another.
	chain floorOp
	// low is each step's lowest cost so far, by rate (0: in busy loops),
	// and lowChain the chain's; measured the CPU of each measurement on
	// its own.
	low      map[int][]FloorStep
	lowChain map[int]time.Duration
	measured map[int][]time.Duration
}

// NewFloorMeter prepares every step of floorSteps.
func NewFloorMeter(ctx context.Context) (*FloorMeter, error) {
	k, err := newFloorKit(ctx)
	if err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	m := &FloorMeter{k: k, low: map[int][]FloorStep{}, lowChain: map[int]time.Duration{}, measured: map[int][]time.Duration{}}
	for _, s := range floorSteps {
		op, err := s.make(k)
		if err != nil {
			k.close()
			return nil, fmt.Errorf("floor: %s: %w", s.name, err)
		}
		m.ops = append(m.ops, op)
	}
	m.chain = func(n int) error {
		for range n {
			for i, op := range m.ops {
				if err := op(floorSteps[i].count); err != nil {
					return fmt.Errorf("%s: %w", floorSteps[i].name, err)
				}
			}
		}
		return nil
	}
	return m, nil
}

// floorMeasures is how many measurements one measurement of the floor
// makes: each step's, then the chain's.
var floorMeasures = len(floorSteps) + 1

// Close stops the server and removes the store.
func (m *FloorMeter) Close() { m.k.close() }

// Measure measures every step once more in this process, in a busy loop,
// calling stepped after each, and returns the floor made of each step's
// lowest cost so far (load from elsewhere on the machine only ever makes
// an operation dearer). Nothing else should run meanwhile: it reads the
// process's CPU time.
func (m *FloorMeter) Measure(ctx context.Context, stepped func()) (Floor, error) {
	raw, chain, err := m.measure(func(op floorOp) (FloorStep, error) { return measureOp(ctx, op) }, stepped)
	if err != nil {
		return Floor{}, err
	}
	return m.keepLower(0, raw, chain.CPU), nil
}

// MeasurePaced measures every step once more, each done rate times a
// second as a paced run does it, and returns that floor, made of each
// step's lowest cost so far at that rate.
//
// The floor in busy loops is what the primitives cost back to back, with
// every thread they use awake and every cache warm. At a low rate each one
// starts from sleep: the thread that waits for an fsync or a broker's
// answer sleeps and is woken, the code and keys are out of the caches.
// That is what the primitives cost at that rate, and what a referral at
// that rate cannot avoid; the ticker that paces them is not counted (an
// idle ticker's cost per tick, measured before and after, is taken off).
func (m *FloorMeter) MeasurePaced(ctx context.Context, rate int, stepped func()) (Floor, error) {
	if rate <= 0 {
		return Floor{}, fmt.Errorf("floor: a paced floor needs a rate above zero")
	}
	ops := min(max(rate, pacedOpsMin), pacedOpsMax)
	idle0, err := idleTicks(ctx, rate, ops)
	if err != nil {
		return Floor{}, err
	}
	raw, chain, err := m.measure(func(op floorOp) (FloorStep, error) { return measurePaced(ctx, op, rate, ops) }, stepped)
	if err != nil {
		return Floor{}, err
	}
	idle1, err := idleTicks(ctx, rate, ops)
	if err != nil {
		return Floor{}, err
	}
	// The dearer idle tick is taken off: the floor errs low.
	idle := max(idle0.CPU, idle1.CPU)
	idleSwitches := max(idle0.Switches, idle1.Switches)
	for i := range raw {
		raw[i].CPU = max(raw[i].CPU-idle, 0)
		raw[i].Switches = max(raw[i].Switches-idleSwitches, 0)
		raw[i].Wall = 0 // a paced step's wall time is its tick
	}
	return m.keepLower(rate, raw, max(chain.CPU-idle, 0)), nil
}

// measure runs every step with one, then the chain of them all, calling
// stepped after each, and returns each step's cost and the chain's.
func (m *FloorMeter) measure(one func(floorOp) (FloorStep, error), stepped func()) ([]FloorStep, FloorStep, error) {
	raw := make([]FloorStep, len(m.ops))
	for i, op := range m.ops {
		// The garbage of what ran before is not this step's.
		runtime.GC()
		st, err := one(op)
		if err != nil {
			return nil, FloorStep{}, fmt.Errorf("floor: %s: %w", floorSteps[i].name, err)
		}
		raw[i] = st
		stepped()
	}
	runtime.GC()
	chain, err := one(m.chain)
	if err != nil {
		return nil, FloorStep{}, fmt.Errorf("floor: the steps one after another: %w", err)
	}
	stepped()
	return raw, chain, nil
}

// keepLower keeps each step's lower cost at rate, and the chain's (load
// from elsewhere on the machine only ever makes an operation dearer), and
// returns the floor made of them, with the CPU of each measurement at rate
// so far.
func (m *FloorMeter) keepLower(rate int, raw []FloorStep, chain time.Duration) Floor {
	low := m.low[rate]
	if low == nil {
		low = make([]FloorStep, len(floorSteps))
		for i, s := range floorSteps {
			low[i] = FloorStep{Name: s.name, Count: s.count}
		}
		m.low[rate] = low
	}
	var cpu time.Duration
	for i, st := range raw {
		l := &low[i]
		cpu += st.CPU * time.Duration(l.Count)
		if l.Ops == 0 || st.CPU < l.CPU {
			l.CPU, l.Switches = st.CPU, st.Switches
		}
		if l.Ops == 0 || st.Wall < l.Wall {
			l.Wall = st.Wall
		}
		l.Ops += st.Ops
	}
	m.measured[rate] = append(m.measured[rate], cpu)
	if l, ok := m.lowChain[rate]; !ok || chain < l {
		m.lowChain[rate] = chain
	}
	f := sumFloor(low, rate)
	f.Measured = slices.Clone(m.measured[rate])
	f.Chained = m.lowChain[rate]
	return f
}

// Switches returns the context switches of the floor's steps, each times
// its count.
func (f Floor) Switches() float64 {
	var n float64
	for _, st := range f.Steps {
		n += st.Switches * float64(st.Count)
	}
	return n
}

func sumFloor(steps []FloorStep, rate int) Floor {
	f := Floor{Rate: rate, Steps: slices.Clone(steps)}
	for _, st := range f.Steps {
		f.CPU += st.CPU * time.Duration(st.Count)
		f.Wall += st.Wall * time.Duration(st.Count)
	}
	return f
}

// A paced step is done its rate times, one second's worth, but at least
// pacedOpsMin and at most pacedOpsMax times.
const (
	pacedOpsMin = 20
	pacedOpsMax = 100
)

// measurePaced does op once at each of n ticks of a ticker at rate and
// returns the CPU time per tick, the tick's own cost included.
func measurePaced(ctx context.Context, op floorOp, rate, n int) (FloorStep, error) {
	if err := op(1); err != nil {
		return FloorStep{}, err
	}
	t := time.NewTicker(time.Second / time.Duration(rate))
	defer t.Stop()
	c0, s0, t0 := cpuTime(), ctxSwitches(), time.Now()
	for range n {
		select {
		case <-t.C:
		case <-ctx.Done():
			return FloorStep{}, ctx.Err()
		}
		if err := op(1); err != nil {
			return FloorStep{}, err
		}
	}
	return FloorStep{Ops: n, CPU: (cpuTime() - c0) / time.Duration(n), Wall: time.Since(t0) / time.Duration(n),
		Switches: float64(ctxSwitches()-s0) / float64(n)}, nil
}

// idleTicks returns the CPU time and context switches of one tick of a
// ticker at rate that wakes n times with nothing to do.
func idleTicks(ctx context.Context, rate, n int) (FloorStep, error) {
	return measurePaced(ctx, func(int) error { return nil }, rate, n)
}

// measureOp warms op up, then runs it in growing batches, and returns the
// CPU and wall time of one operation.
func measureOp(ctx context.Context, op floorOp) (FloorStep, error) {
	if err := op(1); err != nil {
		return FloorStep{}, err
	}
	var st FloorStep
	c0, t0 := cpuTime(), time.Now()
	for batch := 1; ; batch = min(batch*2, 64) {
		if el := time.Since(t0); el >= floorMax || el >= floorBudget && st.Ops >= floorOps {
			break
		}
		if err := ctx.Err(); err != nil {
			return FloorStep{}, err
		}
		if err := op(batch); err != nil {
			return FloorStep{}, err
		}
		st.Ops += batch
	}
	st.CPU = (cpuTime() - c0) / time.Duration(st.Ops)
	st.Wall = time.Since(t0) / time.Duration(st.Ops)
	return st, nil
}

// floorKit is what the steps work on: a directory with a sender (iom) and
// a recipient (shelter), their keys, a sealed referral, a signed receipt,
// a bare JetStream server and a gateway store.
type floorKit struct {
	ctx                      context.Context
	dir                      *crypto.Directory
	iomSigner, shelterSigner *crypto.Signer
	iomAgency, shelterAgency *crypto.Agency
	iomOpener, shelterOpener *crypto.Opener
	atRest                   *crypto.AtRest
	referral                 []byte // the referral envelope
	receipt                  []byte // a signed delivered receipt
	thread                   crypto.ThreadKey
	sealedReceipt            []byte // receipt sealed by receiptSeal
	tmp                      string
	bare                     *broker.Bare
	db                       *store.DB
}

func newFloorKit(ctx context.Context) (k *floorKit, err error) {
	k = &floorKit{ctx: ctx}
	defer func() {
		if err != nil {
			k.close()
		}
	}()
	d := crypto.NewDirectory("bench", nil)
	ids := map[string]*crypto.Identity{}
	signers := map[string]*crypto.Signer{}
	for _, a := range []string{"iom", "shelter"} {
		id, err := crypto.GenerateIdentity()
		if err != nil {
			return nil, err
		}
		_, key, _ := ed25519.GenerateKey(nil)
		signer, err := crypto.NewSigner(key)
		if err != nil {
			return nil, err
		}
		nk, err := broker.NewNATSKey()
		if err != nil {
			return nil, err
		}
		ids[a], signers[a] = id, signer
		if err := d.Add(crypto.Agency{ID: a, Kind: a, Name: a, Status: crypto.StatusActive, Keys: []crypto.PublicKey{
			crypto.NewPublicKey(crypto.UseEncrypt, id.Recipient()),
			crypto.NewPublicKey(crypto.UseSign, base64.StdEncoding.EncodeToString(signer.PublicKey())),
			crypto.NewPublicKey(crypto.UseNATS, nk.Public),
		}}); err != nil {
			return nil, err
		}
	}
	authPub, authKey, _ := ed25519.GenerateKey(nil)
	signed, err := crypto.SignDirectory(d, authKey)
	if err != nil {
		return nil, err
	}
	if k.dir, err = crypto.ParseDirectory(signed, authPub); err != nil {
		return nil, err
	}
	k.iomSigner, k.shelterSigner = signers["iom"], signers["shelter"]
	k.iomAgency, _ = k.dir.Agency("iom")
	k.shelterAgency, _ = k.dir.Agency("shelter")
	if k.iomOpener, err = crypto.NewOpener("iom", k.dir, ids["iom"]); err != nil {
		return nil, err
	}
	if k.shelterOpener, err = crypto.NewOpener("shelter", k.dir, ids["shelter"]); err != nil {
		return nil, err
	}
	if k.atRest, err = crypto.NewAtRest(crypto.NewAtRestKey()); err != nil {
		return nil, err
	}
	k.thread = crypto.NewThreadKey()
	k.iomOpener.SetThreads(func(id string) (crypto.Thread, bool) {
		return crypto.Thread{Key: k.thread, Peer: "shelter"}, id == k.thread.ID()
	})
	if k.referral, err = crypto.Seal(k.header(crypto.KindReferral, "iom"), benchBody, k.iomSigner, k.shelterAgency); err != nil {
		return nil, err
	}
	h := crypto.EnvelopeHash(k.referral)
	if k.receipt, err = crypto.SignReceipt(crypto.Receipt{EnvelopeID: crypto.NewID(), EnvelopeHash: h, From: "shelter",
		To: "iom", Event: crypto.EventDelivered, At: time.Now()}, k.shelterSigner); err != nil {
		return nil, err
	}
	if k.sealedReceipt, err = receiptSeal.seal(k); err != nil {
		return nil, err
	}
	if k.tmp, err = os.MkdirTemp("", "rujukan-bench-floor-"); err != nil {
		return nil, err
	}
	_, auditKey, _ := ed25519.GenerateKey(nil)
	auditSigner, err := crypto.NewAuditNoteSigner("iom", auditKey)
	if err != nil {
		return nil, err
	}
	if k.db, err = store.Open(filepath.Join(k.tmp, "gateway.db"), auditSigner); err != nil {
		return nil, err
	}
	if k.bare, err = broker.StartBare(ctx, 1); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *floorKit) close() {
	if k.bare != nil {
		k.bare.Close()
	}
	if k.db != nil {
		k.db.Close()
	}
	if k.tmp != "" {
		os.RemoveAll(k.tmp)
	}
}

// header is a fresh envelope header from agency from.
func (k *floorKit) header(kind, from string) crypto.Header {
	now := time.Now()
	return crypto.Header{ID: crypto.NewID(), Kind: kind, From: from, Created: now, Expires: now.Add(72 * time.Hour)}
}

// repeat makes an operation of a function that does one.
func (k *floorKit) repeat(f func() error) floorOp {
	return func(n int) error {
		for range n {
			if err := f(); err != nil {
				return err
			}
		}
		return nil
	}
}

func sealReferral(k *floorKit) (floorOp, error) {
	return k.repeat(func() error {
		_, err := crypto.Seal(k.header(crypto.KindReferral, "iom"), benchBody, k.iomSigner, k.shelterAgency)
		return err
	}), nil
}

func openReferral(k *floorKit) (floorOp, error) {
	return k.repeat(func() error {
		_, _, err := k.shelterOpener.Open(k.referral, time.Now())
		return err
	}), nil
}

func atRestCopy(k *floorKit) (floorOp, error) {
	id := crypto.NewID()
	return k.repeat(func() error {
		k.atRest.Seal(id, benchBody)
		return nil
	}), nil
}

func sealThreadKey(k *floorKit) (floorOp, error) {
	id := "thread/" + k.thread.ID()
	return k.repeat(func() error {
		k.atRest.Seal(id, k.thread[:])
		return nil
	}), nil
}

func openThreadKey(k *floorKit) (floorOp, error) {
	id := "thread/" + k.thread.ID()
	sealed := k.atRest.Seal(id, k.thread[:])
	return k.repeat(func() error {
		_, err := k.atRest.Open(id, sealed)
		return err
	}), nil
}

func signReceipt(k *floorKit) (floorOp, error) {
	h := crypto.EnvelopeHash(k.referral)
	r := crypto.Receipt{EnvelopeID: crypto.NewID(), EnvelopeHash: h, From: "shelter", To: "iom",
		Event: crypto.EventDelivered, At: time.Now()}
	return k.repeat(func() error {
		_, err := crypto.SignReceipt(r, k.shelterSigner)
		return err
	}), nil
}

func sealReceipt(k *floorKit) (floorOp, error) {
	return k.repeat(func() error {
		_, err := receiptSeal.seal(k)
		return err
	}), nil
}

func openReceipt(k *floorKit) (floorOp, error) {
	return k.repeat(func() error { return receiptSeal.open(k, k.sealedReceipt) }), nil
}

// jetStreamRoundTrip makes a step of one message of msg's size through the
// bare server, one at a time.
func jetStreamRoundTrip(msg func(*floorKit) []byte) func(*floorKit) (floorOp, error) {
	return func(k *floorKit) (floorOp, error) {
		size := len(msg(k))
		return func(n int) error {
			_, err := k.bare.RoundTrips(k.ctx, n, size)
			return err
		}, nil
	}
}

// bboltCommit is one fsynced commit of a gateway store (store.DB.Update,
// bbolt underneath) that writes one envelope of the referral's size.
func bboltCommit(k *floorKit) (floorOp, error) {
	return k.repeat(func() error {
		return k.db.Update(func(tx *store.Tx) error { return tx.PutEnvelope(crypto.NewID(), k.referral) })
	}), nil
}

// Times returns how many times the CPU time per item is the floor's, or 0
// when either is unknown.
func (f Floor) Times(cpu time.Duration) float64 {
	if f.CPU <= 0 || cpu <= 0 {
		return 0
	}
	return float64(cpu) / float64(f.CPU)
}
