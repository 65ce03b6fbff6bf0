package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rujukan/rujukan/crypto"
)

// A bundle carries several envelopes to one recipient in one broker
// message, as a group commit carries several writes in one fsync: under
// load, the envelopes waiting for the same recipient while a publish to it
// is on its way go together in the next one, and the broker stores,
// delivers and forgets them once. A lone envelope travels as itself. The
// bundle is framing only: every envelope in it is signed and sealed as it
// would be alone, and the recipient screens, opens and settles each on
// its own; the broker message is acknowledged once all of them are
// settled, and delivered again (all of it) if any of them asks to be. See
// docs/PROTOCOL.md §8.
//
// Wire: "RJKB", the version (1), the number of envelopes (2 to
// maxBundleParts), then each envelope as a 4-byte big-endian length and
// its bytes; nothing after the last. The whole is at most
// crypto.MaxEnvelopeSize, so a bundle fits where one envelope would.
const (
	bundleMagic    = "RJKB"
	bundleVersion  = 1
	bundleHeader   = len(bundleMagic) + 2
	bundlePartHead = 4
	// maxBundleParts bounds the envelopes of one broker message: a
	// sender's share of the recipient's inbox counts messages, so a bundle
	// multiplies it by at most this many envelopes (the inbox's byte
	// limits hold as they are).
	maxBundleParts = 16
)

var errBundle = errors.New("malformed bundle")

// isBundle says whether data is framed as a bundle (parseBundle still
// checks the rest).
func isBundle(data []byte) bool {
	return len(data) >= len(bundleMagic) && string(data[:len(bundleMagic)]) == bundleMagic
}

// bundleSize is the size of a bundle of envelopes of the given sizes.
func bundleSize(sizes ...int) int {
	n := bundleHeader
	for _, s := range sizes {
		n += bundlePartHead + s
	}
	return n
}

// encodeBundle frames envs (2 to maxBundleParts of them, their bundle at
// most crypto.MaxEnvelopeSize: the caller picks them so).
func encodeBundle(envs [][]byte) []byte {
	size := bundleHeader
	for _, e := range envs {
		size += bundlePartHead + len(e)
	}
	b := make([]byte, 0, size)
	b = append(b, bundleMagic...)
	b = append(b, bundleVersion, byte(len(envs)))
	for _, e := range envs {
		b = binary.BigEndian.AppendUint32(b, uint32(len(e)))
		b = append(b, e...)
	}
	return b
}

// parseBundle splits a bundle into its envelopes (sub-slices of data). It
// refuses any other version, fewer than two or more than maxBundleParts
// envelopes, an empty or truncated one, trailing bytes, and a bundle
// larger than crypto.MaxEnvelopeSize.
func parseBundle(data []byte) ([][]byte, error) {
	if len(data) > crypto.MaxEnvelopeSize || len(data) < bundleHeader || !isBundle(data) {
		return nil, errBundle
	}
	if data[len(bundleMagic)] != bundleVersion {
		return nil, errBundle
	}
	n := int(data[len(bundleMagic)+1])
	if n < 2 || n > maxBundleParts {
		return nil, errBundle
	}
	rest := data[bundleHeader:]
	parts := make([][]byte, 0, n)
	for range n {
		if len(rest) < bundlePartHead {
			return nil, errBundle
		}
		l := binary.BigEndian.Uint32(rest)
		rest = rest[bundlePartHead:]
		if l == 0 || uint64(l) > uint64(len(rest)) {
			return nil, errBundle
		}
		parts = append(parts, rest[:l:l])
		rest = rest[l:]
	}
	if len(rest) != 0 {
		return nil, errBundle
	}
	return parts, nil
}

// bundleID is the broker message id of a bundle: a hash of its envelopes'
// ids in order, so publishing the same bundle again (a crash between the
// broker's acknowledgement and the commit that records it) is dropped as a
// duplicate, and a bundle of other envelopes never is.
func bundleID(ids []string) string {
	h := sha256.New()
	for _, id := range ids {
		h.Write([]byte(id))
		h.Write([]byte{0})
	}
	return "bundle-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// unbundle gives the envelopes of the fetched messages, each as a Msg of
// its own: a bundle's parts share it (bundleMsg), anything else stands as
// fetched. A message framed as a bundle that does not parse is passed on
// whole, and screening refuses it as a malformed envelope.
func unbundle(msgs []Msg) []Msg {
	out := make([]Msg, 0, len(msgs))
	for _, m := range msgs {
		if !isBundle(m.Data()) {
			out = append(out, m)
			continue
		}
		parts, err := parseBundle(m.Data())
		if err != nil {
			out = append(out, m)
			continue
		}
		b := &bundleMsg{Msg: m, left: len(parts), inQ: len(parts)}
		for _, p := range parts {
			out = append(out, &bundlePart{b: b, data: p})
		}
	}
	return out
}

// bundleMsg is a fetched bundle whose envelopes are being settled one by
// one. The last to be settled settles the broker message: acked when every
// envelope was acked or terminated, delivered again (Nak, with the longest
// delay asked) when any envelope asked for that. A part already stored is
// a duplicate when the bundle comes again, and is told so.
type bundleMsg struct {
	Msg
	mu    sync.Mutex
	left  int           // parts not yet settled
	inQ   int           // parts not yet out of the receive queue (taken or let go)
	taken bool          // the bundle's bytes were charged to the receive queue
	acked bool          // some part was acked (else all were terminated)
	nak   bool          // some part asked to be delivered again
	delay time.Duration // the longest delay asked
}

// done records one part's settlement and reports whether it was the last.
func (b *bundleMsg) done(ack, nak bool, delay time.Duration) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.left--
	b.acked = b.acked || ack
	if nak {
		b.nak = true
		b.delay = max(b.delay, delay)
	}
	return b.left == 0
}

// settle settles the broker message once its last part is settled.
func (b *bundleMsg) settle(ctx context.Context) error {
	switch {
	case b.nak:
		return b.Msg.Nak(b.delay)
	case b.acked:
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
		}
		return b.Msg.AckSync(ctx)
	default:
		return b.Msg.Term()
	}
}

// bundlePart is one envelope of a bundle.
type bundlePart struct {
	b       *bundleMsg
	data    []byte
	settled atomic.Bool
}

// roomTaken is how many bytes of the receive queue's bound an envelope
// fetched takes: its size, and for a bundle, whose parts keep the whole
// broker message in memory, the bundle's size, charged to its first part.
func roomTaken(m Msg) int {
	return room(m, func(b *bundleMsg) bool {
		first := !b.taken
		b.taken = true
		return first
	})
}

// roomFreed is how many bytes an envelope gives back as it leaves the
// receive queue (taken by a worker, or let go): its size, and for a
// bundle's parts, the bundle's size once the last of them leaves.
func roomFreed(m Msg) int {
	return room(m, func(b *bundleMsg) bool {
		b.inQ--
		return b.inQ == 0
	})
}

// room is len(m.Data()) for a lone envelope; for a bundle's part, the
// bundle's size when whole (under the bundle's lock) says so, else 0.
func room(m Msg, whole func(*bundleMsg) bool) int {
	p, ok := m.(*bundlePart)
	if !ok {
		return len(m.Data())
	}
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	if whole(p.b) {
		return len(p.b.Msg.Data())
	}
	return 0
}

func (p *bundlePart) Data() []byte   { return p.data }
func (p *bundlePart) From() string   { return p.b.From() }
func (p *bundlePart) Delivered() int { return p.b.Delivered() }
func (p *bundlePart) Term() error    { return p.finish(context.Background(), false, false, 0) }
func (p *bundlePart) Nak(d time.Duration) error {
	return p.finish(context.Background(), false, true, d)
}

// AckSync waits for the broker only when this is the bundle's last part
// to be settled; the others return at once (the bundle is acked, or
// delivered again, when the last is settled).
func (p *bundlePart) AckSync(ctx context.Context) error { return p.finish(ctx, true, false, 0) }

func (p *bundlePart) finish(ctx context.Context, ack, nak bool, d time.Duration) error {
	if p.settled.Swap(true) {
		return nil // settled already: only the first settlement counts
	}
	if !p.b.done(ack, nak, d) {
		return nil
	}
	return p.b.settle(ctx)
}
