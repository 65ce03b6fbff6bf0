package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/rujukan/rujukan/crypto"
)

// Bus is the gateway's way to the broker: publish an envelope to another
// agency's inbox, fetch envelopes from its own. The broker client
// implements it over NATS JetStream; tests use an in-memory one.
type Bus interface {
	// Publish stores env in agency to's inbox under message id id and
	// returns once the broker has acknowledged it (fsynced). A second
	// publish of the same id is dropped by the broker. When the broker
	// cannot be reached the error wraps ErrUnavailable; when it refuses
	// the envelope for a limit, the error matches ErrLimit.
	Publish(ctx context.Context, to, id string, env []byte) error
	// Fetch waits briefly for up to max envelopes addressed to this agency.
	Fetch(ctx context.Context, max int) ([]Msg, error)
	// Connected reports whether the broker is reachable now.
	Connected() bool
}

// SenderSetter is implemented by a Bus that pulls each sender's envelopes
// from a queue of its own (the broker client: one consumer per sender on
// the inbox, served in turn). The gateway gives it every agency of the
// directory in force, revoked ones included, at start and after each
// reload.
type SenderSetter interface {
	SetSenders(ids []string)
}

// setSenders tells the bus, if it pulls per sender, the agencies of dir.
func (g *Gateway) setSenders(dir *crypto.Directory) {
	ss, ok := g.bus.(SenderSetter)
	if !ok {
		return
	}
	ids := make([]string, 0, len(dir.Agencies))
	for _, a := range dir.Agencies {
		ids = append(ids, a.ID)
	}
	ss.SetSenders(ids)
}

// Msg is one envelope fetched from the bus. Exactly one of AckSync, Nak
// and Term settles it.
type Msg interface {
	// Data is the envelope as published.
	Data() []byte
	// From is the sender as the broker authenticated it (the subject the
	// envelope was published on), whatever the envelope claims.
	From() string
	// Delivered counts deliveries of this message, 1 the first time.
	Delivered() int
	// AckSync tells the broker the envelope is stored and waits for its
	// confirmation: the broker forgets it.
	AckSync(ctx context.Context) error
	// Nak asks for the envelope again after delay (a transient failure).
	Nak(delay time.Duration) error
	// Term tells the broker never to deliver it again (a permanent
	// refusal, already audited).
	Term() error
}

// ErrUnavailable is wrapped by Bus errors when the broker cannot be
// reached: the envelope stays queued and nothing is lost.
var ErrUnavailable = errors.New("broker unavailable")

// ErrLimit is matched by Bus errors when the broker refused a publish
// because a limit is reached (the recipient's inbox is full, or this
// agency's share of it): the envelope stays queued and is published again
// later, once the recipient has read its inbox. A *LimitError says which
// limit.
var ErrLimit = errors.New("broker limit reached")

// Chunk is one piece of an attachment's sealed file on its way to another
// agency (crypto.FileChunkSize bytes, the last shorter), with the headers
// that say which file and which piece it is (crypto.HeaderAttachment,
// crypto.HeaderChunk, crypto.HeaderChunkMAC).
type Chunk struct {
	MsgID  string
	Header map[string]string
	Data   []byte
}

// FileBus carries attachment chunks: a queue per recipient beside its
// inbox, with per-sender shares of its own, so a large transfer never
// holds up envelopes. The broker client and membus implement it.
type FileBus interface {
	// PublishChunks stores chunks, in order, in agency to's file queue,
	// pipelined, and returns how many of them, from the first, the broker
	// acknowledged before the first error. A chunk the broker already
	// holds under the same MsgID counts as acknowledged. Errors wrap
	// ErrUnavailable or match ErrLimit as Publish's do.
	PublishChunks(ctx context.Context, to string, chunks []Chunk) (int, error)
	// FetchChunks waits briefly for up to max chunks addressed to this
	// agency, taking the senders in turn.
	FetchChunks(ctx context.Context, max int) ([]ChunkMsg, error)
}

// ChunkMsg is one chunk fetched from the FileBus; From is the sender the
// broker authenticated.
type ChunkMsg interface {
	Msg
	// Header returns the value of a chunk header ("" when absent).
	Header(key string) string
}
