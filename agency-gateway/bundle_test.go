package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/rujukan/rujukan/crypto"
)

func parts(n, size int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = bytes.Repeat([]byte{byte('a' + i)}, size)
	}
	return out
}

// A bundle parses back into its envelopes; anything else framed as one
// is refused.
func TestBundleFormat(t *testing.T) {
	for _, n := range []int{2, 3, maxBundleParts} {
		envs := parts(n, 10+n)
		b := encodeBundle(envs)
		if !isBundle(b) || len(b) != bundleSize(sizes(envs)...) {
			t.Fatalf("%d parts: bundle of %d bytes, want %d", n, len(b), bundleSize(sizes(envs)...))
		}
		got, err := parseBundle(b)
		if err != nil {
			t.Fatalf("%d parts: %v", n, err)
		}
		if len(got) != n {
			t.Fatalf("%d parts came back as %d", n, len(got))
		}
		for i := range got {
			if !bytes.Equal(got[i], envs[i]) {
				t.Fatalf("part %d changed", i)
			}
		}
	}
	good := encodeBundle(parts(3, 5))
	lenAt := bundleHeader // the first part's length
	bad := map[string][]byte{
		"empty":         nil,
		"magic only":    []byte(bundleMagic),
		"version 2":     append([]byte(bundleMagic), 2, 2),
		"one part":      encodeBundleUnchecked(parts(1, 5)),
		"too many":      encodeBundleUnchecked(parts(maxBundleParts+1, 5)),
		"empty part":    encodeBundleUnchecked([][]byte{[]byte("x"), {}}),
		"truncated":     good[:len(good)-1],
		"trailing":      append(append([]byte{}, good...), 0),
		"length past":   setUint32(good, lenAt, uint32(len(good))),
		"length huge":   setUint32(good, lenAt, 1<<31),
		"oversize":      encodeBundleUnchecked([][]byte{make([]byte, crypto.MaxEnvelopeSize/2), make([]byte, crypto.MaxEnvelopeSize/2)}),
		"no head":       good[:bundleHeader+2],
		"an envelope":   []byte("RJKE" + strings.Repeat("x", 40)),
		"count missing": []byte(bundleMagic + "\x01"),
	}
	for name, b := range bad {
		if _, err := parseBundle(b); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func sizes(envs [][]byte) []int {
	s := make([]int, len(envs))
	for i, e := range envs {
		s[i] = len(e)
	}
	return s
}

// encodeBundleUnchecked frames any number of parts, as a hostile sender
// could.
func encodeBundleUnchecked(envs [][]byte) []byte {
	b := append([]byte(bundleMagic), bundleVersion, byte(len(envs)))
	for _, e := range envs {
		b = binary.BigEndian.AppendUint32(b, uint32(len(e)))
		b = append(b, e...)
	}
	return b
}

func setUint32(b []byte, at int, v uint32) []byte {
	c := append([]byte{}, b...)
	binary.BigEndian.PutUint32(c[at:], v)
	return c
}

// FuzzBundle: parseBundle never panics, and what it accepts is a bundle
// it would write itself, of 2 to maxBundleParts non-empty envelopes.
func FuzzBundle(f *testing.F) {
	f.Add(encodeBundle(parts(2, 3)))
	f.Add(encodeBundle(parts(maxBundleParts, 1)))
	f.Add(encodeBundleUnchecked(parts(1, 4)))
	f.Add([]byte("RJKB\x01\x02\x00\x00\x00\x01a\x00\x00\x00\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := parseBundle(data)
		if err != nil {
			return
		}
		if len(ps) < 2 || len(ps) > maxBundleParts {
			t.Fatalf("%d parts accepted", len(ps))
		}
		for _, p := range ps {
			if len(p) == 0 {
				t.Fatal("empty part accepted")
			}
		}
		if !bytes.Equal(encodeBundle(ps), data) {
			t.Fatal("accepted bytes that are not the bundle of their parts")
		}
	})
}

// bundleCount takes as many envelopes as a bundle holds, by count and by
// size, and always at least one.
func TestBundleCount(t *testing.T) {
	big := crypto.MaxEnvelopeSize / 3
	cases := []struct {
		envs [][]byte
		want int
	}{
		{parts(1, 10), 1},
		{parts(5, 10), 5},
		{parts(maxBundleParts+3, 10), maxBundleParts},
		{parts(4, big), 2},
		{[][]byte{make([]byte, crypto.MaxEnvelopeSize), make([]byte, 10)}, 1},
		{[][]byte{make([]byte, 10), make([]byte, crypto.MaxEnvelopeSize)}, 1},
	}
	for i, c := range cases {
		if got := bundleCount(c.envs); got != c.want {
			t.Errorf("case %d: %d, want %d", i, got, c.want)
		}
		n := bundleCount(c.envs)
		if n > 1 && bundleSize(sizes(c.envs[:n])...) > crypto.MaxEnvelopeSize {
			t.Errorf("case %d: a bundle of %d bytes", i, bundleSize(sizes(c.envs[:n])...))
		}
	}
}

// fakeMsg records how it was settled.
type fakeMsg struct {
	data    []byte
	settled []string
	delay   time.Duration
}

func (m *fakeMsg) Data() []byte   { return m.data }
func (m *fakeMsg) From() string   { return "iom" }
func (m *fakeMsg) Delivered() int { return 1 }
func (m *fakeMsg) AckSync(context.Context) error {
	m.settled = append(m.settled, "ack")
	return nil
}
func (m *fakeMsg) Nak(d time.Duration) error {
	m.settled, m.delay = append(m.settled, "nak"), d
	return nil
}
func (m *fakeMsg) Term() error {
	m.settled = append(m.settled, "term")
	return nil
}

// The broker message of a bundle is settled once, when its last envelope
// is: acked if any envelope was stored and none asked to come again,
// delivered again (with the longest delay asked) if any did, terminated if
// all were refused or known.
func TestBundleSettlesOnce(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		settle func(ps []Msg)
		want   string
		delay  time.Duration
	}{
		{"all stored", func(ps []Msg) {
			for _, p := range ps {
				p.AckSync(ctx)
			}
		}, "ack", 0},
		{"one refused", func(ps []Msg) { ps[0].AckSync(ctx); ps[1].Term(); ps[2].AckSync(ctx) }, "ack", 0},
		{"all refused", func(ps []Msg) { ps[0].Term(); ps[1].Term(); ps[2].Term() }, "term", 0},
		{"one to retry", func(ps []Msg) { ps[0].Nak(time.Second); ps[1].AckSync(ctx); ps[2].Nak(3 * time.Second) }, "nak", 3 * time.Second},
	}
	for _, c := range cases {
		m := &fakeMsg{data: encodeBundle(parts(3, 4))}
		ps := unbundle([]Msg{m})
		if len(ps) != 3 {
			t.Fatalf("%s: %d parts", c.name, len(ps))
		}
		for i, p := range ps {
			if p.From() != "iom" || !bytes.Equal(p.Data(), parts(3, 4)[i]) {
				t.Fatalf("%s: part %d is not its envelope from its sender", c.name, i)
			}
		}
		c.settle(ps)
		if len(m.settled) != 1 || m.settled[0] != c.want || m.delay != c.delay {
			t.Errorf("%s: settled %v (delay %s), want %s (delay %s)", c.name, m.settled, m.delay, c.want, c.delay)
		}
	}
	// Not a bundle, or a malformed one: passed on whole.
	for _, data := range [][]byte{[]byte("RJKE..."), encodeBundleUnchecked(parts(1, 4))} {
		m := &fakeMsg{data: data}
		if ps := unbundle([]Msg{m}); len(ps) != 1 || ps[0] != Msg(m) {
			t.Errorf("%q was not passed on whole", data)
		}
	}
}

// The receive queue charges a bundle whole, from its first part's
// reservation until its last part leaves the queue (popped or let go):
// its parts keep the whole broker message in memory.
func TestBundleChargedWhole(t *testing.T) {
	q := newFairQueue(64, 64*crypto.MaxEnvelopeSize)
	ctx := context.Background()
	junk := make([]byte, 5000)
	m := &queuedMsg{from: "iom", data: encodeBundle([][]byte{junk, []byte("small"), []byte("small2")})}
	ps := unbundle([]Msg{m})
	for _, p := range ps {
		q.reserve(roomTaken(p))
	}
	if q.bytes != len(m.data) || q.n != 3 {
		t.Fatalf("holding %d bytes for %d envelopes, want the bundle's %d bytes for 3", q.bytes, q.n, len(m.data))
	}
	q.release(roomFreed(ps[0])) // the big part refused at screening
	if q.bytes != len(m.data) {
		t.Fatalf("%d bytes held after the first part left, want %d", q.bytes, len(m.data))
	}
	q.push(queued{m: ps[1], in: &Incoming{Env: ps[1].Data()}})
	q.push(queued{m: ps[2], in: &Incoming{Env: ps[2].Data()}})
	q.pop(ctx)
	if q.bytes != len(m.data) {
		t.Fatalf("%d bytes held with a part still queued, want %d", q.bytes, len(m.data))
	}
	q.pop(ctx)
	if q.bytes != 0 || q.n != 0 {
		t.Fatalf("%d bytes and %d envelopes held once every part left", q.bytes, q.n)
	}
	// A lone envelope is charged its own size.
	lone := &queuedMsg{from: "iom", data: []byte("RJKE...")}
	if roomTaken(lone) != len(lone.data) || roomFreed(lone) != len(lone.data) {
		t.Fatal("a lone envelope is not charged its size")
	}
}

// A part settled twice counts once: the second cannot ack the bundle while
// another part still asks for it again.
func TestBundlePartSettlesOnce(t *testing.T) {
	m := &fakeMsg{data: encodeBundle(parts(2, 4))}
	ps := unbundle([]Msg{m})
	ps[0].AckSync(context.Background())
	ps[0].AckSync(context.Background())
	if len(m.settled) != 0 {
		t.Fatalf("bundle settled %v with a part unsettled", m.settled)
	}
	ps[1].Nak(time.Second)
	if len(m.settled) != 1 || m.settled[0] != "nak" {
		t.Fatalf("bundle settled %v, want nak", m.settled)
	}
}
