package broker

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/rujukan/rujukan/broker/client"
	"github.com/rujukan/rujukan/crypto"
)

// Result is the outcome of a round-trip measurement: Messages messages of
// Size bytes, each published with an acknowledgement (fsync), pulled and
// acknowledged with AckSync, by Concurrency workers.
type Result struct {
	Messages    int
	Concurrency int
	Size        int
	Elapsed     time.Duration
}

// PerSecond returns the round trips per second.
func (r Result) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Messages) / r.Elapsed.Seconds()
}

func (r Result) String() string {
	return fmt.Sprintf("%d msgs of %d B, %d workers: %.0f msg/s", r.Messages, r.Size, r.Concurrency, r.PerSecond())
}

// Bench agency ids.
const (
	benchSender    = "bench-sender"
	benchRecipient = "bench-recipient"
)

// roundTripEnv is a throwaway broker and connected workers.
type roundTripEnv struct {
	close   func()
	senders []*client.Client
	rx      []*client.Client
}

func (e *roundTripEnv) Close() {
	for _, c := range append(e.senders, e.rx...) {
		c.Close()
	}
	e.close()
}

// run performs n round trips with one worker per sender connection.
func (e *roundTripEnv) run(ctx context.Context, n, size int) (Result, error) {
	data := make([]byte, size)
	rand.Read(data)
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	fail := func(err error) {
		errMu.Lock()
		if first == nil {
			first = err
		}
		errMu.Unlock()
	}
	prefix := fmt.Sprintf("%x-", time.Now().UnixNano())
	start := time.Now()
	for w := range e.senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tx, rx := e.senders[w], e.rx[w]
			for {
				i := next.Add(1)
				if i > int64(n) || ctx.Err() != nil {
					return
				}
				if err := tx.Publish(ctx, benchRecipient, fmt.Sprintf("%s%d", prefix, i), data); err != nil {
					fail(err)
					return
				}
				for got := 0; got == 0; {
					msgs, err := rx.Fetch(ctx, 1)
					if err != nil {
						fail(err)
						return
					}
					for _, m := range msgs {
						if err := m.AckSync(ctx); err != nil {
							fail(err)
							return
						}
						got++
					}
				}
			}
		}()
	}
	wg.Wait()
	r := Result{Messages: n, Concurrency: len(e.senders), Size: size, Elapsed: time.Since(start)}
	if first != nil {
		return r, first
	}
	return r, ctx.Err()
}

// connectWorkers connects concurrency sender clients and one receiver
// client that every worker fetches from, as a gateway does. (A receiver
// per worker would strand a message pulled ahead into the buffer of a
// worker that has finished.)
func connectWorkers(ctx context.Context, url string, concurrency int, txSeed, rxSeed []byte) (*roundTripEnv, error) {
	e := &roundTripEnv{close: func() {}}
	rx, err := client.Connect(ctx, url, benchRecipient, rxSeed, client.NoRetryOnFailedConnect())
	if err != nil {
		return nil, err
	}
	rx.SetSenders([]string{benchSender})
	for range concurrency {
		e.rx = append(e.rx, rx)
		tx, err := client.Connect(ctx, url, benchSender, txSeed, client.NoRetryOnFailedConnect())
		if err != nil {
			e.Close()
			return nil, err
		}
		e.senders = append(e.senders, tx)
	}
	return e, nil
}

// newProvisionedEnv starts a broker provisioned from a generated directory
// with two agencies, in a temporary directory.
func newProvisionedEnv(ctx context.Context, concurrency int) (*roundTripEnv, error) {
	dir, err := os.MkdirTemp("", "rujukan-bench-")
	if err != nil {
		return nil, err
	}
	authPub, authPriv, _ := ed25519.GenerateKey(nil)
	d := crypto.Directory{Version: 1, Network: "bench", IssuedAt: time.Now().UTC().Truncate(time.Second)}
	seeds := map[string][]byte{}
	for _, a := range []string{benchSender, benchRecipient} {
		nk, err := NewNATSKey()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		// The broker does not use these two, but a key belongs to one agency.
		id, err := crypto.GenerateIdentity()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		sigPub, _, _ := ed25519.GenerateKey(nil)
		seeds[a] = nk.Seed
		d.Agencies = append(d.Agencies, crypto.Agency{ID: a, Kind: "bench", Name: a, Status: crypto.StatusActive,
			Keys: []crypto.PublicKey{
				crypto.NewPublicKey(crypto.UseEncrypt, id.Recipient()),
				crypto.NewPublicKey(crypto.UseSign, base64.StdEncoding.EncodeToString(sigPub)),
				crypto.NewPublicKey(crypto.UseNATS, nk.Public),
			}})
	}
	signed, err := crypto.SignDirectory(&d, authPriv)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:-1"
	cfg.DataDir = dir
	cfg.Directory = signed
	cfg.Authority = authPub
	cfg.Logger = slog.New(slog.DiscardHandler)
	s, err := New(cfg)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	e, err := connectWorkers(ctx, s.ClientURL(), concurrency, seeds[benchSender], seeds[benchRecipient])
	if err != nil {
		s.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	e.close = func() { s.Close(); os.RemoveAll(dir) }
	return e, nil
}

// newBareEnv starts a plain embedded JetStream server with the same
// durability (SyncAlways) but one unrestricted user, no permissions and a stream and
// consumer with default settings: the baseline the provisioned broker is
// compared with.
func newBareEnv(ctx context.Context, concurrency int) (*roundTripEnv, error) {
	dir, err := os.MkdirTemp("", "rujukan-bench-bare-")
	if err != nil {
		return nil, err
	}
	// One nkey user with no permissions at all: the client logs in the
	// same way (a per-connection cost), but nothing is checked per message.
	nk, err := NewNATSKey()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	seed, pub := nk.Seed, nk.Public
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: dir, SyncAlways: true,
		Nkeys: []*server.NkeyUser{{Nkey: pub}},
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	ns.Start()
	stop := func() { ns.Shutdown(); ns.WaitForShutdown(); os.RemoveAll(dir) }
	if !ns.ReadyForConnections(10 * time.Second) {
		stop()
		return nil, errors.New("bare server not ready")
	}
	kp, _ := nkeys.FromSeed(seed)
	nc, err := nats.Connect(ns.ClientURL(), nats.Nkey(pub, kp.Sign))
	if err != nil {
		stop()
		return nil, err
	}
	js, _ := jetstream.New(nc)
	stream := client.StreamName(benchRecipient)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name: stream, Subjects: []string{client.SubjectPrefix + benchRecipient + ".*"},
		Storage: jetstream.FileStorage, Retention: jetstream.WorkQueuePolicy,
	})
	if err == nil {
		_, err = js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
			Durable: client.ConsumerFor(benchSender), FilterSubject: client.Subject(benchRecipient, benchSender), AckPolicy: jetstream.AckExplicitPolicy})
	}
	nc.Close()
	if err != nil {
		stop()
		return nil, err
	}
	e, err := connectWorkers(ctx, ns.ClientURL(), concurrency, seed, seed)
	if err != nil {
		stop()
		return nil, err
	}
	e.close = stop
	return e, nil
}

// Bare is a throwaway embedded JetStream server with no provisioning (no
// users, no permissions, a default stream and consumer) and its connected
// workers, for measurements repeated on the same server.
type Bare struct{ e *roundTripEnv }

// StartBare starts a bare server with concurrency workers.
func StartBare(ctx context.Context, concurrency int) (*Bare, error) {
	e, err := newBareEnv(ctx, concurrency)
	if err != nil {
		return nil, err
	}
	return &Bare{e}, nil
}

// RoundTrips measures n round trips (acked publish with fsync, pull,
// AckSync) of size-byte messages.
func (b *Bare) RoundTrips(ctx context.Context, n, size int) (Result, error) {
	return b.e.run(ctx, n, size)
}

// Close stops the server and removes its files.
func (b *Bare) Close() { b.e.Close() }

// BareRoundTrip measures n round trips (acked publish with fsync, pull,
// AckSync) of size-byte messages with concurrency workers on a throwaway
// Bare server. It is the baseline for ProvisionedRoundTrip.
func BareRoundTrip(ctx context.Context, n, concurrency, size int) (Result, error) {
	b, err := StartBare(ctx, concurrency)
	if err != nil {
		return Result{}, err
	}
	defer b.Close()
	return b.RoundTrips(ctx, n, size)
}

// ProvisionedRoundTrip measures the same round trips as BareRoundTrip
// through a throwaway broker provisioned from a generated directory: agency
// users with their permissions, the provisioned inbox and consumer.
func ProvisionedRoundTrip(ctx context.Context, n, concurrency, size int) (Result, error) {
	e, err := newProvisionedEnv(ctx, concurrency)
	if err != nil {
		return Result{}, err
	}
	defer e.Close()
	return e.run(ctx, n, size)
}

// CompareRoundTrip measures n round trips on the bare baseline and n on a
// provisioned broker, alternating chunks of each so that load from
// elsewhere on the machine hits both alike.
func CompareRoundTrip(ctx context.Context, n, concurrency, size int) (bare, provisioned Result, err error) {
	be, err := newBareEnv(ctx, concurrency)
	if err != nil {
		return bare, provisioned, err
	}
	defer be.Close()
	pe, err := newProvisionedEnv(ctx, concurrency)
	if err != nil {
		return bare, provisioned, err
	}
	defer pe.Close()
	bare = Result{Concurrency: concurrency, Size: size}
	provisioned = bare
	const chunk = 100
	for done := 0; done < n; done += chunk {
		k := min(chunk, n-done)
		for _, x := range []struct {
			e *roundTripEnv
			r *Result
		}{{be, &bare}, {pe, &provisioned}} {
			r, err := x.e.run(ctx, k, size)
			if err != nil {
				return bare, provisioned, err
			}
			x.r.Messages += r.Messages
			x.r.Elapsed += r.Elapsed
		}
	}
	return bare, provisioned, nil
}
