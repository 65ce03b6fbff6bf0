package broker

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Configuration errors.
var (
	// ErrConfig is wrapped by every configuration error.
	ErrConfig = errors.New("invalid broker configuration")
	// ErrPlaintext is returned when the broker would listen on a
	// non-loopback address without TLS and InsecurePlaintext is not set.
	ErrPlaintext = errors.New("refusing to listen on a non-loopback address without TLS (give --tls-cert and --tls-key, or --insecure-plaintext to accept the risk)")
)

// Config configures a broker. Start from DefaultConfig.
type Config struct {
	// Listen is the client address, host:port. Port -1 picks a random port.
	Listen string
	// DataDir holds the JetStream file store and the last accepted
	// directory. It is created with mode 0700.
	DataDir string
	// Directory is the signed network directory (file form) and Authority
	// the pinned authority public key that must have signed it.
	Directory []byte
	Authority ed25519.PublicKey

	// MaxAge is how long an undelivered message waits in an inbox before
	// the broker drops it (the undelivered deadline).
	MaxAge time.Duration
	// DuplicateWindow is how long the broker remembers a Nats-Msg-Id to drop
	// a re-published copy. It must be longer than a gateway's retry horizon
	// and is capped at MaxAge.
	DuplicateWindow time.Duration
	// MaxMsgSize is the largest message an inbox accepts.
	MaxMsgSize int32
	// MaxStore caps the disk the inboxes and file queues use together
	// (JetStream's max store). 0: the sum of every agency's inbox and files
	// byte limits in the directory, raised as the directory grows. When
	// set, a directory whose inboxes and file queues could need more is
	// refused. Each inbox's own limits (and each
	// sender's share of it) come from the directory: crypto.Limits.
	MaxStore int64
	// MaxMemory caps memory-backed JetStream storage (the inboxes are on
	// disk; this bounds anything else JetStream keeps in memory).
	MaxMemory int64
	// StreamBuffer bounds the bytes each inbox buffers between receiving a
	// message and storing it; ClientPending the bytes waiting to be sent to
	// one client before it is disconnected as too slow.
	StreamBuffer  int64
	ClientPending int64
	// AckWait is how long the broker waits for an ack before redelivering,
	// and BackOff the later redelivery delays (its first element is replaced
	// by AckWait). MaxDeliver is chosen so redeliveries span MaxAge.
	AckWait time.Duration
	BackOff []time.Duration

	// TLS files. TLSCert and TLSKey enable TLS (required for every client);
	// TLSCA, if set, makes the broker require and verify client
	// certificates signed by it. The same files secure cluster routes.
	TLSCert, TLSKey, TLSCA string
	// InsecurePlaintext allows a non-loopback listener without TLS. A
	// warning is logged at every start.
	InsecurePlaintext bool
	// Monitor is the monitoring endpoint address (host:port), off when
	// empty. It must be a loopback address.
	Monitor string
	// Metrics is the address (host:port, loopback only) of a Prometheus
	// listener serving GET /metrics: each inbox's usage against its limits,
	// each sender's backlog in it, each agency's connections. Off when
	// empty.
	Metrics string
	// UsageInterval is how often the broker checks the inboxes and logs,
	// at warn, a sender holding its whole share of an inbox or an inbox
	// nearly full (at most every 5 minutes for the same one).
	UsageInterval time.Duration

	// ServerName names this node. Empty: a name is generated once and kept
	// in DataDir, so a cluster node keeps its identity across restarts.
	ServerName string
	// ClusterName, ClusterListen and Routes form a NATS cluster. Routes are
	// nats-route://host:port URLs of the other nodes (listing this node too
	// is harmless).
	ClusterName   string
	ClusterListen string
	Routes        []string
	// ClusterSecret authenticates the nodes of a cluster to each other
	// (route user and password). Every node has the same one; a server
	// without it cannot join, whatever certificate it holds. Required for
	// a cluster: at least 32 characters.
	ClusterSecret string
	// ClusterCA is the CA file that route certificates must chain to, both
	// ways: each node presents the server certificate (TLSCert) to the
	// others and verifies theirs. Required for a cluster with TLS unless
	// TLSCA is set (then that CA serves). Without TLS routes are plaintext
	// and only allowed on loopback or with InsecurePlaintext.
	ClusterCA string
	// SystemUser is the public nkey (U...) of the operator's monitoring
	// user in the system account: it may only send the read-only $SYS
	// monitoring requests (server, JetStream and account reports, as the
	// nats CLI's "server report" commands do) and read their replies.
	// Empty: no one can log in to the system account.
	SystemUser string
	// Replicas of each inbox stream. 0 picks 3 when the cluster has at
	// least 3 nodes, else 1.
	Replicas int

	// StartTimeout bounds how long Start waits for JetStream and for
	// provisioning (a cluster needs a quorum).
	StartTimeout time.Duration
	// Logger receives the broker's and the NATS server's logs.
	Logger *slog.Logger
	// Debug enables NATS debug logs.
	Debug bool
}

// DefaultConfig returns the defaults: loopback port 4222, 30-day inboxes,
// a 24-hour duplicate window, 1 MiB messages, a max store sized from the
// directory, 64 MiB of memory storage, 16 MiB stream buffers and 32 MiB
// per client.
func DefaultConfig() Config {
	return Config{
		Listen:          "127.0.0.1:4222",
		MaxAge:          30 * 24 * time.Hour,
		DuplicateWindow: 24 * time.Hour,
		MaxMsgSize:      1 << 20,
		MaxMemory:       64 << 20,
		StreamBuffer:    16 << 20,
		ClientPending:   32 << 20,
		UsageInterval:   30 * time.Second,
		AckWait:         30 * time.Second,
		BackOff:         []time.Duration{30 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour},
		StartTimeout:    60 * time.Second,
	}
}

type hostPort struct {
	host string
	port int
}

func parseHostPort(what, s string) (hostPort, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return hostPort{}, fmt.Errorf("%w: %s %q: %v", ErrConfig, what, s, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return hostPort{}, fmt.Errorf("%w: %s %q: bad port", ErrConfig, what, s)
	}
	return hostPort{host: h, port: port}, nil
}

// isLoopback reports whether host names only the local machine. An empty
// host or 0.0.0.0 means every interface, so it is not loopback.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Config) validate() error {
	if c.DataDir == "" {
		return fmt.Errorf("%w: a data directory is required", ErrConfig)
	}
	if len(c.Authority) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: the authority public key is required", ErrConfig)
	}
	if len(c.Directory) == 0 {
		return fmt.Errorf("%w: the signed network directory is required", ErrConfig)
	}
	if c.MaxAge <= 0 {
		return fmt.Errorf("%w: max age must be positive", ErrConfig)
	}
	if c.DuplicateWindow <= 0 {
		return fmt.Errorf("%w: duplicate window must be positive", ErrConfig)
	}
	if c.MaxMsgSize <= 0 || c.MaxMsgSize > 1<<20 {
		return fmt.Errorf("%w: max message size must be between 1 and 1 MiB", ErrConfig)
	}
	if c.MaxStore < 0 {
		return fmt.Errorf("%w: max store cannot be negative (0 sizes it from the directory)", ErrConfig)
	}
	if c.MaxMemory < 1<<20 {
		return fmt.Errorf("%w: max memory must be at least 1 MiB", ErrConfig)
	}
	if c.StreamBuffer < 2<<20 {
		return fmt.Errorf("%w: the stream buffer must be at least 2 MiB (two messages of the largest size)", ErrConfig)
	}
	if c.ClientPending < 2<<20 {
		return fmt.Errorf("%w: the client pending limit must be at least 2 MiB (two messages of the largest size)", ErrConfig)
	}
	if c.UsageInterval <= 0 {
		return fmt.Errorf("%w: the usage interval must be positive", ErrConfig)
	}
	if c.Metrics != "" {
		m, err := parseHostPort("metrics address", c.Metrics)
		if err != nil {
			return err
		}
		if !isLoopback(m.host) {
			return fmt.Errorf("%w: the metrics listener must listen on a loopback address, not %q", ErrConfig, c.Metrics)
		}
	}
	if c.AckWait <= 0 {
		return fmt.Errorf("%w: ack wait must be positive", ErrConfig)
	}
	for _, d := range c.BackOff {
		if d <= 0 {
			return fmt.Errorf("%w: back-off delays must be positive", ErrConfig)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("%w: --tls-cert and --tls-key go together", ErrConfig)
	}
	if c.TLSCA != "" && c.TLSCert == "" {
		return fmt.Errorf("%w: --tls-ca needs --tls-cert and --tls-key", ErrConfig)
	}
	l, err := parseHostPort("listen address", c.Listen)
	if err != nil {
		return err
	}
	tlsOn := c.TLSCert != ""
	if !isLoopback(l.host) && !tlsOn && !c.InsecurePlaintext {
		return fmt.Errorf("listen address %s: %w", c.Listen, ErrPlaintext)
	}
	if c.Monitor != "" {
		m, err := parseHostPort("monitor address", c.Monitor)
		if err != nil {
			return err
		}
		if !isLoopback(m.host) {
			return fmt.Errorf("%w: the monitoring endpoint must listen on a loopback address, not %q", ErrConfig, c.Monitor)
		}
	}
	if c.ClusterName != "" || c.ClusterListen != "" || len(c.Routes) > 0 {
		if c.ClusterName == "" || c.ClusterListen == "" {
			return fmt.Errorf("%w: a cluster needs --cluster-name and --cluster-listen", ErrConfig)
		}
		if strings.ContainsAny(c.ClusterName, " .*>\t") {
			return fmt.Errorf("%w: cluster name %q has a space, dot or wildcard", ErrConfig, c.ClusterName)
		}
		cl, err := parseHostPort("cluster listen address", c.ClusterListen)
		if err != nil {
			return err
		}
		if !isLoopback(cl.host) && !tlsOn && !c.InsecurePlaintext {
			return fmt.Errorf("cluster listen address %s: %w", c.ClusterListen, ErrPlaintext)
		}
		for _, r := range c.Routes {
			u, err := url.Parse(r)
			if err != nil || u.Host == "" || (u.Scheme != "nats-route" && u.Scheme != "nats" && u.Scheme != "tls") {
				return fmt.Errorf("%w: route %q is not a nats-route://host:port URL", ErrConfig, r)
			}
		}
		if tlsOn && c.ClusterCA == "" && c.TLSCA == "" {
			return fmt.Errorf("%w: a cluster with TLS needs --cluster-ca, the CA the nodes' certificates chain to (routes verify each other)", ErrConfig)
		}
		if len(c.ClusterSecret) < 32 || strings.ContainsAny(c.ClusterSecret, " \t\r\n@:/") {
			return fmt.Errorf("%w: a cluster needs a route secret of at least 32 characters without spaces, '@', ':' or '/' (--cluster-secret-file)", ErrConfig)
		}
	}
	if c.ClusterCA != "" && (c.ClusterName == "" || !tlsOn) {
		return fmt.Errorf("%w: --cluster-ca needs a cluster (--cluster-name) and --tls-cert, --tls-key", ErrConfig)
	}
	if c.SystemUser != "" && !validUserNKey(c.SystemUser) {
		return fmt.Errorf("%w: the system user must be a public user nkey (U...)", ErrConfig)
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("%w: replicas must be between 1 and 5", ErrConfig)
	}
	return nil
}

// clusterSize is the number of distinct nodes named by the routes and this
// node.
func (c *Config) clusterSize() int {
	if c.ClusterName == "" {
		return 1
	}
	self := map[string]bool{}
	if cl, err := parseHostPort("", c.ClusterListen); err == nil {
		for _, h := range []string{cl.host, "localhost", "127.0.0.1", "::1"} {
			self[net.JoinHostPort(h, strconv.Itoa(cl.port))] = true
		}
	}
	others := map[string]bool{}
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil || self[u.Host] {
			continue
		}
		others[u.Host] = true
	}
	return 1 + len(others)
}

func (c *Config) replicas() int {
	if c.Replicas > 0 {
		return c.Replicas
	}
	if c.clusterSize() >= 3 {
		return 3
	}
	return 1
}

// maxDeliver returns a MaxDeliver that keeps redelivering with the back-off
// schedule until MaxAge has passed.
func maxDeliver(backoff []time.Duration, maxAge time.Duration) int {
	if len(backoff) == 0 {
		return -1
	}
	var sum time.Duration
	for _, d := range backoff {
		sum += d
	}
	n := len(backoff) + 1
	if rest := maxAge - sum; rest > 0 {
		last := backoff[len(backoff)-1]
		n += int((rest + last - 1) / last)
	}
	return n
}
