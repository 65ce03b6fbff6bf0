package e2e

import (
	"log/slog"
	"os"
	"testing"
)

// quietLogger logs warnings and errors only, unless RUJUKAN_TEST_LOG is set.
func quietLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("RUJUKAN_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
