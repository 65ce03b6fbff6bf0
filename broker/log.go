package broker

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats-server/v2/server"
)

// slogLogger sends the NATS server's logs to a slog.Logger.
type slogLogger struct{ l *slog.Logger }

var _ server.Logger = slogLogger{}

func (s slogLogger) log(level slog.Level, format string, v ...any) {
	if !s.l.Enabled(context.Background(), level) {
		return
	}
	s.l.Log(context.Background(), level, fmt.Sprintf(format, v...), "component", "nats")
}

func (s slogLogger) Noticef(format string, v ...any) { s.log(slog.LevelInfo, format, v...) }
func (s slogLogger) Warnf(format string, v ...any)   { s.log(slog.LevelWarn, format, v...) }

// Fatalf logs at error level. The NATS server calls it for errors it cannot
// recover from; it never exits the process here.
func (s slogLogger) Fatalf(format string, v ...any) { s.log(slog.LevelError, format, v...) }
func (s slogLogger) Errorf(format string, v ...any) { s.log(slog.LevelError, format, v...) }
func (s slogLogger) Debugf(format string, v ...any) { s.log(slog.LevelDebug, format, v...) }
func (s slogLogger) Tracef(format string, v ...any) { s.log(slog.LevelDebug-4, format, v...) }
