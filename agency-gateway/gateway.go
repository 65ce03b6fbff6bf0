// Package gateway is one agency's gateway to the Rujukan network. It seals
// what its staff send, opens what arrives, enforces the network rules, the
// scopes and the state machines (through the policy package), keeps every
// envelope, receipt and state in its bbolt store, and writes an audit event
// for every decision, in the same transaction as the change it describes.
//
// The data path reads top to bottom in two places: [Gateway.Send]
// (authorize, validate, seal, store, publish) and [Gateway.receive] (verify,
// open, check, store, ack, receipt). Everything that leaves the gateway
// goes through the outbox queue, so a 202 survives crashes: the queue is
// drained by a retry loop until the broker has acknowledged every envelope.
//
// # Guarantees
//
//   - Nothing accepted with 202 is lost: the envelope and its queue entry
//     are committed (fsync) before the answer, and published until acked.
//   - Exactly one delivery outcome per referral at the sender: delivered or
//     failed, set once.
//   - An incoming envelope is stored once: dedup by envelope id in the same
//     transaction that stores it, and acked only after that commit.
//   - Data at rest stays encrypted: the inbox keeps ciphertext as received
//     and opens it on read; the sender keeps a copy sealed to itself.
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

	"filippo.io/age"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/broker/client"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// Gateway is one running agency gateway.
type Gateway struct {
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
	self      string
	signer    *crypto.Signer
	identity  *age.HybridIdentity
	db        *store.DB
	bus       *client.Client
	verifier  *policy.Verifier
	metrics   *Metrics
	onOutcome func(id, outcome string)

	opener   *crypto.Opener
	atRest   *crypto.AtRest
	inflight sync.Map // queue seq -> publishing now

	dir      atomic.Pointer[netState]
	reloadMu sync.Mutex
	wake     chan struct{}
	wg       sync.WaitGroup
	stop     context.CancelFunc
	ready    atomic.Bool
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
	// OnOutcome, when set, is called after a sent referral's one delivery
	// outcome (delivered or failed) has been committed. It must not block.
	OnOutcome func(id, outcome string)
}

// New loads keys, the directory, the token issuers and the store. It does
// not connect to the broker: Start does.
func New(cfg Config, opt Options) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, log: opt.Logger, now: opt.Now, self: cfg.Agency, metrics: opt.Metrics,
		onOutcome: opt.OnOutcome, wake: make(chan struct{}, 1)}
	if g.log == nil {
		g.log = slog.Default()
	}
	g.log = g.log.With("agency", cfg.Agency)
	if g.now == nil {
		g.now = time.Now
	}
	if g.metrics == nil {
		g.metrics = NewMetrics(nil)
	}
	signKey, err := crypto.LoadEd25519PrivateKey(filepath.Join(cfg.Keys, crypto.SigningKeyFile))
	if err != nil {
		return nil, err
	}
	if g.signer, err = crypto.NewSigner(signKey); err != nil {
		return nil, err
	}
	if g.identity, err = crypto.LoadIdentity(filepath.Join(cfg.Keys, crypto.AgeKeyFile)); err != nil {
		return nil, err
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
	if g.opener, err = crypto.NewOpener(g.self, dir, g.identity); err != nil {
		return nil, err
	}
	g.opener.ClockSkew = cfg.ClockSkew
	if g.verifier, err = newVerifier(cfg); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create data directory: %w", err)
	}
	if g.atRest, err = crypto.LoadAtRest(filepath.Join(cfg.Data, "at-rest.key")); err != nil {
		return nil, err
	}
	if g.db, err = store.Open(filepath.Join(cfg.Data, "gateway.db"), signKey); err != nil {
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
		return nil, fmt.Errorf("agency %q is revoked in the directory", g.self)
	}
	if k, ok := self.ActiveKey(crypto.UseSign); !ok || k.ID != g.signer.KeyID() {
		return nil, fmt.Errorf("the signing key in %s is not agency %s's active signing key in the directory", g.cfg.Keys, g.self)
	}
	if k, ok := self.ActiveKey(crypto.UseEncrypt); !ok || k.Public != g.identity.Recipient().String() {
		return nil, fmt.Errorf("the age identity in %s is not agency %s's active encryption key in the directory", g.cfg.Keys, g.self)
	}
	rules, err := policy.ParseRules(dir.Rules)
	if err != nil {
		return nil, fmt.Errorf("directory rules: %w", err)
	}
	return &netState{dir: dir, rules: rules, self: self}, nil
}

func newVerifier(cfg Config) (*policy.Verifier, error) {
	vc := policy.VerifierConfig{Agency: cfg.Agency, Algorithms: cfg.TokenAlgorithms}
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

// Verifier returns the token verifier.
func (g *Gateway) Verifier() *policy.Verifier { return g.verifier }

// Metrics returns the gateway's metrics.
func (g *Gateway) Metrics() *Metrics { return g.metrics }

// Start connects to the broker (retrying in the background when it is
// down) and starts the publish, receive and deadline loops.
func (g *Gateway) Start(ctx context.Context) error {
	seed, err := crypto.LoadNKeySeed(g.cfg.Broker.NKeySeed)
	if err != nil {
		return err
	}
	opts := []client.Option{client.OnStatus(func(up bool) {
		if up {
			g.log.Info("connected to the broker")
			g.poke()
		} else {
			g.log.Warn("disconnected from the broker")
		}
	})}
	if g.cfg.Broker.CA != "" || g.cfg.Broker.Cert != "" {
		opts = append(opts, client.WithTLS(g.cfg.Broker.CA, g.cfg.Broker.Cert, g.cfg.Broker.Key))
	}
	g.bus, err = client.Connect(ctx, g.cfg.Broker.URL, g.self, seed, opts...)
	if err != nil {
		return err
	}
	ctx, g.stop = context.WithCancel(context.Background())
	g.ready.Store(true)
	g.loop(ctx, g.publishLoop)
	g.loop(ctx, g.receiveLoop)
	g.loop(ctx, g.deadlineLoop)
	return nil
}

func (g *Gateway) loop(ctx context.Context, fn func(context.Context)) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		fn(ctx)
	}()
}

// Ready returns "" when the broker is connected and the database open, and
// otherwise a reason code: not-started, broker-disconnected or
// database-unavailable.
func (g *Gateway) Ready() string {
	switch {
	case !g.ready.Load():
		return "not-started"
	case g.bus == nil || !g.bus.Connected():
		return "broker-disconnected"
	}
	if _, err := g.db.Stats(); err != nil {
		g.log.Error("database check failed", "err", err)
		return "database-unavailable"
	}
	return ""
}

// Close stops the loops, then closes the broker connection and the store.
func (g *Gateway) Close() error {
	g.ready.Store(false)
	if g.stop != nil {
		g.stop()
	}
	g.wg.Wait()
	if g.bus != nil {
		g.bus.Close()
	}
	return g.db.Close()
}

// DB exposes the store to the audit command and tests.
func (g *Gateway) DB() *store.DB { return g.db }

func (g *Gateway) state() *netState { return g.dir.Load() }

// poke wakes the publish loop.
func (g *Gateway) poke() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}
