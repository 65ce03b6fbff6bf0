package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/rujukan/rujukan/broker"
	"github.com/rujukan/rujukan/crypto"
)

func init() {
	register(Command{
		Name:    "broker",
		Summary: "run the broker (embedded NATS JetStream) provisioned from the signed directory; 'broker reload' re-reads it, 'broker status' shows the cluster and its stream leaders",
		Run:     runBroker,
	})
}

// BrokerFlags is the command line of 'rujukan broker'.
type BrokerFlags struct {
	Network, Authority, Data, Listen string
	TLSCert, TLSKey, TLSCA           string
	InsecurePlaintext                bool
	Monitor                          string
	Metrics                          string
	MaxAge, DuplicateWindow          time.Duration
	MaxStore, MaxMemory              int64
	ServerName                       string
	ClusterName, ClusterListen       string
	Routes                           string
	ClusterSecretFile                string
	ClusterCA                        string
	SystemUser                       string
	Replicas                         int
	PIDFile                          string
	LogLevel                         string
}

func runBroker(ctx context.Context, env Env, args []string) error {
	if len(args) > 0 && args[0] == "reload" {
		return runBrokerReload(env, args[1:])
	}
	if len(args) > 0 && args[0] == "status" {
		return runBrokerStatus(ctx, env, args[1:])
	}
	def := broker.DefaultConfig()
	var f BrokerFlags
	fs := newFlagSet(env, "broker")
	fs.StringVar(&f.Network, "network", "", "signed network directory `file` (required)")
	fs.StringVar(&f.Authority, "authority", "", "network authority public `key`: base64, or @file (required)")
	fs.StringVar(&f.Data, "data", "", "data `directory` for the JetStream store (required)")
	fs.StringVar(&f.Listen, "listen", def.Listen, "client `address`; a non-loopback address needs TLS")
	fs.StringVar(&f.TLSCert, "tls-cert", "", "TLS certificate `file`")
	fs.StringVar(&f.TLSKey, "tls-key", "", "TLS private key `file`")
	fs.StringVar(&f.TLSCA, "tls-ca", "", "CA `file`: require client certificates signed by it")
	fs.BoolVar(&f.InsecurePlaintext, "insecure-plaintext", false, "allow a non-loopback listener without TLS (unsafe)")
	fs.StringVar(&f.Monitor, "monitor", "", "monitoring endpoint `address` (loopback only; off by default)")
	fs.StringVar(&f.Metrics, "metrics", "", "Prometheus `address` (loopback only; off by default): inbox usage and each sender's backlog against the limits")
	fs.DurationVar(&f.MaxAge, "max-age", def.MaxAge, "how long an undelivered message is kept")
	fs.DurationVar(&f.DuplicateWindow, "duplicate-window", def.DuplicateWindow, "how long a message id is remembered to drop re-sent copies")
	fs.Int64Var(&f.MaxStore, "max-store", def.MaxStore, "disk `bytes` all inboxes and file queues may use together (0: the sum of the directory's limits of both)")
	fs.Int64Var(&f.MaxMemory, "max-memory", def.MaxMemory, "`bytes` of memory-backed JetStream storage")
	memLimit := fs.Int64("memory-limit", brokerMemoryLimit, "soft limit of the process's memory in `bytes` (Go's runtime limit; 0: none; GOMEMLIMIT wins)")
	fs.StringVar(&f.ServerName, "server-name", "", "node name (default: generated once and kept in the data directory)")
	fs.StringVar(&f.ClusterName, "cluster-name", "", "cluster `name` (all nodes the same)")
	fs.StringVar(&f.ClusterListen, "cluster-listen", "", "cluster route `address` of this node")
	fs.StringVar(&f.Routes, "routes", "", "comma-separated nats-route://host:port `URLs` of the cluster nodes")
	fs.StringVar(&f.ClusterSecretFile, "cluster-secret-file", "", "`file` (0600) holding the secret every cluster node shares (at least 32 characters)")
	fs.StringVar(&f.ClusterCA, "cluster-ca", "", "CA `file` the cluster nodes' certificates chain to (routes are mutual TLS; required for a cluster with TLS unless --tls-ca)")
	fs.StringVar(&f.SystemUser, "system-user", "", "public nkey (U...) of the operator's monitoring user in the system account, or @file (read-only $SYS requests; off by default)")
	fs.IntVar(&f.Replicas, "replicas", 0, "replicas per inbox (default: 3 with at least 3 nodes, else 1)")
	fs.StringVar(&f.PIDFile, "pid-file", "", "write the process id to this `file` (for 'rujukan broker reload')")
	fs.StringVar(&f.LogLevel, "log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	logger, err := newBrokerLogger(env.Stderr, f.LogLevel)
	if err != nil {
		return err
	}
	ml, err := setMemoryLimit(env, *memLimit)
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	logger.Info("memory limit", "limit", ml)
	cfg, err := f.Config(logger)
	if err != nil {
		return err
	}
	srv, err := broker.New(cfg)
	if err != nil {
		return err
	}
	// SIGHUP is caught before Start so that an early reload request is
	// not fatal; it is served once the broker runs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer srv.Close()
	if f.PIDFile != "" {
		if err := os.WriteFile(f.PIDFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return fmt.Errorf("broker: failed to write pid file: %w", err)
		}
		defer os.Remove(f.PIDFile)
	}
	for {
		select {
		case <-ctx.Done():
			logger.Info("shutting down")
			return srv.Close()
		case <-hup:
			signed, err := readDirectory(f.Network)
			if err != nil {
				logger.Error("directory reload refused; running configuration kept", "err", err)
				continue
			}
			srv.Reload(signed) // logs its outcome
		}
	}
}

// Config turns the flags into a broker configuration.
func (f *BrokerFlags) Config(logger *slog.Logger) (broker.Config, error) {
	cfg := broker.DefaultConfig()
	var missing []string
	for _, m := range []struct{ name, v string }{{"--network", f.Network}, {"--authority", f.Authority}, {"--data", f.Data}} {
		if m.v == "" {
			missing = append(missing, m.name)
		}
	}
	if len(missing) > 0 {
		return cfg, fmt.Errorf("broker: missing %s", strings.Join(missing, ", "))
	}
	auth, err := crypto.ParseAuthorityKey(f.Authority)
	if err != nil {
		return cfg, fmt.Errorf("broker: --authority: %w", err)
	}
	signed, err := readDirectory(f.Network)
	if err != nil {
		return cfg, err
	}
	cfg.Directory, cfg.Authority, cfg.DataDir = signed, auth, f.Data
	cfg.Listen = f.Listen
	cfg.TLSCert, cfg.TLSKey, cfg.TLSCA = f.TLSCert, f.TLSKey, f.TLSCA
	cfg.InsecurePlaintext = f.InsecurePlaintext
	cfg.Monitor = f.Monitor
	cfg.Metrics = f.Metrics
	cfg.MaxAge, cfg.DuplicateWindow = f.MaxAge, f.DuplicateWindow
	if f.MaxStore != 0 {
		cfg.MaxStore = f.MaxStore
	}
	if f.MaxMemory != 0 {
		cfg.MaxMemory = f.MaxMemory
	}
	cfg.ServerName = f.ServerName
	cfg.ClusterName, cfg.ClusterListen = f.ClusterName, f.ClusterListen
	if f.ClusterSecretFile != "" {
		secret, err := crypto.ReadPrivateFile(f.ClusterSecretFile)
		if err != nil {
			return cfg, fmt.Errorf("broker: --cluster-secret-file: %w", err)
		}
		cfg.ClusterSecret = strings.TrimSpace(string(secret))
	}
	cfg.ClusterCA = f.ClusterCA
	if cfg.SystemUser, err = readKeyArg(f.SystemUser); err != nil {
		return cfg, fmt.Errorf("broker: --system-user: %w", err)
	}
	for r := range strings.SplitSeq(f.Routes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			cfg.Routes = append(cfg.Routes, r)
		}
	}
	cfg.Replicas = f.Replicas
	cfg.Logger = logger
	cfg.Debug = strings.EqualFold(f.LogLevel, "debug")
	return cfg, nil
}

// readKeyArg returns a public key given on the command line, or read from
// the file after '@' (its first line).
func readKeyArg(v string) (string, error) {
	path, ok := strings.CutPrefix(v, "@")
	if !ok {
		return strings.TrimSpace(v), nil
	}
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, 4096))
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line), nil
}

func readDirectory(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, crypto.MaxDirectorySize+1))
	if err != nil {
		return nil, fmt.Errorf("broker: failed to read %s: %w", path, err)
	}
	if len(b) > crypto.MaxDirectorySize {
		return nil, fmt.Errorf("broker: %s: %w", path, crypto.ErrDirectoryTooLarge)
	}
	return b, nil
}

func newBrokerLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// runBrokerReload asks a running broker to re-read its directory file.
func runBrokerReload(env Env, args []string) error {
	fs := newFlagSet(env, "broker reload")
	pidFile := fs.String("pid-file", "", "pid `file` written by 'rujukan broker --pid-file'")
	pid := fs.Int("pid", 0, "process id of the broker (instead of --pid-file)")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if (*pidFile == "") == (*pid == 0) {
		return errors.New("broker reload: give exactly one of --pid-file or --pid")
	}
	if *pidFile != "" {
		b, err := os.ReadFile(*pidFile)
		if err != nil {
			return fmt.Errorf("broker reload: %w", err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || n <= 1 {
			return fmt.Errorf("broker reload: %s does not hold a process id", *pidFile)
		}
		*pid = n
	}
	p, err := os.FindProcess(*pid)
	if err != nil {
		return fmt.Errorf("broker reload: %w", err)
	}
	if err := p.Signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("broker reload: signal process %d: %w", *pid, err)
	}
	fmt.Fprintf(env.Stdout, "asked broker (pid %d) to reload its directory; see its log for the outcome\n", *pid)
	return nil
}

// runBrokerStatus prints a running node's view of the cluster and of the
// streams it holds, from its monitoring endpoint (--monitor): which node
// leads each stream and how the other replicas follow.
func runBrokerStatus(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet(env, "broker status")
	addr := fs.String("monitor", "127.0.0.1:8222", "the node's monitoring endpoint `address` (its --monitor)")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := broker.QueryStatus(ctx, *addr)
	if err != nil {
		return fmt.Errorf("broker status: %w", err)
	}
	if st.Cluster == "" {
		fmt.Fprintf(env.Stdout, "node %s (no cluster)\n", st.Server)
	} else {
		fmt.Fprintf(env.Stdout, "node %s  cluster %s  %d nodes  meta leader %s\n", st.Server, st.Cluster, st.Size, cmp.Or(st.MetaLeader, "(none)"))
	}
	w := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "STREAM\tMESSAGES\tLEADER\tREPLICAS")
	for _, s := range st.Streams {
		var reps []string
		for _, r := range s.Replicas {
			state := "current"
			switch {
			case r.Offline:
				state = "offline"
			case !r.Current:
				state = fmt.Sprintf("behind %d", r.Lag)
			}
			reps = append(reps, r.Name+" "+state)
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", s.Name, s.Messages, cmp.Or(s.Leader, "(none)"), strings.Join(reps, ", "))
	}
	return w.Flush()
}
