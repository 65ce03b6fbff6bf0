package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/crypto"
)

// TestAttachment1GiB sends a 1 GiB file from iom to the shelter, both
// gateways real processes whose memory is sampled every 100 ms, while
// dinsos sends the shelter an urgent referral every 100 ms. It checks the
// file the shelter serves, and reports the time from the start of the
// upload at iom until the file is available at the shelter, each
// gateway's peak memory, the urgent referrals' p99 with and without the
// transfer, and the throughput as a ratio to age encryption alone and to a
// bare JetStream transfer of the same bytes, measured in the same run.
func TestAttachment1GiB(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 1 GiB")
	}
	const size = 1 << 30
	n := newNetwork(t)
	// Every part a process of its own, as deployed: the broker's and the
	// gateways' work does not land in the measuring process.
	broker := n.spawnBroker()
	n.spawnGateway("iom")
	n.spawnGateway("shelter")
	clock := &outcomeClock{seen: map[string]time.Time{}}
	n.startGatewayWith("dinsos", n.config("dinsos"), gateway.Options{OnOutcome: clock.record})

	// The urgent referrals' latency without a transfer.
	quiet := urgentLatencies(t, n, clock, 30)

	ctx, stop := context.WithCancel(context.Background())
	peaks := sampleRSS(ctx, map[string]*exec.Cmd{"iom": n.procs["iom"], "shelter": n.procs["shelter"], "broker": broker})
	f := fileOf{size: size, seed: 1}
	start := time.Now()
	aid := upload(t, n.url("iom"), n.tokens["iom"], "application/pdf", "interview.pdf", f)["id"].(string)
	uploaded := time.Since(start)
	ref := sendWithFiles(t, n.url("iom"), n.tokens["iom"], "shelter", aid)
	busy := make(chan []time.Duration)
	go func() { busy <- urgentLatencies(t, n, clock, 100) }()
	eventually(t, "the file available at the shelter", 5*time.Minute, func() (bool, string) {
		a := attachmentsOf(t, n.url("shelter"), n.tokens["shelter"], ref)
		if len(a) == 0 {
			return false, "not listed"
		}
		return a[0]["state"] == "available", fmt.Sprint(a[0]["state"], " ", a[0]["received"])
	})
	took := time.Since(start)
	during := <-busy
	stop()
	eventually(t, "the delivered outcome at iom", 30*time.Second, func() (bool, string) {
		_, r := statusOf(t, n.url("iom"), n.tokens["iom"], ref)
		return r.str("outcome") == "delivered", r.str("status")
	})
	sum, got := downloadHash(t, n.url("shelter"), n.tokens["shelter"], ref, aid)
	if sum != f.sha256() || got != size {
		t.Fatalf("the shelter serves %d bytes with sha256 %s", got, sum)
	}

	ageAlone := timeAge(t, f)
	bare := timeBareJetStream(t, size)
	mibs := func(d time.Duration) float64 { return float64(size>>20) / d.Seconds() }
	t.Logf("1 GiB upload at iom to available at the shelter: %.1f s (upload %.1f s), %.0f MiB/s", took.Seconds(), uploaded.Seconds(), mibs(took))
	t.Logf("peak RSS: iom %d MiB, shelter %d MiB, broker %d MiB", peaks["iom"].v.Load()>>20, peaks["shelter"].v.Load()>>20, peaks["broker"].v.Load()>>20)
	t.Logf("age encryption alone: %.1f s (%.0f MiB/s); ratio %.2f", ageAlone.Seconds(), mibs(ageAlone), ageAlone.Seconds()/took.Seconds())
	t.Logf("bare JetStream transfer (512 KiB messages, file store, sync always): %.1f s (%.0f MiB/s); ratio %.2f",
		bare.Seconds(), mibs(bare), bare.Seconds()/took.Seconds())
	t.Logf("urgent referrals dinsos -> shelter: p50 %s p99 %s quiet (%d); p50 %s p99 %s during the transfer (%d)",
		percentile(quiet, 0.5), percentile(quiet, 0.99), len(quiet), percentile(during, 0.5), percentile(during, 0.99), len(during))
	for _, id := range []string{"iom", "shelter"} {
		if p := peaks[id]; p.v.Load() > 160<<20 {
			t.Errorf("%s's memory reached %d MiB", id, p.v.Load()>>20)
		}
	}
}

// urgentLatencies sends count urgent referrals from dinsos to the shelter,
// one every 100 ms, and returns the time from acceptance to delivered.
func urgentLatencies(t *testing.T, n *network, clock *outcomeClock, count int) []time.Duration {
	ids := make([]string, 0, count)
	sent := make([]time.Time, 0, count)
	for i := range count {
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		at := time.Now()
		r := n.api("dinsos").do(t, "POST", "/v1/referrals", sampleReferral("shelter"))
		if r.Status != 202 {
			t.Errorf("send: %d %s", r.Status, r.Raw)
			return nil
		}
		ids, sent = append(ids, r.str("id")), append(sent, at)
	}
	out := make([]time.Duration, 0, count)
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; i < len(ids); {
		if at, ok := clock.at(ids[i]); ok {
			out = append(out, at.Sub(sent[i]))
			i++
			continue
		}
		if time.Now().After(deadline) {
			t.Errorf("referral %s not delivered", ids[i])
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
	return out
}

// timeAge is how long age takes to seal the same bytes to a hybrid key.
func timeAge(t *testing.T, f fileOf) time.Duration {
	id, err := crypto.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	w, err := crypto.SealFile(io.Discard, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, f.reader()); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return time.Since(start)
}

// timeBareJetStream moves size bytes through a plain JetStream work-queue
// stream on disk (SyncAlways, as the broker runs) in 512 KiB messages, 8
// in flight, and takes them out as a consumer, acking each.
func timeBareJetStream(t *testing.T, size int64) time.Duration {
	dir := t.TempDir()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(dir, "js"),
		SyncAlways: true, MaxPayload: 1 << 20, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Shutdown()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("bare server not ready")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BARE", Subjects: []string{"bare"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, "BARE", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, crypto.FileChunkSize)
	total := int((size + crypto.FileChunkSize - 1) / crypto.FileChunkSize)
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		got := 0
		for got < total {
			batch, err := cons.Fetch(8, jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				done <- err
				return
			}
			for m := range batch.Messages() {
				m.Ack()
				got++
			}
			if batch.Error() != nil {
				done <- batch.Error()
				return
			}
		}
		done <- nil
	}()
	for i := 0; i < total; i += 8 {
		var futures []jetstream.PubAckFuture
		for j := i; j < min(total, i+8); j++ {
			f, err := js.PublishAsync("bare", chunk)
			if err != nil {
				t.Fatal(err)
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				t.Fatal(err)
			}
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(dir)
	return time.Since(start)
}
