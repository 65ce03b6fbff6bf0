// Package broker runs the Rujukan broker: an embedded NATS JetStream server
// provisioned from the signed network directory.
//
// The broker carries sealed envelopes between agencies. It sees routing
// metadata (sender, recipient, size, time) and ciphertext, never
// plaintext. For every active agency in the directory it provisions one
// nkey user, one inbox stream INBOX_<id> capturing rujukan.msg.<id>.* and,
// on that inbox, one durable pull consumer per agency of the directory
// (client.ConsumerFor: "from_<sender>", filtered on
// rujukan.msg.<id>.<sender>), so that the gateway pulls each sender's
// envelopes in turn and one sender's backlog never sits in front of
// another's. Beside the inbox it provisions a file queue FILES_<id>
// capturing rujukan.file.<id>.* (attachment chunks, sealed files cut into
// pieces of crypto.FileChunkSize) with per-sender consumers of its own,
// limits of its own (crypto.Limits.FilesMaxBytes, FilesSenderMaxBytes) and
// work-queue retention, so a large transfer never holds up an envelope.
// Gateways create nothing.
//
// # Guarantees
//
//   - Every write is fsynced before it is acknowledged (JetStream
//     SyncAlways), so an acknowledged message survives a crash of the
//     process or the machine.
//   - An agency's user may publish only as itself (rujukan.msg.*.<self>,
//     rujukan.file.*.<self>), pull from, read and ack only the consumers of
//     its own inbox and file queue, and subscribe only to its own reply
//     prefix _INBOX_<self>. It cannot read, forge, purge or otherwise
//     administer any stream or consumer.
//   - Each agency's user is in an account of its own; the inboxes are in a
//     separate account that the agency reaches only through service
//     imports of its own subjects. Replies across an import are rewritten,
//     so a crafted reply subject cannot make JetStream answer into another
//     agency's inbox or consumer.
//   - Cluster nodes authenticate each other with a shared route secret; a
//     certificate from the CA alone does not make a server a node. With
//     TLS, routes are mutual TLS verified against Config.ClusterCA.
//   - The system account has at most one user, the operator's monitoring
//     user (Config.SystemUser), which may only send read-only $SYS
//     monitoring requests: no reload, kick, profile or JetStream
//     administration.
//   - Only a directory signed by the pinned authority and newer than the
//     one running (and than the last one this data directory accepted) is
//     applied. A refused directory leaves the running configuration as it
//     was.
//   - A revoked agency has no user; a reload closes its open connections.
//   - No agency can fill the broker or another agency's inbox: the limits
//     of the directory (crypto.Limits, network defaults and per-agency
//     values) are NATS's own limits, set on every inbox stream and agency
//     account at start and on every reload. Each inbox holds at most its
//     byte and message limits; each sender at most its share of each inbox
//     (one subject per sender, MaxMsgsPerSubject with DiscardNewPerSubject);
//     each agency at most its connections and, per connection,
//     subscriptions. A full inbox refuses new messages (a JetStream error
//     the client reports as client.ErrLimit) and keeps what it holds.
//   - The broker's disk and memory are bounded: JetStream's max store
//     (Config.MaxStore, by default the sum of the inbox and file queue
//     byte limits) and
//     max memory, and bounded ingest buffers per stream and outbound
//     buffers per client. A flood of the largest messages from one agency
//     leaves the broker's memory flat (TestFloodBounded).
//   - The operator sees who fills whom: Usage, the metrics listener
//     (Config.Metrics: each inbox's and each sender's backlog against the
//     limits, each agency's connections) and a warning when a sender holds
//     its whole share of an inbox or an inbox is nearly full.
//
// # Caveats
//
// The broker keeps the inbox of a revoked agency until its messages age
// out (MaxAge), so a reinstated agency still gets them. A revoked agency
// keeps its consumers on the other inboxes, so that what it left waiting
// is delivered (and refused by the recipients' gateways) rather than
// stranded; a consumer is never deleted when its agency leaves the
// directory.
//
// An inbox and a file queue each have one consumer per agency of the
// directory, so a network of N agencies has 2*N*N consumers, and a gateway
// keeps two pulls outstanding per sender (one subscription each, within
// its max_subscriptions). This suits networks of tens to a few hundred
// agencies.
//
// File queues appeared after inboxes: a broker of an earlier version gets
// them at its first start or reload with this one, beside its inboxes,
// which are left as they were (TestFilesUpgrade).
//
// Inboxes provisioned by earlier versions had a single catch-all consumer
// named "gateway" (client.LegacyConsumerName). Provisioning deletes it
// before it creates the per-sender ones (a work-queue stream takes only
// consumers whose filters do not overlap); what it had delivered and not
// acknowledged stays in the inbox and is delivered again by the per-sender
// consumers (TestUpgradeFromSingleConsumerLosesNothing). A gateway of an
// earlier version cannot pull from an upgraded broker.
//
// NATS counts messages per subject, not bytes: a sender's byte share is
// enforced as sender_max_bytes divided by the largest message size (256
// messages with the defaults), whatever the size of its messages. A
// sender whose recipient does not read its inbox therefore keeps its
// envelopes queued in its own outbox after 256 of them.
//
// NATS has no publish rate limit per account or user: a rate per sender is
// not enforced at the broker. What a sender can leave in an inbox is
// bounded by its share; how fast the recipient reads is up to its gateway.
//
// A per-sender share lowered by a reload never deletes messages already
// stored (NATS would drop the oldest over a lowered per-subject limit): the
// inbox stops taking messages for a moment (senders see the broker as
// unavailable and retry), and the share goes down only as far as the
// largest sender's backlog, the rest of the way at a later reload or
// restart, once that backlog has been read.
package broker

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/rujukan/rujukan/broker/client"
	"github.com/rujukan/rujukan/crypto"
)

// Errors.
var (
	// ErrNotStarted is returned by calls that need a running broker.
	ErrNotStarted = errors.New("broker not started")
	// ErrStart is wrapped by errors from Start.
	ErrStart = errors.New("broker failed to start")
)

const acceptedDirectoryFile = "directory.json"

// Server is one embedded broker node.
type Server struct {
	cfg        Config
	log        *slog.Logger
	name       string
	tls        *tls.Config
	clusterTLS *tls.Config
	adminPub   string
	admin      nkeys.KeyPair

	mu     sync.Mutex // serialises Start, Reload and Close
	dir    *crypto.Directory
	signed []byte
	ns     *server.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	store  int64 // the JetStream max store in force

	metricsLn  net.Listener
	metricsSrv *http.Server
	stopWatch  context.CancelFunc
	watchDone  chan struct{}
}

// New checks cfg and the directory and returns a broker ready to Start.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d, err := crypto.ParseDirectory(cfg.Directory, cfg.Authority)
	if err == nil {
		err = CheckDirectory(d)
	}
	if err != nil {
		return nil, fmt.Errorf("network directory refused: %w", err)
	}
	if err := checkAccepted(cfg.DataDir, cfg.Authority, d, cfg.Directory); err != nil {
		return nil, err
	}
	if _, err := (&Server{cfg: cfg}).maxStore(d, 0); err != nil {
		return nil, err
	}
	admin, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("failed to create the provisioning key: %w", err)
	}
	adminPub, err := admin.PublicKey()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, dir: d, signed: cfg.Directory, admin: admin, adminPub: adminPub}
	if cfg.TLSCert != "" {
		s.tls, err = server.GenTLSConfig(&server.TLSConfigOpts{
			CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, CaFile: cfg.TLSCA, Verify: cfg.TLSCA != "",
		})
		if err != nil {
			return nil, fmt.Errorf("%w: TLS: %v", ErrConfig, err)
		}
		if cfg.ClusterName != "" {
			if s.clusterTLS, err = routeTLS(cfg); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// routeTLS is the TLS of the cluster routes, mutual: a node verifies the
// certificate of the node it dials (against its name) and of the node that
// dials it (against the CA only). Every node presents its server
// certificate both ways, so the dialled side accepts a server certificate
// from the cluster CA where TLS would want one marked for clients.
func routeTLS(cfg Config) (*tls.Config, error) {
	t, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey, CaFile: cmp.Or(cfg.ClusterCA, cfg.TLSCA),
	})
	if err != nil {
		return nil, fmt.Errorf("%w: cluster TLS: %v", ErrConfig, err)
	}
	pool := t.ClientCAs // GenTLSConfig puts the CA there
	t.RootCAs = pool
	t.ClientAuth = tls.RequireAnyClientCert
	t.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("cluster route: the peer presented no certificate")
		}
		certs := make([]*x509.Certificate, len(raw))
		for i, r := range raw {
			if certs[i], err = x509.ParseCertificate(r); err != nil {
				return fmt.Errorf("cluster route: %w", err)
			}
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
		if err != nil {
			return fmt.Errorf("cluster route: the peer's certificate: %w", err)
		}
		return nil
	}
	return t, nil
}

// checkAccepted refuses a directory older than the one this data directory
// last accepted, so that swapping in an old signed file cannot bring back a
// revoked agency.
func checkAccepted(dataDir string, authority []byte, d *crypto.Directory, signed []byte) error {
	path := filepath.Join(dataDir, acceptedDirectoryFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to read the last accepted directory: %w", err)
	}
	prev, err := crypto.ParseDirectory(b, authority)
	if err != nil {
		return fmt.Errorf("the last accepted directory %s does not verify with this authority key (%v); if the authority key really changed, remove that file", path, err)
	}
	if d.Version < prev.Version || (d.Version == prev.Version && !bytes.Equal(b, signed)) {
		return fmt.Errorf("network directory refused: %w: version %d is older than or conflicts with version %d accepted before (%s)",
			crypto.ErrDirectoryStale, d.Version, prev.Version, path)
	}
	return nil
}

func (s *Server) saveAccepted(signed []byte) error {
	path := filepath.Join(s.cfg.DataDir, acceptedDirectoryFile)
	tmp, err := os.CreateTemp(s.cfg.DataDir, ".directory-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(signed); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(s.cfg.DataDir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// serverName returns the configured name or the one kept in the data
// directory, creating it on first start.
func serverName(cfg *Config) (string, error) {
	if cfg.ServerName != "" {
		return cfg.ServerName, nil
	}
	path := filepath.Join(cfg.DataDir, "server-name")
	if b, err := os.ReadFile(path); err == nil {
		if n := strings.TrimSpace(string(b)); n != "" {
			return n, nil
		}
	}
	var r [6]byte
	rand.Read(r[:])
	n := "rujukan-" + hex.EncodeToString(r[:])
	if err := os.WriteFile(path, []byte(n+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("failed to save the server name: %w", err)
	}
	return n, nil
}

// clusterUser is the route user name of the cluster nodes.
const clusterUser = "rujukan-node"

func (s *Server) options(d *crypto.Directory, bare map[string]bool, maxStore int64) (*server.Options, error) {
	l, err := parseHostPort("listen address", s.cfg.Listen)
	if err != nil {
		return nil, err
	}
	o := &server.Options{}
	if err := o.ProcessConfigString(s.accountsConfig(d, bare)); err != nil {
		return nil, fmt.Errorf("%w: accounts: %v", ErrConfig, err)
	}
	o.ServerName = s.name
	o.Host, o.Port = l.host, l.port
	o.NoSigs = true
	o.MaxPayload = client.MaxMessageSize
	o.JetStream = true
	o.StoreDir = s.cfg.DataDir
	o.SyncAlways = true
	s.applyLimits(o, maxStore)
	o.Debug = s.cfg.Debug
	o.HTTPPort = 0
	if s.tls != nil {
		o.TLS = true
		o.TLSConfig = s.tls
		o.TLSVerify = s.cfg.TLSCA != ""
		o.TLSTimeout = 5
	}
	if s.cfg.Monitor != "" {
		m, _ := parseHostPort("", s.cfg.Monitor)
		o.HTTPHost, o.HTTPPort = m.host, m.port
	}
	if s.cfg.ClusterName != "" {
		cl, err := parseHostPort("cluster listen address", s.cfg.ClusterListen)
		if err != nil {
			return nil, err
		}
		o.Cluster.Name = s.cfg.ClusterName
		o.Cluster.Host = cl.host
		o.Cluster.Port = cl.port
		// Routes authenticate with the cluster secret: a certificate from
		// the CA alone (which agencies' client certificates may share)
		// does not make a server a node.
		o.Cluster.Username, o.Cluster.Password = clusterUser, s.cfg.ClusterSecret
		if s.clusterTLS != nil {
			o.Cluster.TLSConfig = s.clusterTLS
			o.Cluster.TLSTimeout = 5
		}
		for _, r := range s.cfg.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("%w: route %q", ErrConfig, r)
			}
			u.User = url.UserPassword(clusterUser, s.cfg.ClusterSecret)
			o.Routes = append(o.Routes, u)
		}
	}
	return o, nil
}

// Start runs the NATS server, waits until it accepts connections and
// provisions every active agency. It returns once gateways can connect,
// publish and pull.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns != nil {
		return fmt.Errorf("%w: already started", ErrStart)
	}
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("%w: %v", ErrStart, err)
	}
	name, err := serverName(&s.cfg)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStart, err)
	}
	s.name = name
	if s.cfg.InsecurePlaintext && s.tls == nil {
		s.log.Warn("broker runs WITHOUT TLS (--insecure-plaintext): credentials and envelopes cross the network in the clear", "listen", s.cfg.Listen)
	}
	store, err := s.maxStore(s.dir, 0)
	if err != nil {
		return err
	}
	opts, err := s.options(s.dir, nil, store)
	if err != nil {
		return err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStart, err)
	}
	ns.SetLoggerV2(slogLogger{s.log}, s.cfg.Debug, false, false)
	start := time.Now()
	ns.Start()
	timeout := s.cfg.StartTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if !ns.ReadyForConnections(timeout) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return fmt.Errorf("%w: not ready for connections after %s", ErrStart, timeout)
	}
	s.ns, s.store = ns, store
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Nkey(s.adminPub, s.admin.Sign),
		nats.Name("rujukan-broker-provisioning"), nats.MaxReconnects(-1))
	if err != nil {
		s.shutdownLocked()
		return fmt.Errorf("%w: provisioning connection: %v", ErrStart, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		s.shutdownLocked()
		return fmt.Errorf("%w: %v", ErrStart, err)
	}
	s.nc, s.js = nc, js
	pctx, cancel := context.WithTimeout(ctx, timeout-time.Since(start))
	defer cancel()
	if ns.JetStreamIsClustered() {
		// Requests sent before the cluster has a metadata leader are lost.
		for !ns.JetStreamIsCurrent() {
			select {
			case <-time.After(100 * time.Millisecond):
			case <-pctx.Done():
				s.shutdownLocked()
				return fmt.Errorf("%w: the JetStream cluster has no metadata leader (are the other nodes up?)", ErrStart)
			}
		}
	}
	ids := activeIDs(s.dir)
	for {
		err = s.provision(pctx, js, s.dir, ids)
		if err == nil {
			break
		}
		if pctx.Err() != nil {
			s.shutdownLocked()
			return fmt.Errorf("%w: %v", ErrStart, err)
		}
		s.log.Info("waiting for JetStream to provision the inboxes", "err", err)
		select {
		case <-time.After(500 * time.Millisecond):
		case <-pctx.Done():
		}
	}
	if err := s.saveAccepted(s.signed); err != nil {
		s.shutdownLocked()
		return fmt.Errorf("%w: failed to save the accepted directory: %v", ErrStart, err)
	}
	if err := s.startMetrics(); err != nil {
		s.shutdownLocked()
		return fmt.Errorf("%w: %v", ErrStart, err)
	}
	wctx, stop := context.WithCancel(context.Background())
	s.stopWatch, s.watchDone = stop, make(chan struct{})
	go func() { defer close(s.watchDone); s.watchUsage(wctx) }()
	s.log.Info("broker ready", "url", ns.ClientURL(), "server", s.name, "directory_version", s.dir.Version,
		"agencies", len(ids), "replicas", s.cfg.replicas(), "tls", s.tls != nil, "max_store", store,
		"inbox_limits", s.dir.NetworkLimits(), "startup", time.Since(start).Round(time.Millisecond))
	return nil
}

func activeIDs(d *crypto.Directory) []string {
	var ids []string
	for _, a := range d.Agencies {
		if a.Status == crypto.StatusActive {
			ids = append(ids, a.ID)
		}
	}
	return ids
}

// ClientURL returns the URL gateways connect to.
func (s *Server) ClientURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns == nil {
		return ""
	}
	return s.ns.ClientURL()
}

// Directory returns the running directory. Callers must not modify it.
func (s *Server) Directory() *crypto.Directory {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dir
}

// Reload applies a new signed directory without a restart: it provisions
// the inboxes of agencies that became active, then replaces the users, which
// closes the connections of revoked agencies and of rotated nats keys. A
// directory that does not verify, or is not newer than the running one, is
// refused and the running configuration is kept; the reason is logged and
// returned.
func (s *Server) Reload(signed []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns == nil {
		return ErrNotStarted
	}
	err := s.reloadLocked(signed)
	if err != nil {
		s.log.Error("directory reload refused; running configuration kept", "version", s.dir.Version, "err", err)
	}
	return err
}

func (s *Server) reloadLocked(signed []byte) error {
	next, err := crypto.ParseDirectory(signed, s.cfg.Authority)
	if err == nil {
		err = CheckDirectory(next)
	}
	if err != nil {
		return fmt.Errorf("network directory refused: %w", err)
	}
	if err := crypto.CheckReplace(s.dir, next); err != nil {
		return fmt.Errorf("network directory refused: %w", err)
	}
	store, err := s.maxStore(next, s.store)
	if err != nil {
		return fmt.Errorf("network directory refused: %w", err)
	}
	was := map[string]bool{}
	for _, id := range activeIDs(s.dir) {
		was[id] = true
	}
	var added []string
	for _, id := range activeIDs(next) {
		if !was[id] {
			added = append(added, id)
		}
		delete(was, id)
	}
	// Room for the new or larger inboxes first: JetStream reserves each
	// inbox's byte limit against the max store.
	if store > s.store {
		opts, err := s.options(s.dir, nil, store)
		if err != nil {
			return err
		}
		if err := s.ns.ReloadOptions(opts); err != nil {
			return fmt.Errorf("failed to raise the max store to %d bytes: %w", store, err)
		}
		s.store = store
	}
	// Every inbox, not only the new ones: the limits may have changed.
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StartTimeout)
	defer cancel()
	if err := s.provision(ctx, s.js, next, activeIDs(next)); err != nil {
		return err
	}
	// nats-server wires the service imports of an account only when the
	// account already exists as a reload applies them. New agencies'
	// accounts are therefore first added empty, then filled in.
	if len(added) > 0 {
		bare := make(map[string]bool, len(added))
		for _, id := range added {
			bare[id] = true
		}
		opts, err := s.options(next, bare, store)
		if err != nil {
			return err
		}
		if err := s.ns.ReloadOptions(opts); err != nil {
			return fmt.Errorf("failed to add the new accounts: %w", err)
		}
	}
	opts, err := s.options(next, nil, store)
	if err != nil {
		return err
	}
	if err := s.ns.ReloadOptions(opts); err != nil {
		return fmt.Errorf("failed to apply the new users: %w", err)
	}
	if err := s.saveAccepted(signed); err != nil {
		// The new users are live; keep going but say so.
		s.log.Error("failed to save the accepted directory", "err", err)
	}
	removed := make([]string, 0, len(was))
	for id := range was {
		removed = append(removed, id)
	}
	s.log.Info("directory reloaded", "from_version", s.dir.Version, "version", next.Version, "added", added, "revoked", removed)
	s.dir, s.signed = next, signed
	return nil
}

// Close shuts the server down and waits until it has stopped.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutdownLocked()
	return nil
}

func (s *Server) shutdownLocked() {
	if s.stopWatch != nil {
		s.stopWatch()
		// watchUsage takes s.mu in Usage: wait without holding it.
		s.mu.Unlock()
		<-s.watchDone
		s.mu.Lock()
		s.stopWatch = nil
	}
	if s.metricsSrv != nil {
		s.metricsSrv.Close()
		s.metricsSrv, s.metricsLn = nil, nil
	}
	if s.nc != nil {
		s.nc.Close()
		s.nc = nil
	}
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		s.ns = nil
		s.log.Info("broker stopped")
	}
}
