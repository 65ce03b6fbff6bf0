package run

import (
	"context"
	"errors"
	"fmt"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/broker/client"
)

// natsBus carries attachment chunks too: it implements gateway.FileBus
// over the broker client's file queue.
var _ gateway.FileBus = natsBus{}

// PublishChunks implements gateway.FileBus.
func (b natsBus) PublishChunks(ctx context.Context, to string, chunks []gateway.Chunk) (int, error) {
	cs := make([]client.Chunk, len(chunks))
	for i, c := range chunks {
		cs[i] = client.Chunk(c)
	}
	n, err := b.c.PublishChunks(ctx, to, cs)
	return n, busErr(err)
}

// FetchChunks implements gateway.FileBus.
func (b natsBus) FetchChunks(ctx context.Context, max int) ([]gateway.ChunkMsg, error) {
	msgs, err := b.c.FetchChunks(ctx, max)
	out := make([]gateway.ChunkMsg, len(msgs))
	for i, m := range msgs {
		out[i] = m
	}
	return out, err
}

// busErr maps a broker client error to the gateway's, as Publish does.
func busErr(err error) error {
	if errors.Is(err, client.ErrUnavailable) {
		return fmt.Errorf("%w: %w", gateway.ErrUnavailable, err)
	}
	if le := (*client.LimitError)(nil); errors.As(err, &le) {
		return &gateway.LimitError{Reason: le.Reason, Err: err}
	}
	return err
}
