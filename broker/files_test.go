package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rujukan/rujukan/broker/client"
	"github.com/rujukan/rujukan/crypto"
)

// chunks returns n chunks of size bytes with message ids prefix-0, ... and
// the headers of an attachment chunk.
func chunks(prefix string, n, size int) []client.Chunk {
	out := make([]client.Chunk, n)
	for i := range out {
		data := bytes.Repeat([]byte{byte(i)}, size)
		out[i] = client.Chunk{
			MsgID: fmt.Sprintf("%s-%d", prefix, i),
			Header: map[string]string{
				crypto.HeaderAttachment: prefix,
				crypto.HeaderChunk:      fmt.Sprint(i),
				crypto.HeaderChunkMAC:   fmt.Sprintf("mac-%s-%d", prefix, i),
			},
			Data: data,
		}
	}
	return out
}

// fetchChunks pulls chunks until want have come or a few seconds pass
// without any.
func fetchChunks(t *testing.T, c *client.Client, want int) []*client.Msg {
	t.Helper()
	var got []*client.Msg
	for len(got) < want {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ms, err := c.FetchChunks(ctx, want-len(got))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			t.Fatalf("got %d of %d chunks", len(got), want)
		}
		got = append(got, ms...)
	}
	return got
}

// filesInfo returns the state of agency id's file queue.
func filesInfo(t *testing.T, s *Server, id string) *jetstream.StreamInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, client.FilesStreamName(id))
	if err != nil {
		t.Fatalf("file queue of %s: %v", id, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestFilesRoundTrip: chunks go through the file queue with their headers,
// a chunk published twice is stored once, and an acked chunk leaves the
// broker (work queue).
func TestFilesRoundTrip(t *testing.T) {
	n := newTestNet(t, "iom", "shelter", "police")
	s := mustStart(t, n.config(t))
	url := s.ClientURL()
	iom := mustConnect(t, url, n.Agencies["iom"])
	police := mustConnect(t, url, n.Agencies["police"])
	ctx := context.Background()

	info := filesInfo(t, s, "police")
	cfg := info.Config
	if cfg.Retention != jetstream.WorkQueuePolicy || cfg.Storage != jetstream.FileStorage || !cfg.DenyDelete || !cfg.DenyPurge ||
		cfg.Discard != jetstream.DiscardNew || !cfg.DiscardNewPerSubject || cfg.MaxBytes != 4<<30 ||
		cfg.MaxMsgsPerSubject != (2<<30)/crypto.FileChunkSize || cfg.MaxMsgSize < crypto.FileChunkSize ||
		!slices.Equal(cfg.Subjects, []string{"rujukan.file.police.*"}) || cfg.AllowDirect {
		t.Fatalf("file queue config: %+v", cfg)
	}

	cs := chunks("att1", 3, crypto.FileChunkSize)
	cs[2].Data = cs[2].Data[:1000] // the last chunk is shorter
	if k, err := iom.PublishChunks(ctx, "police", cs); k != 3 || err != nil {
		t.Fatalf("PublishChunks: %d, %v", k, err)
	}
	// A retry of the same chunks (and one more) stores only the new one.
	more := append(slices.Clone(cs), chunks("att2", 1, 10)...)
	if k, err := iom.PublishChunks(ctx, "police", more); k != 4 || err != nil {
		t.Fatalf("PublishChunks again: %d, %v", k, err)
	}
	if got := filesInfo(t, s, "police").State.Msgs; got != 4 {
		t.Fatalf("file queue holds %d chunks, want 4", got)
	}
	// Chunks are not envelopes: the inbox is empty.
	fctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	if ms, _ := police.Fetch(fctx, 10); len(ms) != 0 {
		t.Fatalf("Fetch returned %d chunks as envelopes", len(ms))
	}
	cancel()

	got := fetchChunks(t, police, 4)
	for i, m := range got {
		w := more[i]
		if m.From() != "iom" || m.MsgID() != w.MsgID || !bytes.Equal(m.Data(), w.Data) || m.Delivered() != 1 ||
			m.Subject() != client.FileSubject("police", "iom") {
			t.Fatalf("chunk %d: from %q id %q subject %s, %d bytes", i, m.From(), m.MsgID(), m.Subject(), len(m.Data()))
		}
		for k, v := range w.Header {
			if m.Header(k) != v {
				t.Fatalf("chunk %d: header %s = %q, want %q", i, k, m.Header(k), v)
			}
		}
		if m.Header("Absent") != "" {
			t.Fatal("an absent header has a value")
		}
		if err := m.AckSync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := filesInfo(t, s, "police").State.Msgs; got != 0 {
		t.Fatalf("file queue holds %d chunks after every ack, want none (work queue)", got)
	}

	// An invalid chunk fails before anything is sent.
	bad := chunks("att3", 2, 10)
	bad[1].MsgID = ""
	if k, err := iom.PublishChunks(ctx, "police", bad); k != 0 || !errors.Is(err, client.ErrInvalidMsgID) {
		t.Fatalf("invalid chunk: %d, %v", k, err)
	}
	big := chunks("att4", 1, client.MaxChunkMessage)
	if k, err := iom.PublishChunks(ctx, "police", big); k != 0 || !errors.Is(err, client.ErrTooLarge) {
		t.Fatalf("oversized chunk: %d, %v", k, err)
	}
	if got := filesInfo(t, s, "police").State.Msgs; got != 0 {
		t.Fatalf("file queue holds %d chunks after refused publishes", got)
	}
}

// TestFilesSenderShare: a sender over its share of a file queue gets a
// limit refusal after the chunks that fit, and another sender is still
// accepted; once the recipient reads, the first sender goes on.
func TestFilesSenderShare(t *testing.T) {
	n := newTestNet(t, "iom", "shelter", "police")
	n.setLimits("police", &crypto.Limits{FilesSenderMaxBytes: crypto.MinFilesBytes}) // 4 chunks
	s := mustStart(t, n.config(t))
	url := s.ClientURL()
	iom := mustConnect(t, url, n.Agencies["iom"])
	shelter := mustConnect(t, url, n.Agencies["shelter"])
	police := mustConnect(t, url, n.Agencies["police"])
	ctx := context.Background()

	cs := chunks("big", 6, crypto.FileChunkSize)
	k, err := iom.PublishChunks(ctx, "police", cs)
	var le *client.LimitError
	if k != 4 || !errors.Is(err, client.ErrLimit) || !errors.As(err, &le) || le.Reason != client.LimitSenderShare {
		t.Fatalf("over the share: %d acknowledged, %v; want 4 and a sender-share refusal", k, err)
	}
	if errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("a limit refusal reads as unavailable: %v", err)
	}
	if k, err := shelter.PublishChunks(ctx, "police", chunks("other", 2, 1000)); k != 2 || err != nil {
		t.Fatalf("another sender: %d, %v", k, err)
	}
	us, err := s.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		if u.Agency == "police" && (u.FileSenders["iom"] != 4 || u.FileSenders["shelter"] != 2 || !slices.Equal(u.FileSharesFull, []string{"iom"})) {
			t.Fatalf("usage of police's file queue: %+v", u)
		}
	}
	for _, m := range fetchChunks(t, police, 6) {
		if err := m.AckSync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if k, err := iom.PublishChunks(ctx, "police", cs[4:]); k != 2 || err != nil {
		t.Fatalf("after the recipient read: %d, %v", k, err)
	}
}

// TestFilesDoNotBlockEnvelopes: a large backlog of chunks, even from the
// same sender, does not delay an envelope: Fetch returns it at once.
func TestFilesDoNotBlockEnvelopes(t *testing.T) {
	n := newTestNet(t, "iom", "shelter", "police")
	s := mustStart(t, n.config(t))
	url := s.ClientURL()
	iom := mustConnect(t, url, n.Agencies["iom"])
	shelter := mustConnect(t, url, n.Agencies["shelter"])
	police := mustConnect(t, url, n.Agencies["police"])
	ctx := context.Background()
	const nChunks = 40 // 20 MiB
	if k, err := iom.PublishChunks(ctx, "police", chunks("big", nChunks, crypto.FileChunkSize)); k != nChunks || err != nil {
		t.Fatalf("PublishChunks: %d, %v", k, err)
	}
	if err := iom.Publish(ctx, "police", "env-iom", []byte("envelope from iom")); err != nil {
		t.Fatal(err)
	}
	if err := shelter.Publish(ctx, "police", "env-shelter", []byte("envelope from shelter")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var got []string
	for len(got) < 2 && time.Since(start) < 5*time.Second {
		fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ms, err := police.Fetch(fctx, 10)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			got = append(got, string(m.Data()))
			m.AckSync(ctx)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"envelope from iom", "envelope from shelter"}) {
		t.Fatalf("envelopes behind a file backlog: %q", got)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("envelopes took %v behind a file backlog", d)
	}
	// The chunks all come, in order, afterwards.
	for i, m := range fetchChunks(t, police, nChunks) {
		if m.MsgID() != fmt.Sprintf("big-%d", i) {
			t.Fatalf("chunk %d is %s", i, m.MsgID())
		}
		if err := m.AckSync(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFilesUpgrade: a broker whose inboxes predate file queues gets them at
// its next provisioning (a reload, as at start) without losing an
// envelope, and the file queue's limits follow the directory.
func TestFilesUpgrade(t *testing.T) {
	n := newTestNet(t, "iom", "police")
	s := mustStart(t, n.config(t))
	ctx := context.Background()
	if err := s.js.DeleteStream(ctx, client.FilesStreamName("police")); err != nil {
		t.Fatal(err)
	}
	iom := mustConnect(t, s.ClientURL(), n.Agencies["iom"])
	publishN(t, iom, "police", "old", 5, 100)
	n.Dir.Version = 2
	n.setLimits("police", &crypto.Limits{FilesMaxBytes: 1 << 30, FilesSenderMaxBytes: 256 << 20})
	if err := s.Reload(n.sign(t)); err != nil {
		t.Fatal(err)
	}
	info := filesInfo(t, s, "police")
	if info.Config.MaxBytes != 1<<30 || info.Config.MaxMsgsPerSubject != 512 {
		t.Fatalf("file queue limits after reload: %d bytes, %d per sender", info.Config.MaxBytes, info.Config.MaxMsgsPerSubject)
	}
	if got := inboxCount(t, s, "police"); got["iom"] != 5 {
		t.Fatalf("police inbox holds %v after the upgrade, want iom's 5", got)
	}
	police := mustConnect(t, s.ClientURL(), n.Agencies["police"])
	if k, err := iom.PublishChunks(ctx, "police", chunks("att", 2, 100)); k != 2 || err != nil {
		t.Fatalf("PublishChunks after the upgrade: %d, %v", k, err)
	}
	fetchChunks(t, police, 2)
}

// TestFilesShareLoweredKeepsChunks: lowering a sender's files share by
// reload drops none of the chunks it already holds; new ones are refused
// until the recipient has read them.
func TestFilesShareLoweredKeepsChunks(t *testing.T) {
	n := newTestNet(t, "iom", "police")
	s := mustStart(t, n.config(t))
	iom := mustConnect(t, s.ClientURL(), n.Agencies["iom"])
	ctx := context.Background()
	if k, err := iom.PublishChunks(ctx, "police", chunks("held", 6, 1000)); k != 6 || err != nil {
		t.Fatalf("PublishChunks: %d, %v", k, err)
	}
	n.Dir.Version = 2
	n.setLimits("police", &crypto.Limits{FilesSenderMaxBytes: crypto.MinFilesBytes})
	if err := s.Reload(n.sign(t)); err != nil {
		t.Fatal(err)
	}
	info := filesInfo(t, s, "police")
	if info.State.Msgs != 6 || info.Config.MaxMsgsPerSubject != 6 || !slices.Equal(info.Config.Subjects, []string{"rujukan.file.police.*"}) {
		t.Fatalf("after lowering the share: %d chunks, share %d, subjects %v", info.State.Msgs, info.Config.MaxMsgsPerSubject, info.Config.Subjects)
	}
	k, err := iom.PublishChunks(ctx, "police", chunks("new", 1, 1000))
	var le *client.LimitError
	if k != 0 || !errors.As(err, &le) || le.Reason != client.LimitSenderShare {
		t.Fatalf("over the held share: %d, %v", k, err)
	}
	police := mustConnect(t, s.ClientURL(), n.Agencies["police"])
	for _, m := range fetchChunks(t, police, 6) {
		if err := m.AckSync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	n.Dir.Version = 3
	if err := s.Reload(n.sign(t)); err != nil {
		t.Fatal(err)
	}
	if got := filesInfo(t, s, "police").Config.MaxMsgsPerSubject; got != 4 {
		t.Fatalf("share after the backlog was read: %d, want 4", got)
	}
}

// TestFilesCloseReleases: chunks pulled ahead and not handed out are
// released when the client closes, so the next connection gets them at
// once, not after the ack wait.
func TestFilesCloseReleases(t *testing.T) {
	n := newTestNet(t, "iom", "police")
	s := mustStart(t, n.config(t))
	url := s.ClientURL()
	iom := mustConnect(t, url, n.Agencies["iom"])
	ctx := context.Background()
	if k, err := iom.PublishChunks(ctx, "police", chunks("c", 3, 100)); k != 3 || err != nil {
		t.Fatalf("PublishChunks: %d, %v", k, err)
	}
	first := mustConnect(t, url, n.Agencies["police"])
	got := fetchChunks(t, first, 1)
	if err := got[0].AckSync(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the others are pulled ahead
	first.Close()
	second := mustConnect(t, url, n.Agencies["police"])
	start := time.Now()
	rest := fetchChunks(t, second, 2)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("released chunks came after %v", d)
	}
	for i, m := range rest {
		if m.MsgID() != fmt.Sprintf("c-%d", i+1) {
			t.Fatalf("chunk %d is %s", i, m.MsgID())
		}
	}
}
