// Package client is the agency gateway's connection to the Rujukan broker.
//
// It is, with package broker, the only place that imports nats.go. A Client
// logs in with the agency's NATS nkey, uses the reply prefix _INBOX_<id>
// that the broker grants it (never the shared _INBOX), publishes envelopes
// to rujukan.msg.<to>.<self> and waits for the broker's acknowledgement, and
// pulls from the durable consumers of the agency's own stream INBOX_<id>,
// one per sender (ConsumerFor), in turn (SetSenders, Fetch). Attachment
// chunks go the same way through the agency's file queue FILES_<id>
// (PublishChunks to rujukan.file.<to>.<self>, FetchChunks), pulled apart
// from the envelopes with buffers of their own.
//
// # Guarantees
//
//   - Publish returns nil only after the broker has stored the message on
//     disk (the broker runs JetStream with fsync before acknowledgement). Any
//     other outcome is an error; ErrUnavailable means "keep it queued and try
//     again later", and so does ErrLimit (the recipient's inbox, or the
//     sender's share of it, is full: try again once it has been read). The
//     envelope id is sent as Nats-Msg-Id, so a retry of a message the
//     broker already stored is not stored twice.
//   - A message fetched with Fetch or Consume stays in the broker until
//     AckSync returns nil. Call AckSync only after the message is committed
//     to local storage.
//   - The connection reconnects by itself, forever, with back-off.
//
// # Caveats
//
// Fetch serves the senders given to SetSenders; until it is called Fetch
// fails with ErrUnavailable. Up to SenderBuffer messages per sender are
// pulled ahead of Fetch (ChunkBuffer chunks ahead of FetchChunks): they
// are delivered and their ack wait runs.
//
// The sender shown by Msg.From is the subject token the broker enforced at
// publish time: the broker only lets agency S publish on
// rujukan.msg.*.S. It is routing metadata, not a proof of origin; the
// envelope signature is.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// Names shared by the broker and its clients.
const (
	// SubjectPrefix starts the subject of every envelope:
	// rujukan.msg.<to>.<from>.
	SubjectPrefix = "rujukan.msg."
	// LegacyConsumerName is the single durable pull consumer an inbox had
	// before it had one per sender. The broker deletes it when it
	// provisions the per-sender consumers; what it had delivered and not
	// acknowledged stays in the inbox and goes to them.
	LegacyConsumerName = "gateway"
	// MaxMessageSize is the largest message the broker stores (data and
	// headers), equal to the NATS max_payload the broker runs with.
	MaxMessageSize = 1 << 20
	// MaxFetch is the largest batch one pull may ask for.
	MaxFetch = 256
)

// Errors.
var (
	// ErrUnavailable is returned when the broker could not be reached or did
	// not confirm a publish or a pull in time. The caller keeps the item and
	// tries again later: nothing was lost.
	ErrUnavailable = errors.New("broker unavailable")
	// ErrTooLarge is returned for a message larger than MaxMessageSize. It is
	// permanent.
	ErrTooLarge = errors.New("message too large for the broker")
	// ErrInvalidAgency is returned for an agency id that is not a lowercase
	// slug.
	ErrInvalidAgency = errors.New("invalid agency id")
	// ErrInvalidMsgID is returned for an empty or over-long message id.
	ErrInvalidMsgID = errors.New("invalid message id")
	// ErrAuth is returned by Connect when the broker refused the agency's
	// credentials. Retrying with the same credentials will not help.
	ErrAuth = errors.New("broker refused the agency credentials")
	// ErrBadSubject is returned for a message whose subject is not
	// rujukan.msg.<to>.<from> with two valid agency ids.
	ErrBadSubject = errors.New("malformed message subject")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("client closed")
	// ErrLimit is matched by a *LimitError: the broker refused a publish
	// because a limit is reached (the recipient's inbox, the sender's
	// share of it, the broker's store). Nothing was stored; publishing it
	// again later, once the recipient has read its inbox, is safe.
	ErrLimit = errors.New("broker limit reached")
)

// Reasons of a LimitError.
const (
	LimitInboxMessages = "inbox-messages" // the inbox holds its maximum number of messages
	LimitInboxBytes    = "inbox-bytes"    // the inbox holds its maximum bytes
	LimitSenderShare   = "sender-share"   // this sender holds its whole share of the inbox
	LimitBrokerStorage = "broker-storage" // the broker's store (or an account's) is full
	LimitBrokerBusy    = "broker-busy"    // the inbox has too many messages waiting to be stored
)

// LimitError is a publish the broker refused because of a limit. It
// matches ErrLimit.
type LimitError struct {
	// Reason is one of the Limit* constants.
	Reason string
	// Err is the broker's answer.
	Err error
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("broker limit reached (%s): %v", e.Reason, e.Err)
}

// Is makes errors.Is(err, ErrLimit) true.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

func (e *LimitError) Unwrap() error { return e.Err }

// JetStream error codes of a refusal for a limit.
const (
	jsStoreFailed              = 10077 // the stream refused to store: the description says which limit
	jsInsufficientResources    = 10023
	jsAccountResourcesExceeded = 10002
	jsMemoryResourcesExceeded  = 10028
	jsStorageResourcesExceeded = 10047
	jsTooManyRequests          = 10167
)

// limitError returns a *LimitError if err is the broker refusing a publish
// for a limit, else nil.
func limitError(err error) *LimitError {
	var ae *jetstream.APIError
	if !errors.As(err, &ae) {
		return nil
	}
	reason := ""
	switch ae.ErrorCode {
	case jsStoreFailed:
		d := strings.ToLower(ae.Description)
		switch {
		case strings.Contains(d, "maximum messages per subject exceeded"):
			reason = LimitSenderShare
		case strings.Contains(d, "maximum messages exceeded"):
			reason = LimitInboxMessages
		case strings.Contains(d, "maximum bytes exceeded"):
			reason = LimitInboxBytes
		}
	case jsInsufficientResources, jsAccountResourcesExceeded, jsMemoryResourcesExceeded, jsStorageResourcesExceeded:
		reason = LimitBrokerStorage
	case jsTooManyRequests:
		reason = LimitBrokerBusy
	}
	if reason == "" {
		return nil
	}
	return &LimitError{Reason: reason, Err: err}
}

var slugRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidID reports whether id is a valid agency id: a lowercase slug, which
// is a valid NATS subject token and stream name.
func ValidID(id string) bool { return slugRE.MatchString(id) }

// Subject returns the subject of an envelope from one agency to another.
func Subject(to, from string) string { return SubjectPrefix + to + "." + from }

// StreamName returns the name of an agency's inbox stream.
func StreamName(id string) string { return "INBOX_" + id }

// ConsumerFor returns the name of the durable pull consumer that delivers
// the envelopes of sender from on a recipient's inbox: "from_<from>" (the
// underscore cannot occur in an agency id).
func ConsumerFor(from string) string { return "from_" + from }

// InboxPrefix returns an agency's reply-subject prefix.
func InboxPrefix(id string) string { return "_INBOX_" + id }

// ParseSubject splits rujukan.msg.<to>.<from> into its two agency ids.
func ParseSubject(subject string) (to, from string, err error) {
	return parseSubject(SubjectPrefix, subject)
}

func parseSubject(prefix, subject string) (to, from string, err error) {
	rest, ok := strings.CutPrefix(subject, prefix)
	if !ok {
		return "", "", ErrBadSubject
	}
	to, from, ok = strings.Cut(rest, ".")
	if !ok || !ValidID(to) || !ValidID(from) {
		return "", "", ErrBadSubject
	}
	return to, from, nil
}

// Option configures a Client.
type Option func(*options) error

type options struct {
	tls          *tls.Config
	onStatus     func(connected bool)
	timeout      time.Duration
	name         string
	maxReconnect time.Duration
	retry        bool
}

// WithTLS makes the client use TLS and trust the CA certificates in
// caFile. certFile and keyFile, if not empty, are the client certificate
// for brokers that require one.
func WithTLS(caFile, certFile, keyFile string) Option {
	return func(o *options) error {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return fmt.Errorf("failed to read broker CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("broker CA %s holds no PEM certificate", caFile)
			}
			cfg.RootCAs = pool
		}
		if certFile != "" || keyFile != "" {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return fmt.Errorf("failed to load client certificate: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		o.tls = cfg
		return nil
	}
}

// OnStatus registers a function called with true when the client
// (re)connects and false when it loses the broker. It must not block.
func OnStatus(f func(connected bool)) Option {
	return func(o *options) error { o.onStatus = f; return nil }
}

// WithTimeout sets how long Publish and AckSync wait for the broker when
// their context has no deadline (default 10 s).
func WithTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return errors.New("timeout must be positive")
		}
		o.timeout = d
		return nil
	}
}

// WithName sets the connection name shown in the broker's logs.
func WithName(name string) Option {
	return func(o *options) error { o.name = name; return nil }
}

// NoRetryOnFailedConnect makes Connect fail if the broker cannot be reached
// now, instead of returning a client that keeps trying.
func NoRetryOnFailedConnect() Option {
	return func(o *options) error { o.retry = false; return nil }
}

// Client is one agency's connection to the broker. It is safe for
// concurrent use.
type Client struct {
	id   string
	nc   *nats.Conn
	js   jetstream.JetStream
	opts options

	closed    chan struct{}
	closeOnce sync.Once
	pullers   sync.WaitGroup

	mu    sync.Mutex
	want  map[string]bool // the senders of the last SetSenders
	inbox *pool           // envelopes: the consumers of INBOX_<id>
	files *pool           // attachment chunks: the consumers of FILES_<id>

	// Chunks travel on a connection of their own, opened on first use, so
	// that an envelope delivered or published never waits behind megabytes
	// of chunks in one socket.
	url   string
	nopts []nats.Option
	fmu   sync.Mutex
}

// pool is the per-sender pulling of one stream: the envelopes of the
// inbox, or the chunks of the file queue. The two are pulled apart, so a
// large transfer never holds up an envelope.
type pool struct {
	nc      *nats.Conn // the connection it pulls on
	js      jetstream.JetStream
	stream  string
	bufSize int           // messages pulled ahead per sender
	ready   chan struct{} // signalled when a sender's buffer gains a message
	senders map[string]*sender
	order   []*sender // by id; guarded by Client.mu
	next    int       // index in order of the sender served first
	active  bool      // pulling: from SetSenders on (inbox), from the first FetchChunks on (files)
}

func newPool(stream string, bufSize int) *pool {
	return &pool{stream: stream, bufSize: bufSize, ready: make(chan struct{}, 1), senders: map[string]*sender{}, active: true}
}

// Connect logs in to the broker at url (one URL or a comma-separated list)
// as agency id with its nkey seed (SU...). If the broker refuses the
// credentials, Connect fails with ErrAuth. If the broker cannot be reached,
// Connect returns a client that keeps trying in the background (see
// Connected and OnStatus), unless NoRetryOnFailedConnect is given. The seed
// is not kept beyond the key pair nats.go holds for signing.
func Connect(ctx context.Context, url, id string, seed []byte, opts ...Option) (*Client, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidAgency, id)
	}
	o := options{timeout: 10 * time.Second, maxReconnect: 10 * time.Second, retry: true, name: "rujukan-gateway-" + id}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("invalid nkey seed: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return nil, errors.New("invalid nkey seed: not a NATS user key")
	}
	c := &Client{id: id, opts: o, closed: make(chan struct{}),
		inbox: newPool(StreamName(id), SenderBuffer), files: newPool(FilesStreamName(id), ChunkBuffer)}
	c.files.active = false // until the first FetchChunks
	nopts := []nats.Option{
		nats.Name(o.name),
		nats.Nkey(pub, kp.Sign),
		nats.CustomInboxPrefix(InboxPrefix(id)),
		nats.MaxReconnects(-1),
		nats.ReconnectBufSize(-1), // never buffer publishes while disconnected
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			d := 100 * time.Millisecond << min(attempts, 7)
			d = min(d, o.maxReconnect)
			return d/2 + rand.N(d/2+1)
		}),
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.PermissionErrOnSubscribe(true),
		nats.ConnectHandler(func(*nats.Conn) { c.status(true) }),
		nats.ReconnectHandler(func(*nats.Conn) { c.status(true) }),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { c.status(false) }),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}),
	}
	if d, ok := ctx.Deadline(); ok {
		nopts = append(nopts, nats.Timeout(max(time.Until(d), time.Millisecond)))
	}
	if o.tls != nil {
		nopts = append(nopts, nats.Secure(o.tls))
	}
	nc, err := nats.Connect(url, nopts...)
	if err != nil {
		if isAuthError(err) {
			return nil, fmt.Errorf("%w: %v", ErrAuth, err)
		}
		if !o.retry {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		nc, err = nats.Connect(url, append(nopts, nats.RetryOnFailedConnect(true))...)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	js, err := c.jetStream(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	c.nc, c.js = nc, js
	c.inbox.nc, c.inbox.js = nc, js
	c.url = url
	c.nopts = append(nopts[:len(nopts):len(nopts)], nats.RetryOnFailedConnect(true))
	return c, nil
}

func (c *Client) jetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(c.opts.timeout), jetstream.WithPublishAsyncTimeout(c.opts.timeout))
	if err != nil {
		return nil, fmt.Errorf("failed to set up JetStream: %w", err)
	}
	return js, nil
}

// filesConn returns the connection chunks travel on, opening it the first
// time (it keeps trying in the background, as the first one does).
func (c *Client) filesConn() (*nats.Conn, jetstream.JetStream, error) {
	c.fmu.Lock()
	defer c.fmu.Unlock()
	if c.files.nc != nil {
		return c.files.nc, c.files.js, nil
	}
	select {
	case <-c.closed:
		return nil, nil, ErrClosed
	default:
	}
	opts := append(c.nopts[:len(c.nopts):len(c.nopts)], nats.Name(c.opts.name+"-files"),
		nats.ConnectHandler(nil), nats.ReconnectHandler(nil), nats.DisconnectErrHandler(nil))
	nc, err := nats.Connect(c.url, opts...)
	if err != nil {
		if isAuthError(err) {
			return nil, nil, fmt.Errorf("%w: %v", ErrAuth, err)
		}
		return nil, nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	js, err := c.jetStream(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	c.mu.Lock()
	c.files.nc, c.files.js = nc, js
	c.mu.Unlock()
	return nc, js, nil
}

// status reports the connection going up or down, but not its end when
// the client is being closed: that is no outage.
func (c *Client) status(up bool) {
	if c.opts.onStatus == nil {
		return
	}
	select {
	case <-c.closed:
		return
	default:
	}
	c.opts.onStatus(up)
}

func isAuthError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired) ||
		strings.Contains(strings.ToLower(err.Error()), "authorization violation")
}

// ID returns the agency id the client logged in as.
func (c *Client) ID() string { return c.id }

// Connected reports whether the client is connected to a broker now.
func (c *Client) Connected() bool { return c.nc != nil && c.nc.IsConnected() }

// ConnectedURL returns the URL of the broker the client is connected to, or
// "" when disconnected.
func (c *Client) ConnectedURL() string { return c.nc.ConnectedUrl() }

// Close closes the connection. It lets the pulls waiting at the broker
// end by themselves, for at most closeWait: a pull cut short in the client
// drops what the broker is handing it, held then until the ack wait, or
// longer (the back-off grows with each delivery). What was pulled
// ahead and not handed out is given back, so the broker redelivers it at
// once; messages fetched and not yet acknowledged are redelivered after
// the consumer's ack wait.
func (c *Client) Close() {
	c.closeOnce.Do(func() { close(c.closed) })
	done := make(chan struct{})
	go func() { c.pullers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeWait):
	}
	if c.nc != nil {
		c.nc.Close()
	}
	c.fmu.Lock()
	if c.files.nc != nil {
		c.files.nc.Close()
	}
	c.fmu.Unlock()
}

// Publish sends data to agency to as message msgID (the envelope id) and
// waits until the broker has stored it. A message the broker already holds
// under the same msgID is not stored again and Publish returns nil. When
// the broker is unreachable or does not confirm in time, the error wraps
// ErrUnavailable: the message may or may not have been stored, and
// publishing it again with the same msgID is safe.
func (c *Client) Publish(ctx context.Context, to, msgID string, data []byte) error {
	if !ValidID(to) {
		return fmt.Errorf("%w: recipient %q", ErrInvalidAgency, to)
	}
	if msgID == "" || len(msgID) > 256 || strings.ContainsAny(msgID, "\r\n") {
		return ErrInvalidMsgID
	}
	if len(data) > MaxMessageSize-1024 {
		return fmt.Errorf("%w: %d bytes", ErrTooLarge, len(data))
	}
	if c.nc.IsClosed() {
		return ErrClosed
	}
	if !c.nc.IsConnected() {
		return fmt.Errorf("%w: not connected", ErrUnavailable)
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	msg := &nats.Msg{Subject: Subject(to, c.id), Data: data, Header: nats.Header{}}
	_, err := c.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(StreamName(to)))
	if err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			return fmt.Errorf("%w: %v", ErrTooLarge, err)
		}
		if le := limitError(err); le != nil {
			return le
		}
		return fmt.Errorf("%w: publish to %s: %v", ErrUnavailable, to, err)
	}
	return nil
}

func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.opts.timeout)
}

// Per-sender pulling. Each sender has a consumer of its own on the inbox
// (ConsumerFor); the client keeps one pull at a time outstanding on each,
// for at most the room left in that sender's small buffer, and Fetch takes
// from the buffers in turn. One sender's backlog therefore never sits in
// front of another sender's envelope: it fills only its own buffer.
const (
	// SenderBuffer is how many messages the client holds, pulled and not
	// yet handed out by Fetch, per sender.
	SenderBuffer = 4
	// closeWait is how long Close waits for the pulls to end.
	closeWait = 2 * time.Second
	// pullWait is how long one pull waits at the broker for a message. A
	// short one is given up by the client when a busy broker answers late,
	// and what the broker then hands it waits out the ack wait.
	pullWait = 5 * time.Second
)

// sender is the pulling state of one sender's consumer.
type sender struct {
	id   string
	p    *pool
	buf  chan jetstream.Msg // pulled, not yet handed out; only pull adds
	room chan struct{}      // signalled when Fetch takes from buf
	stop chan struct{}
	// state is 0 until the first lookup or pull settles, then 1 while
	// pulling works and 2 while it fails (the broker refuses the lookup or
	// the pull, or the consumer is missing).
	state atomic.Int32
}

// SetSenders sets the agencies whose envelopes and attachment chunks the
// client pulls: one consumer per sender on the agency's inbox, and one on
// its file queue, provisioned by the broker for every agency in the
// directory (the file queue's from the first FetchChunks on, so a client
// that never asks for chunks pulls none ahead). The gateway calls it at
// start and after
// each directory reload with every agency of the directory (revoked ones
// included: their waiting envelopes are pulled and refused). Invalid ids
// are ignored. A sender left out stops being pulled; messages it had
// buffered are released for redelivery.
func (c *Client) SetSenders(ids []string) {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		if ValidID(id) {
			want[id] = true
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.want = want
	c.setSenders(c.inbox, want)
	c.setSenders(c.files, want)
}

// setSenders starts and stops pool p's pullers, if p is active, to pull
// from the senders in want.
func (c *Client) setSenders(p *pool, want map[string]bool) {
	if !p.active {
		return
	}
	for id, s := range p.senders {
		if !want[id] {
			close(s.stop)
			delete(p.senders, id)
		}
	}
	for id := range want {
		if p.senders[id] == nil {
			s := &sender{id: id, p: p, buf: make(chan jetstream.Msg, p.bufSize), room: make(chan struct{}, 1), stop: make(chan struct{})}
			p.senders[id] = s
			c.pullers.Add(1)
			go c.pull(s)
		}
	}
	p.order = p.order[:0]
	for id := range want {
		p.order = append(p.order, p.senders[id])
	}
	slices.SortFunc(p.order, func(a, b *sender) int { return strings.Compare(a.id, b.id) })
	p.next = 0
}

// pull keeps sender s's buffer filled from its consumer until s is
// stopped or the client closed.
func (c *Client) pull(s *sender) {
	defer c.pullers.Done()
	defer func() {
		// Release what Fetch will not hand out: the broker redelivers it.
		for {
			select {
			case m := <-s.buf:
				m.Nak()
			default:
				return
			}
		}
	}()
	var cons jetstream.Consumer
	backoff := 100 * time.Millisecond
	sleep := func(d time.Duration) bool {
		select {
		case <-time.After(d):
			return true
		case <-s.stop:
			return false
		case <-c.closed:
			return false
		}
	}
	pause := func() bool {
		d := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, 5*time.Second)
		return sleep(d)
	}
	for {
		select {
		case <-s.stop:
			return
		case <-c.closed:
			return
		default:
		}
		if !s.p.nc.IsConnected() {
			// Pull again soon after the connection is back.
			cons, backoff = nil, 100*time.Millisecond
			if !sleep(200 * time.Millisecond) {
				return
			}
			continue
		}
		if cons == nil {
			ctx, cancel := context.WithTimeout(context.Background(), c.opts.timeout)
			var err error
			cons, err = s.p.js.Consumer(ctx, s.p.stream, ConsumerFor(s.id))
			cancel()
			if err != nil {
				cons = nil
				s.state.Store(2)
				if !pause() {
					return
				}
				continue
			}
		}
		room := cap(s.buf) - len(s.buf)
		if room == 0 {
			select {
			case <-s.room:
			case <-s.stop:
				return
			case <-c.closed:
				return
			}
			continue
		}
		s.state.Store(1)
		batch, err := cons.Fetch(room, jetstream.FetchMaxWait(pullWait))
		if err != nil {
			cons = nil
			s.state.Store(2)
			if !pause() {
				return
			}
			continue
		}
		for m := range batch.Messages() {
			s.buf <- m // never blocks: only this goroutine adds, within room
			select {
			case s.p.ready <- struct{}{}:
			default:
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
			// The consumer may be gone or replaced: look it up again.
			cons = nil
			s.state.Store(2)
			if !pause() {
				return
			}
			continue
		}
		backoff = 100 * time.Millisecond
	}
}

// take hands out up to n buffered messages, one per sender in turn,
// starting after the sender served last.
func (c *Client) take(p *pool, n int) []*Msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Msg
	last := -1
	for len(out) < n {
		got := false
		for i := 0; i < len(p.order) && len(out) < n; i++ {
			k := (p.next + i) % len(p.order)
			s := p.order[k]
			select {
			case m := <-s.buf:
				out = append(out, &Msg{m: m, c: c})
				got, last = true, k
				select {
				case s.room <- struct{}{}:
				default:
				}
			default:
			}
		}
		if !got {
			break
		}
	}
	if last >= 0 {
		p.next = (last + 1) % len(p.order)
	}
	return out
}

// pullErr returns ErrUnavailable when pulling fails for every sender: the
// broker refuses the pulls or has no consumer for any of them.
func (c *Client) pullErr(p *pool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range p.order {
		if s.state.Load() != 2 {
			return nil
		}
	}
	return fmt.Errorf("%w: no sender's consumer on %s can be pulled", ErrUnavailable, p.stream)
}

// Fetch returns up to n messages (at most MaxFetch) from the agency's
// inbox, taken in turn from each sender's consumer (see SetSenders), so
// that one sender's backlog does not delay another sender's messages. It
// returns as soon as at least one message is there, or with an empty slice
// and a nil error after a few seconds (at most until ctx's deadline)
// without messages.
func (c *Client) Fetch(ctx context.Context, n int) ([]*Msg, error) {
	return c.fetch(ctx, c.inbox, n)
}

// fetch takes up to n messages from pool p's senders in turn.
func (c *Client) fetch(ctx context.Context, p *pool, n int) ([]*Msg, error) {
	if p.nc.IsClosed() {
		return nil, ErrClosed
	}
	n = min(MaxFetch, max(1, n))
	if !p.nc.IsConnected() {
		return nil, fmt.Errorf("%w: not connected", ErrUnavailable)
	}
	c.mu.Lock()
	none := len(p.order) == 0
	c.mu.Unlock()
	if none {
		return nil, fmt.Errorf("%w: no senders to pull from (SetSenders)", ErrUnavailable)
	}
	wait := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d)-50*time.Millisecond)
	}
	if wait < 10*time.Millisecond {
		return nil, ctx.Err()
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		if out := c.take(p, n); len(out) > 0 {
			// Wake another Fetch if more is waiting.
			select {
			case p.ready <- struct{}{}:
			default:
			}
			return out, nil
		}
		select {
		case <-p.ready:
		case <-timer.C:
			return nil, c.pullErr(p)
		case <-ctx.Done():
			return nil, c.pullErr(p)
		case <-c.closed:
			return nil, ErrClosed
		}
	}
}

// Consume pulls messages and calls handle for each, one at a time, until ctx
// is done. Broker outages are waited out with back-off. handle decides the
// fate of each message (AckSync, Nak or Term); a message it leaves alone is
// redelivered after the ack wait.
func (c *Client) Consume(ctx context.Context, handle func(*Msg)) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		msgs, err := c.Fetch(ctx, 16)
		if err != nil {
			if errors.Is(err, ErrClosed) {
				return err
			}
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		for _, m := range msgs {
			handle(m)
		}
	}
	return nil
}

// Msg is one message pulled from the agency's inbox.
type Msg struct {
	m jetstream.Msg
	c *Client
}

// Data returns the message body: the sealed envelope as sent.
func (m *Msg) Data() []byte { return m.m.Data() }

// Subject returns the message subject, rujukan.msg.<to>.<from>.
func (m *Msg) Subject() string { return m.m.Subject() }

// From returns the sender's agency id from the subject
// (rujukan.msg.<to>.<from> or rujukan.file.<to>.<from>), or "" if the
// subject is malformed (which the broker's permissions rule out).
func (m *Msg) From() string {
	subj := m.m.Subject()
	parse := ParseSubject
	if strings.HasPrefix(subj, FileSubjectPrefix) {
		parse = ParseFileSubject
	}
	_, from, err := parse(subj)
	if err != nil {
		return ""
	}
	return from
}

// Header returns the value of header key of the message ("" when absent):
// for an attachment chunk, crypto.HeaderAttachment, HeaderChunk and
// HeaderChunkMAC.
func (m *Msg) Header(key string) string { return m.m.Headers().Get(key) }

// MsgID returns the Nats-Msg-Id header (the envelope id the sender gave).
func (m *Msg) MsgID() string { return m.m.Headers().Get(nats.MsgIdHdr) }

// Delivered returns how many times the broker has delivered this message,
// 1 the first time.
func (m *Msg) Delivered() int {
	md, err := m.m.Metadata()
	if err != nil {
		return 0
	}
	return int(md.NumDelivered)
}

// AckSync tells the broker the message is safely stored and waits for the
// broker to confirm, after which it is removed from the inbox.
func (m *Msg) AckSync(ctx context.Context) error {
	ctx, cancel := m.c.withTimeout(ctx)
	defer cancel()
	if err := m.m.DoubleAck(ctx); err != nil {
		return fmt.Errorf("%w: ack: %v", ErrUnavailable, err)
	}
	return nil
}

// Nak asks the broker to redeliver the message after delay (a transient
// failure).
func (m *Msg) Nak(delay time.Duration) error {
	if err := m.m.NakWithDelay(delay); err != nil {
		return fmt.Errorf("%w: nak: %v", ErrUnavailable, err)
	}
	return nil
}

// Term tells the broker never to redeliver the message (a permanent
// failure, already audited by the caller).
func (m *Msg) Term() error {
	if err := m.m.Term(); err != nil {
		return fmt.Errorf("%w: term: %v", ErrUnavailable, err)
	}
	return nil
}
