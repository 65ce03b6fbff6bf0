package gateway_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// rawMsg is an envelope handed to Receive directly, as if fetched from
// sender from; settling it does nothing.
type rawMsg struct {
	data []byte
	from string
}

func (m *rawMsg) Data() []byte                  { return m.data }
func (m *rawMsg) From() string                  { return m.from }
func (m *rawMsg) Delivered() int                { return 1 }
func (m *rawMsg) AckSync(context.Context) error { return nil }
func (m *rawMsg) Nak(time.Duration) error       { return nil }
func (m *rawMsg) Term() error                   { return nil }

var _ gateway.Msg = (*rawMsg)(nil)

// cpuTime is the CPU time this process has used (user and system).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// receiveEach runs Receive on each message and reports the CPU time per
// envelope (cpu-ns/op) beside the wall time.
func receiveEach(b *testing.B, gw *gateway.Gateway, msgs func(i int) gateway.Msg) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime(b)
	for i := range b.N {
		gw.Receive(ctx, msgs(i))
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N), "cpu-ns/op")
}

// BenchmarkReceive measures what an incoming envelope costs the receiving
// gateway: refused before decryption (forged signature, a kind the rules
// never allow, a replayed id), refused after it (a body the rules refuse),
// against accepted (decrypted, checked, stored
// with its audit event and delivered receipt, one commit each). The
// accepted envelopes' delivered receipts are sealed and published by the
// receiving gateway within the measurement; the sender is stopped, so
// their handling there is not.
func BenchmarkReceive(b *testing.B) {
	c := mustCore(b)
	held := c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("police"))
	c.waitStatus("police", refRead, held.ID, "delivered")
	police := c.gws["police"]
	// Only the gateways at work run: their CPU time is what is measured.
	c.stop("dinsos")
	c.stop("shelter")

	b.Run("refused/bad-signature", func(b *testing.B) {
		env := c.seal("iom", "police", crypto.KindReferral, referral("police"))
		env[len(env)-1] ^= 1
		m := &rawMsg{env, "iom"}
		receiveEach(b, police, func(int) gateway.Msg { return m })
	})
	b.Run("refused/rules", func(b *testing.B) {
		m := &rawMsg{c.seal("iom", "police", crypto.KindStatementRequest, request("police", time.Now().Add(72*time.Hour))), "iom"}
		receiveEach(b, police, func(int) gateway.Msg { return m })
	})
	b.Run("refused/replay", func(b *testing.B) {
		m := &rawMsg{c.sealH("iom", "police", crypto.KindReferral, held.ID, c.clock.Now(), referral("police")), "iom"}
		receiveEach(b, police, func(int) gateway.Msg { return m })
	})
	b.Run("refused/after-decryption", func(b *testing.B) {
		// Referrals whose body the police refuse once they have decrypted
		// and parsed it (c.seal skips the sending gateway's checks): past
		// the sender's budget of refusals recorded one by one, they are
		// counted only.
		msgs := make([]gateway.Msg, b.N)
		for i := range msgs {
			msgs[i] = &rawMsg{c.seal("iom", "police", crypto.KindReferral, referral("police")), "iom"}
		}
		receiveEach(b, police, func(i int) gateway.Msg { return msgs[i] })
	})
	b.Run("accepted/referral", func(b *testing.B) {
		// Genuine referrals from IOM's gateway, taken from the police
		// inbox while the police gateway is stopped.
		c.stop("police")
		for range b.N {
			c.mustSend("iom", "referral", policy.ActionReferralSend, "", referral("police"))
		}
		var msgs []gateway.Msg
		bus := c.net.Bus("police")
		deadline := time.Now().Add(time.Minute)
		for len(msgs) < b.N && time.Now().Before(deadline) {
			got, err := bus.Fetch(context.Background(), 256)
			if err != nil {
				b.Fatal(err)
			}
			for _, m := range got {
				// Only the referrals: IOM's gateway sends its audit
				// checkpoints to be witnessed as well.
				if h, err := crypto.ParseHeader(m.Data()); err == nil && h.Kind == crypto.KindReferral {
					msgs = append(msgs, m)
				}
			}
		}
		if len(msgs) < b.N {
			b.Fatalf("%d referrals in the police inbox, want %d", len(msgs), b.N)
		}
		c.stop("iom")
		c.start("police")
		receiveEach(b, c.gws["police"], func(i int) gateway.Msg { return msgs[i] })
		c.start("iom")
		for _, m := range msgs {
			h, _ := crypto.ParseHeader(m.Data())
			if _, err := c.gws["police"].Item(c.staff("police"), refRead, h.ID); err != nil {
				b.Fatalf("referral %s not stored: %v", h.ID, err)
			}
		}
	})
}
