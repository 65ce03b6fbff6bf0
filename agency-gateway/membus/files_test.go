package membus

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
)

func chunk(id string, data string) gateway.Chunk {
	return gateway.Chunk{MsgID: id, Header: map[string]string{"Rujukan-Chunk": id}, Data: []byte(data)}
}

func fetchAll(t *testing.T, b *Bus) []gateway.ChunkMsg {
	t.Helper()
	var out []gateway.ChunkMsg
	for {
		ms, err := b.FetchChunks(context.Background(), 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			return out
		}
		out = append(out, ms...)
	}
}

func TestChunksRoundTripDedupAndShare(t *testing.T) {
	n := New()
	a, b, c := n.Bus("a"), n.Bus("b"), n.Bus("c")
	ctx := context.Background()
	if k, err := a.PublishChunks(ctx, "b", []gateway.Chunk{chunk("a0", "x0"), chunk("a1", "x1"), chunk("a0", "again")}); k != 3 || err != nil {
		t.Fatalf("publish: %d, %v", k, err)
	}
	if k, err := c.PublishChunks(ctx, "b", []gateway.Chunk{chunk("c0", "y0")}); k != 1 || err != nil {
		t.Fatalf("publish: %d, %v", k, err)
	}
	got := fetchAll(t, b)
	if len(got) != 3 || n.PublishedChunks != 3 {
		t.Fatalf("got %d chunks, %d published", len(got), n.PublishedChunks)
	}
	// Senders in turn, each in order.
	if got[0].From() != "a" || got[1].From() != "c" || got[2].From() != "a" ||
		string(got[0].Data()) != "x0" || got[0].Header("Rujukan-Chunk") != "a0" || string(got[2].Data()) != "x1" {
		t.Fatalf("order or content: %v %v %v", got[0].From(), got[1].From(), got[2].From())
	}
	// Unacked chunks come back; acked ones do not.
	got[0].AckSync(ctx)
	got[1].Nak(0)
	n.RedeliverChunks("b")
	time.Sleep(10 * time.Millisecond)
	again := fetchAll(t, b)
	if len(again) != 2 || again[0].Delivered() != 2 || again[1].Delivered() != 2 {
		t.Fatalf("redelivered %d", len(again))
	}
	for _, m := range again {
		m.AckSync(ctx)
	}
	if n.ChunkLen("b") != 0 {
		t.Fatalf("%d chunks left", n.ChunkLen("b"))
	}

	n.SetChunkSenderLimit("b", 2)
	k, err := a.PublishChunks(ctx, "b", []gateway.Chunk{chunk("s0", "1"), chunk("s1", "2"), chunk("s2", "3")})
	if k != 2 || !errors.Is(err, gateway.ErrLimit) {
		t.Fatalf("over the share: %d, %v", k, err)
	}
	if k, err := c.PublishChunks(ctx, "b", []gateway.Chunk{chunk("c1", "4")}); k != 1 || err != nil {
		t.Fatalf("another sender: %d, %v", k, err)
	}
	n.SetDown(true)
	if k, err := a.PublishChunks(ctx, "b", []gateway.Chunk{chunk("d0", "1")}); k != 0 || !errors.Is(err, gateway.ErrUnavailable) {
		t.Fatalf("down: %d, %v", k, err)
	}
	if _, err := b.FetchChunks(ctx, 1); !errors.Is(err, gateway.ErrUnavailable) {
		t.Fatalf("fetch while down: %v", err)
	}
}

func TestChunkFilter(t *testing.T) {
	n := New()
	a, b := n.Bus("a"), n.Bus("b")
	var held []gateway.Chunk
	n.SetChunkFilter(func(to string, c gateway.Chunk) []gateway.Chunk {
		switch c.MsgID {
		case "drop":
			return nil
		case "dup":
			return []gateway.Chunk{c, c}
		case "swap":
			c.Data = []byte("tampered")
			return []gateway.Chunk{c}
		case "hold":
			held = append(held, c)
			return nil
		case "release":
			return append([]gateway.Chunk{c}, held...)
		}
		return []gateway.Chunk{c}
	})
	var in []gateway.Chunk
	for _, id := range []string{"drop", "dup", "swap", "hold", "release"} {
		in = append(in, chunk(id, id))
	}
	if k, err := a.PublishChunks(context.Background(), "b", in); k != len(in) || err != nil {
		t.Fatalf("publish: %d, %v", k, err)
	}
	var got string
	for _, m := range fetchAll(t, b) {
		got += fmt.Sprintf("%s:%s ", m.Header("Rujukan-Chunk"), m.Data())
	}
	if want := "dup:dup dup:dup swap:tampered release:release hold:hold "; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
