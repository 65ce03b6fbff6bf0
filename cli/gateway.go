package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/run"
)

func init() {
	register(Command{
		Name:    "gateway",
		Summary: "run one agency's gateway (HTTP API, outbox, inbox, receipts, audit)",
		Run:     runGateway,
	})
}

func runGateway(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet(env, "gateway")
	config := fs.String("config", "", "gateway config file (YAML); RUJUKAN_* variables override it")
	memLimit := fs.Int64("memory-limit", gatewayMemoryLimit, "soft limit of the process's memory in `bytes` (Go's runtime limit; 0: none; GOMEMLIMIT wins)")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	cfg, err := gateway.LoadConfig(*config, env.Getenv)
	if err != nil {
		return err
	}
	log := newLogger(env)
	ml, err := setMemoryLimit(env, *memLimit)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	log.Info("memory limit", "limit", ml)
	if path := env.Getenv("RUJUKAN_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("RUJUKAN_CPUPROFILE: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("RUJUKAN_CPUPROFILE: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	r, err := run.Start(ctx, cfg, gateway.Options{Logger: log})
	if err != nil {
		return err
	}
	log.Info("gateway listening", "agency", cfg.Agency, "url", r.URL, "broker", cfg.Broker.URL)
	for waiting := true; waiting; {
		select {
		case <-ctx.Done():
			waiting = false
		case <-hup:
			// Reload reads the directory file again; a refused one leaves
			// the one in force.
			if err := r.Gateway.Reload(); err != nil {
				log.Error("directory reload refused; the directory in force is kept", "err", err)
			}
		}
	}
	log.Info("shutting down", "agency", cfg.Agency)
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := r.Close(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// newLogger logs text to stderr at the level RUJUKAN_LOG names (debug,
// info, warn or error; info when unset or unknown).
func newLogger(env Env) *slog.Logger {
	level := slog.LevelInfo
	if env.Getenv != nil {
		switch env.Getenv("RUJUKAN_LOG") {
		case "debug":
			level = slog.LevelDebug
		case "warn":
			level = slog.LevelWarn
		case "error":
			level = slog.LevelError
		}
	}
	return slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level}))
}
