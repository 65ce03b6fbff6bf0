package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rujukan/rujukan/crypto"
)

// Attachment chunks travel through a file queue per agency, the stream
// FILES_<id>, beside its inbox: subject rujukan.file.<to>.<from> names the
// sender as for envelopes, each sender has a durable pull consumer of its
// own on it (ConsumerFor, the same names as on the inbox), and each sender
// a share of it of its own. The client pulls the chunks apart from the
// envelopes, with buffers of their own, so a large transfer never holds
// up an envelope.
const (
	// FileSubjectPrefix starts the subject of every attachment chunk:
	// rujukan.file.<to>.<from>.
	FileSubjectPrefix = "rujukan.file."
	// MaxChunkMessage is the largest chunk message a file queue stores
	// (data and headers): a chunk of crypto.FileChunkSize bytes and its
	// headers.
	MaxChunkMessage = crypto.FileChunkSize + 16<<10
	// ChunkBuffer is how many chunks the client holds, pulled and not yet
	// handed out by FetchChunks, per sender.
	ChunkBuffer = 2
	// ChunkWindow is how many chunks PublishChunks has sent and not yet
	// seen acknowledged at a time.
	ChunkWindow = 16
)

// FileSubject returns the subject of an attachment chunk from one agency
// to another.
func FileSubject(to, from string) string { return FileSubjectPrefix + to + "." + from }

// FilesStreamName returns the name of an agency's file queue stream.
func FilesStreamName(id string) string { return "FILES_" + id }

// ParseFileSubject splits rujukan.file.<to>.<from> into its two agency ids.
func ParseFileSubject(subject string) (to, from string, err error) {
	return parseSubject(FileSubjectPrefix, subject)
}

// Chunk is one attachment chunk to publish: its message id (stored once
// by the broker), its headers and its data.
type Chunk struct {
	MsgID  string
	Header map[string]string
	Data   []byte
}

func validMsgID(id string) bool {
	return id != "" && len(id) <= 256 && !strings.ContainsAny(id, "\r\n")
}

// check refuses a chunk the broker would refuse anyway: an invalid
// message id or header, or more than MaxChunkMessage with its headers.
func (ch *Chunk) check() error {
	if !validMsgID(ch.MsgID) {
		return ErrInvalidMsgID
	}
	n := len(ch.Data) + len(ch.MsgID) + 256 // the protocol's own headers
	for k, v := range ch.Header {
		if k == "" || strings.ContainsAny(k, ": \r\n") || strings.ContainsAny(v, "\r\n") {
			return fmt.Errorf("invalid chunk header %q", k)
		}
		n += len(k) + len(v) + 4
	}
	if n > MaxChunkMessage {
		return fmt.Errorf("%w: chunk of %d bytes with its headers", ErrTooLarge, n)
	}
	return nil
}

// PublishChunks stores chunks, in order, in agency to's file queue. It
// publishes them pipelined (at most ChunkWindow unacknowledged at a time)
// and returns how many of them, from the first, the broker acknowledged
// (stored on disk) before the first failure, with that failure. A chunk
// the broker already holds under the same MsgID counts as acknowledged
// and is not stored twice. A refusal for a limit (the queue is full, or
// this sender's share of it) is a *LimitError matching ErrLimit; a broker
// that cannot be reached or does not confirm in time gives an error
// wrapping ErrUnavailable. Chunks after the first failure may or may not
// have been stored; publishing them again under the same MsgIDs is safe.
// An invalid chunk fails the whole call before anything is sent.
func (c *Client) PublishChunks(ctx context.Context, to string, chunks []Chunk) (int, error) {
	if !ValidID(to) {
		return 0, fmt.Errorf("%w: recipient %q", ErrInvalidAgency, to)
	}
	for i := range chunks {
		if err := chunks[i].check(); err != nil {
			return 0, fmt.Errorf("chunk %d: %w", i, err)
		}
	}
	nc, js, err := c.filesConn()
	if err != nil {
		return 0, err
	}
	if nc.IsClosed() {
		return 0, ErrClosed
	}
	if !nc.IsConnected() {
		return 0, fmt.Errorf("%w: not connected", ErrUnavailable)
	}
	subject, stream := FileSubject(to, c.id), FilesStreamName(to)
	futs := make([]jetstream.PubAckFuture, 0, min(len(chunks), ChunkWindow))
	acked := 0 // chunks acknowledged, from the first
	// Each acknowledgement must come within the client's timeout of the
	// previous one (or of the start).
	timer := time.NewTimer(c.opts.timeout)
	defer timer.Stop()
	wait := func() error {
		f := futs[0]
		select {
		case <-f.Ok():
			futs = futs[1:]
			acked++
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
			timer.Reset(c.opts.timeout)
			return nil
		case err := <-f.Err():
			return c.chunkErr(to, acked, err)
		case <-timer.C:
			return fmt.Errorf("%w: publish chunk %d to %s: no acknowledgement in %v", ErrUnavailable, acked, to, c.opts.timeout)
		case <-ctx.Done():
			return fmt.Errorf("%w: publish chunk %d to %s: %v", ErrUnavailable, acked, to, ctx.Err())
		case <-c.closed:
			return ErrClosed
		}
	}
	for i := range chunks {
		for len(futs) >= ChunkWindow {
			if err := wait(); err != nil {
				return acked, err
			}
		}
		ch := &chunks[i]
		msg := &nats.Msg{Subject: subject, Data: ch.Data, Header: nats.Header{}}
		for k, v := range ch.Header {
			msg.Header.Set(k, v)
		}
		f, err := js.PublishMsgAsync(msg, jetstream.WithMsgID(ch.MsgID), jetstream.WithExpectStream(stream))
		if err != nil {
			// Nothing more is sent; what is in flight still counts.
			for len(futs) > 0 {
				if werr := wait(); werr != nil {
					return acked, werr
				}
			}
			return acked, c.chunkErr(to, acked, err)
		}
		futs = append(futs, f)
	}
	for len(futs) > 0 {
		if err := wait(); err != nil {
			return acked, err
		}
	}
	return acked, nil
}

// chunkErr maps the failure of chunk i to to as Publish maps its errors.
func (c *Client) chunkErr(to string, i int, err error) error {
	if errors.Is(err, nats.ErrMaxPayload) {
		return fmt.Errorf("%w: chunk %d: %v", ErrTooLarge, i, err)
	}
	if le := limitError(err); le != nil {
		return le
	}
	if c.files.nc != nil && c.files.nc.IsClosed() {
		return ErrClosed
	}
	return fmt.Errorf("%w: publish chunk %d to %s: %v", ErrUnavailable, i, to, err)
}

// FetchChunks returns up to n attachment chunks (at most MaxFetch) from
// the agency's file queue, taken in turn from each sender's consumer (see
// SetSenders). The chunks are pulled apart from the envelopes Fetch
// returns, from the first call on, at most ChunkBuffer ahead per sender. It returns as soon as at
// least one chunk is there, or with an empty slice and a nil error after a
// few seconds (at most until ctx's deadline) without chunks. Each chunk
// is settled as an envelope is: AckSync once it is stored, Nak or Term.
func (c *Client) FetchChunks(ctx context.Context, n int) ([]*Msg, error) {
	if _, _, err := c.filesConn(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if !c.files.active {
		c.files.active = true
		c.setSenders(c.files, c.want)
	}
	c.mu.Unlock()
	return c.fetch(ctx, c.files, n)
}
