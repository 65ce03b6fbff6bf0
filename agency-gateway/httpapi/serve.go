package httpapi

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
)

// Running is a gateway with its HTTP API listening.
type Running struct {
	Gateway *gateway.Gateway
	// URL is the API's base URL (http://host:port).
	URL  string
	srv  *http.Server
	done chan error

	closeOnce sync.Once
	closeErr  error
}

// Start creates the gateway, connects it to the broker and serves its API
// on cfg.HTTP.Listen (a port of 0 picks a free one).
func Start(ctx context.Context, cfg gateway.Config, opt gateway.Options) (*Running, error) {
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	gw, err := gateway.New(cfg, opt)
	if err != nil {
		return nil, err
	}
	if err := gw.Start(ctx); err != nil {
		gw.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		gw.Close()
		return nil, fmt.Errorf("failed to listen on %s: %w", cfg.HTTP.Listen, err)
	}
	scheme := "http"
	if cfg.HTTP.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.HTTP.TLSCert, cfg.HTTP.TLSKey)
		if err != nil {
			ln.Close()
			gw.Close()
			return nil, fmt.Errorf("%w: field http.tls_cert: %v", gateway.ErrConfig, err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		scheme = "https"
	}
	r := &Running{
		Gateway: gw,
		URL:     scheme + "://" + ln.Addr().String(),
		srv: &http.Server{
			Handler:           New(gw, cfg.HTTP.MaxBody, log.With("agency", cfg.Agency)),
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    32 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		done: make(chan error, 1),
	}
	go func() { r.done <- r.srv.Serve(ln) }()
	return r, nil
}

// Close stops accepting requests, lets running ones finish, then stops the
// gateway. Closing again returns the first result.
func (r *Running) Close(ctx context.Context) error {
	r.closeOnce.Do(func() {
		err := r.srv.Shutdown(ctx)
		if serr := <-r.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
		r.closeErr = errors.Join(err, r.Gateway.Close())
	})
	return r.closeErr
}
