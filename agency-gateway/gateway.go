// Package gateway is one agency's gateway to the Rujukan network: the core
// that every client (the HTTP API, the web app, the commands) calls. It
// seals what its staff send, opens what arrives, enforces the network
// rules, the scopes and the state machines (through package policy), keeps
// every envelope, receipt and state in its bbolt store, and writes an
// audit event for every decision in the same transaction as the change it
// describes. docs/ARCHITECTURE.md draws the parts and the data path.
//
// The data path reads top to bottom in two functions: [Gateway.Send]
// (authorize, prepare, seal, store, publish) and [Gateway.Receive] (open,
// check, store, settle). What differs between kinds of message (referral,
// status, receipt, statement request, consent decision, statement) lives
// in one file per kind behind the [Kind] interface; every state change of
// a record goes through one function, transition. The broker is reached
// through the small [Bus] interface.
//
// # Guarantees
//
//   - Nothing accepted with 202 is lost: the envelope and its queue entry
//     are committed (fsync) before the answer, and published until acked.
//   - Exactly one delivery outcome per sent record: delivered or failed,
//     set once.
//   - An incoming envelope is stored once: dedup by envelope id in the same
//     transaction that stores it, and acked only after that commit.
//   - An envelope that waits for another is kept here, not at the broker,
//     for a bounded time and a bounded number per sender, then refused with
//     a signed receipt: it never holds the inbox.
//   - Data at rest stays encrypted: the inbox keeps ciphertext as received
//     and opens it on read; what the gateway keeps for itself is sealed
//     with its at-rest key.
package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// Gateway is one running agency gateway.
type Gateway struct {
	cfg        Config
	log        *slog.Logger
	now        func() time.Time
	self       string
	keys       Keys
	db         *store.DB
	bus        Bus
	verifier   *policy.Verifier
	metrics    *Metrics
	onOutcome  func(id, outcome string)
	kinds      map[string]Kind
	waitRetry  time.Duration
	fileResend time.Duration
	witness    witnessState
	refusals   refusalLog    // refused envelopes counted between flushes (refusals.go)
	transfers  transferState // files being sent (transfer.go)
	chunks     chunkState    // files arriving (chunks.go)
	inHand     atomic.Int64  // envelopes fetched and not yet settled

	opener   *crypto.Opener
	inflight sync.Map // queue seq -> publishing now
	joiner   joiner   // joins publishes to one recipient (joiner.go)
	limits   limitState

	dir          atomic.Pointer[netState]
	reloadMu     sync.Mutex
	wake         chan struct{}
	recheck      chan struct{}
	auditMu      sync.Mutex
	auditChecked store.AuditReport // the prefix of the log verified so far
	auditBroken  atomic.Pointer[string]
	watchMu      sync.Mutex
	watchers     map[chan struct{}]struct{}
	wg           sync.WaitGroup
	stop         context.CancelFunc
	ready        atomic.Bool
	revoked      atomic.Uint64 // version of a directory that revokes this agency
}

// netState is the directory in force and what is derived from it.
type netState struct {
	dir   *crypto.Directory
	rules *policy.Rules
	self  *crypto.Agency
}

// Options change how a gateway runs; tests use them.
type Options struct {
	Logger *slog.Logger
	// Now replaces the clock.
	Now func() time.Time
	// Metrics, when set, is shared (the dev command runs four gateways).
	Metrics *Metrics
	// OnOutcome, when set, is called after a sent record's one delivery
	// outcome (delivered or failed) has been committed. It must not block.
	OnOutcome func(id, outcome string)
	// WaitRetry is how often waiting envelopes are tried again (default
	// 10 s); an envelope is refused after 12 tries.
	WaitRetry time.Duration
	// WitnessInterval is how often the gateway sends its audit checkpoint
	// to the other agencies to witness, when its log grew (default 30 s).
	WitnessInterval time.Duration
	// WitnessBurst sends the checkpoint before the interval is over once
	// the log grew by this many events since it was last sent (default
	// 256), so a burst of activity is witnessed within a second or so.
	WitnessBurst int
	// FileResend is how long a file sent whole waits for the recipient's
	// receipt before it is published again (default 2 min, doubling each
	// time): a chunk lost or spoiled in flight is sent again this way.
	FileResend time.Duration
}

// New opens the gateway's store and loads the directory and the token
// issuers named by cfg. Keys and the bus are handed in; New does no
// network I/O. Start runs the loops.
func New(cfg Config, keys Keys, bus Bus, opt Options) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if bus == nil || keys.Signer == nil || keys.Identity == nil || keys.AtRest == nil {
		return nil, fmt.Errorf("%w: a gateway needs a bus, a signer, an age identity and an at-rest key", ErrConfig)
	}
	g := &Gateway{cfg: cfg, log: opt.Logger, now: opt.Now, self: cfg.Agency, keys: keys, bus: bus,
		metrics: opt.Metrics, onOutcome: opt.OnOutcome, kinds: registry(),
		wake: make(chan struct{}, 1), recheck: make(chan struct{}, 1)}
	g.transfers.wake = make(chan struct{}, 1)
	g.fileResend = opt.FileResend
	if g.fileResend <= 0 {
		g.fileResend = 2 * time.Minute
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	g.log = g.log.With("agency", cfg.Agency)
	if g.now == nil {
		g.now = time.Now
	}
	if g.waitRetry = opt.WaitRetry; g.waitRetry <= 0 {
		g.waitRetry = waitRetry
	}
	if g.witness.interval = opt.WitnessInterval; g.witness.interval <= 0 {
		g.witness.interval = witnessInterval
	}
	if g.witness.burst = uint64(max(opt.WitnessBurst, 0)); g.witness.burst == 0 {
		g.witness.burst = witnessBurst
	}
	if g.metrics == nil {
		g.metrics = NewMetrics(nil)
	}
	authority, err := crypto.ParseAuthorityKey(cfg.Authority)
	if err != nil {
		return nil, fmt.Errorf("%w: field authority: %v", ErrConfig, err)
	}
	dir, err := crypto.LoadDirectory(cfg.Directory, authority)
	if err != nil {
		return nil, err
	}
	st, err := g.newState(dir)
	if err != nil {
		return nil, err
	}
	g.dir.Store(st)
	if g.opener, err = crypto.NewOpener(g.self, dir, keys.identities()...); err != nil {
		return nil, err
	}
	g.logKeys(dir)
	g.opener.ClockSkew = cfg.ClockSkew
	if g.verifier, err = newVerifier(cfg, st.self.Kind); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create data directory: %w", err)
	}
	auditSigner, err := crypto.NewAuditNoteSigner(cfg.Agency, keys.SigningKey)
	if err != nil {
		return nil, err
	}
	if g.db, err = store.Open(filepath.Join(cfg.Data, "gateway.db"), auditSigner); err != nil {
		return nil, err
	}
	// Only once the store is open: its lock keeps a second gateway on the
	// same data from removing the files of the first one's uploads.
	g.removeHalfWritten()
	g.opener.SetThreads(g.lookupThread)
	if err := g.checkAuditAtStart(); err != nil {
		g.db.Close()
		return nil, err
	}
	// A directory older than one already accepted would bring revoked keys
	// back: refuse to start on it.
	err = g.db.Update(func(tx *store.Tx) error {
		switch seen := tx.DirectoryVersion(); {
		case dir.Version < seen:
			return fmt.Errorf("%w: %s has version %d, older than version %d that this gateway already accepted",
				crypto.ErrDirectoryStale, cfg.Directory, dir.Version, seen)
		case dir.Version > seen:
			return tx.SetDirectoryVersion(dir.Version)
		}
		return nil
	})
	if err != nil {
		g.db.Close()
		return nil, err
	}
	g.setSenders(dir)
	return g, nil
}

// newState checks that the directory lists this agency with the keys this
// gateway holds, and parses its network rules.
func (g *Gateway) newState(dir *crypto.Directory) (*netState, error) {
	self, ok := dir.Agency(g.self)
	if !ok {
		return nil, fmt.Errorf("agency %q is not in the directory", g.self)
	}
	if self.Status != crypto.StatusActive {
		return nil, revokedError(g.self, dir)
	}
	if k, ok := self.ActiveKey(crypto.UseSign); !ok || k.ID != g.keys.Signer.KeyID() {
		return nil, fmt.Errorf("the signing key in %s is not agency %s's active signing key in the directory", g.cfg.Keys, g.self)
	}
	if k, ok := self.ActiveKey(crypto.UseEncrypt); !ok || k.Public != g.keys.Identity.Recipient() {
		return nil, fmt.Errorf("the age identity in %s is not agency %s's active encryption key in the directory", g.cfg.Keys, g.self)
	}
	rules, err := policy.ParseRules(dir.Rules)
	if err != nil {
		return nil, fmt.Errorf("directory rules: %w", err)
	}
	return &netState{dir: dir, rules: rules, self: self}, nil
}

func newVerifier(cfg Config, kind string) (*policy.Verifier, error) {
	vc := policy.VerifierConfig{Agency: cfg.Agency, Kind: kind, Algorithms: cfg.TokenAlgorithms}
	for i, is := range cfg.Issuers {
		raw, err := os.ReadFile(is.JWKS)
		if err != nil {
			return nil, fmt.Errorf("%w: field issuers[%d].jwks: %v", ErrConfig, i, err)
		}
		ks, err := policy.ParseJWKS(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: field issuers[%d].jwks: %v", ErrConfig, i, err)
		}
		vc.Issuers = append(vc.Issuers, policy.Issuer{Name: is.Issuer, Keys: ks})
	}
	return policy.NewVerifier(vc)
}

// Agency returns this gateway's agency id.
func (g *Gateway) Agency() string { return g.self }

// Kind returns this gateway's agency kind, as the directory in force says.
func (g *Gateway) Kind() string { return g.state().self.Kind }

// Verifier returns the token verifier.
func (g *Gateway) Verifier() *policy.Verifier { return g.verifier }

// Metrics returns the gateway's metrics.
func (g *Gateway) Metrics() *Metrics { return g.metrics }

// Start runs the publish, receive, deadline and waiting loops until Close.
func (g *Gateway) Start() {
	ctx, stop := context.WithCancel(context.Background())
	g.stop = stop
	g.ready.Store(true)
	g.loop(ctx, g.publishLoop)
	g.loop(ctx, g.receiveLoop)
	g.loop(ctx, g.timerLoop)
	g.loop(ctx, g.waitingLoop)
	g.loop(ctx, g.witnessLoop)
	g.loop(ctx, g.transferLoop)
	g.loop(ctx, g.chunkLoop)
	g.loop(ctx, g.attachmentsLoop)
}

func (g *Gateway) loop(ctx context.Context, fn func(context.Context)) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		fn(ctx)
	}()
}

// Ready returns "" when the broker is connected, the database open and the
// audit log verified, and otherwise a reason code: not-started,
// agency-revoked (a directory revoking this agency was reloaded),
// audit-broken (the gateway started on a broken log, audit.accept_break),
// broker-disconnected or database-unavailable.
func (g *Gateway) Ready() string {
	switch {
	case !g.ready.Load():
		return "not-started"
	case g.revoked.Load() != 0:
		return ReasonAgencyRevoked
	case g.AuditBroken() != "":
		return ReasonAuditBroken
	case !g.bus.Connected():
		return "broker-disconnected"
	}
	if _, err := g.db.Stats(); err != nil {
		g.log.Error("database check failed", "err", err)
		return "database-unavailable"
	}
	return ""
}

// Close stops the loops and closes the store. The bus belongs to the
// caller, who closes it after.
func (g *Gateway) Close() error {
	g.ready.Store(false)
	if g.stop != nil {
		g.stop()
	}
	g.wg.Wait()
	return g.db.Close()
}

// DB exposes the store to the audit command and tests.
func (g *Gateway) DB() *store.DB { return g.db }

func (g *Gateway) state() *netState { return g.dir.Load() }

// Poke wakes the publish loop (the broker client calls it on reconnect).
func (g *Gateway) Poke() { g.poke() }

func (g *Gateway) poke() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// pokeWaiting wakes the loop that retries waiting envelopes.
func (g *Gateway) pokeWaiting() {
	select {
	case g.recheck <- struct{}{}:
	default:
	}
}

// Watch returns a channel that receives a signal soon after a record of
// this gateway is created or changes (an envelope stored, a state changed,
// a record opened), for live views; signals are coalesced, never queued.
// Stop with the returned function.
func (g *Gateway) Watch() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	g.watchMu.Lock()
	if g.watchers == nil {
		g.watchers = map[chan struct{}]struct{}{}
	}
	g.watchers[ch] = struct{}{}
	g.watchMu.Unlock()
	return ch, func() {
		g.watchMu.Lock()
		delete(g.watchers, ch)
		g.watchMu.Unlock()
	}
}

// changed signals the watchers.
func (g *Gateway) changed() {
	g.watchMu.Lock()
	defer g.watchMu.Unlock()
	for ch := range g.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
