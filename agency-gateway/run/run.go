// Package run starts one agency's gateway as a process runs it: it loads
// the keys, connects to the broker over NATS, starts the gateway core and
// serves its HTTP API. The core itself ([gateway.New]) knows neither NATS
// nor HTTP; tests of the core hand it an in-memory bus instead.
package run

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/httpapi"
	"github.com/rujukan/rujukan/agency-gateway/staff"
	"github.com/rujukan/rujukan/agency-gateway/web"
	"github.com/rujukan/rujukan/broker/client"
)

// Running is a gateway connected to the broker with its HTTP API listening.
type Running struct {
	Gateway *gateway.Gateway
	// URL is the API's base URL (http://host:port).
	URL string
	// MetricsURL is the metrics listener's base URL (http://host:port;
	// GET /metrics), empty when cfg.Metrics.Listen is.
	MetricsURL string
	bus        *client.Client
	srv        *http.Server
	done       chan error
	metrics    *http.Server
	mdone      chan error
	backups    *backupServer

	closeOnce sync.Once
	closeErr  error
}

// Start loads the keys, connects to the broker (retrying in the
// background when it is down), starts the gateway and serves its API on
// cfg.HTTP.Listen (a port of 0 picks a free one), and its metrics on
// cfg.Metrics.Listen when that is set.
func Start(ctx context.Context, cfg gateway.Config, opt gateway.Options) (*Running, error) {
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	keys, err := gateway.LoadKeys(cfg)
	if err != nil {
		return nil, err
	}
	seed, err := client.LoadNKeySeed(cfg.Broker.NKeySeed)
	if err != nil {
		return nil, err
	}
	var gw *gateway.Gateway
	var gwReady sync.WaitGroup
	gwReady.Add(1)
	// conn names the node connected to in the log (broker.url may list a
	// cluster's nodes); it is nil until Connect returns.
	var conn atomic.Pointer[client.Client]
	opts := []client.Option{client.OnStatus(func(up bool) {
		if up {
			node := ""
			if c := conn.Load(); c != nil {
				node = c.ConnectedURL()
			}
			log.Info("connected to the broker", "agency", cfg.Agency, "node", node)
			go func() {
				gwReady.Wait()
				if gw != nil { // nil when gateway.New failed
					gw.Poke()
				}
			}()
		} else {
			log.Warn("disconnected from the broker", "agency", cfg.Agency)
		}
	})}
	if cfg.Broker.CA != "" || cfg.Broker.Cert != "" {
		opts = append(opts, client.WithTLS(cfg.Broker.CA, cfg.Broker.Cert, cfg.Broker.Key))
	}
	nc, err := client.Connect(ctx, cfg.Broker.URL, cfg.Agency, seed, opts...)
	if err != nil {
		if errors.Is(err, client.ErrAuth) {
			if rerr := gateway.CheckNotRevoked(cfg); rerr != nil {
				return nil, rerr // the plain reason the broker refused the login
			}
		}
		return nil, err
	}
	conn.Store(nc)
	gw, err = gateway.New(cfg, keys, natsBus{nc}, opt)
	gwReady.Done()
	if err != nil {
		nc.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		gw.Close()
		nc.Close()
		return nil, fmt.Errorf("failed to listen on %s: %w", cfg.HTTP.Listen, err)
	}
	scheme := "http"
	if cfg.HTTP.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.HTTP.TLSCert, cfg.HTTP.TLSKey)
		if err != nil {
			ln.Close()
			gw.Close()
			nc.Close()
			return nil, fmt.Errorf("%w: field http.tls_cert: %v", gateway.ErrConfig, err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		scheme = "https"
	}
	handler, err := handler(gw, cfg, log)
	if err != nil {
		ln.Close()
		gw.Close()
		nc.Close()
		return nil, err
	}
	var mln net.Listener
	if cfg.Metrics.Listen != "" {
		if mln, err = net.Listen("tcp", cfg.Metrics.Listen); err != nil {
			ln.Close()
			gw.Close()
			nc.Close()
			return nil, fmt.Errorf("failed to listen on %s (metrics.listen): %w", cfg.Metrics.Listen, err)
		}
	}
	gw.Start()
	r := &Running{
		Gateway: gw,
		URL:     scheme + "://" + ln.Addr().String(),
		bus:     nc,
		srv: &http.Server{
			Handler:           handler,
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
	r.backups = serveBackups(gw, cfg.Data, log.With("agency", cfg.Agency))
	if mln != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(gw.Metrics().Registry, promhttp.HandlerOpts{}))
		r.MetricsURL = "http://" + mln.Addr().String()
		r.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		r.mdone = make(chan error, 1)
		go func() { r.mdone <- r.metrics.Serve(mln) }()
	}
	return r, nil
}

// Close stops accepting requests, lets running ones finish, then stops the
// gateway and closes the broker connection. Closing again returns the
// first result.
func (r *Running) Close(ctx context.Context) error {
	r.closeOnce.Do(func() {
		err := r.srv.Shutdown(ctx)
		if serr := <-r.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
		if r.metrics != nil {
			r.metrics.Shutdown(ctx)
			<-r.mdone
		}
		r.backups.close()
		r.closeErr = errors.Join(err, r.Gateway.Close())
		r.bus.Close()
	})
	return r.closeErr
}

// handler serves the API, and the staff web app under /ui/ (the bare
// / and /ui go there too).
func handler(gw *gateway.Gateway, cfg gateway.Config, log *slog.Logger) (http.Handler, error) {
	var totp []staff.Role
	for _, r := range cfg.Web.TOTPRoles {
		if !staff.ValidRole(staff.Role(r)) {
			return nil, fmt.Errorf("%w: field web.totp_roles: %q is not a role (caseworker, consent-recorder, investigator, operator)", gateway.ErrConfig, r)
		}
		totp = append(totp, staff.Role(r))
	}
	loc, err := cfg.Web.Location()
	if err != nil {
		return nil, fmt.Errorf("%w: field web.time_zone: %v", gateway.ErrConfig, err)
	}
	accounts := staff.New(gw.DB(), cfg.Agency, gw.Kind(), staff.Options{TOTPRoles: totp})
	ui, err := web.New(gw, accounts, web.Config{Location: loc, SecureCookies: cfg.HTTP.TLSCert != "",
		Logger: log.With("agency", cfg.Agency, "component", "web")})
	if err != nil {
		return nil, err
	}
	api := httpapi.New(gw, cfg.HTTP.MaxBody, log.With("agency", cfg.Agency))
	mux := http.NewServeMux()
	mux.Handle("/ui/", ui)
	mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusSeeOther))
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusSeeOther))
	mux.Handle("/", api)
	return mux, nil
}

// natsBus adapts the broker client to gateway.Bus.
type natsBus struct{ c *client.Client }

func (b natsBus) Publish(ctx context.Context, to, id string, env []byte) error {
	err := b.c.Publish(ctx, to, id, env)
	if errors.Is(err, client.ErrUnavailable) {
		return fmt.Errorf("%w: %w", gateway.ErrUnavailable, err)
	}
	if le := (*client.LimitError)(nil); errors.As(err, &le) {
		return &gateway.LimitError{Reason: le.Reason, Err: err}
	}
	return err
}

func (b natsBus) Fetch(ctx context.Context, max int) ([]gateway.Msg, error) {
	msgs, err := b.c.Fetch(ctx, max)
	out := make([]gateway.Msg, len(msgs))
	for i, m := range msgs {
		out[i] = m
	}
	return out, err
}

func (b natsBus) Connected() bool { return b.c.Connected() }

// SetSenders implements gateway.SenderSetter: the client pulls from one
// consumer per sender.
func (b natsBus) SetSenders(ids []string) { b.c.SetSenders(ids) }
