package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/body"
	"github.com/rujukan/rujukan/agency-gateway/filetype"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
)

// Receiving files. The chunk loop fetches chunks from this agency's file
// queue, a batch at a time. A chunk is written only when the message that
// lists its file is stored here and its MAC (under a key derived from the
// file key in that message's sealed body) verifies for its index and
// length: a chunk replaced, cut or moved in flight is refused and counted
// before it touches the disk. Each chunk goes to its place in the file
// (offset index × chunk size), so copies and reordering do no harm. A batch
// is fsynced, then the chunks it holds are recorded in the store, then
// acknowledged: after a crash the broker delivers again only what was not
// recorded. Once every chunk is there the whole file is opened with its file
// key and its size and SHA-256 are checked against the sealed body; only
// then is it kept (renamed from .part) and, once every file of the message
// is, the delivered receipt sent.

// chunkFetch is how many chunks the loop takes at a time (4 MiB).
const chunkFetch = 8

// unknownChunkTries is how many times a chunk of a file this gateway has
// not heard of is put back (its envelope may still be on its way) before it
// is refused.
const unknownChunkTries = 120

// chunkState caches the file keys of files arriving.
type chunkState struct {
	mu   sync.Mutex
	keys map[string]fileEntry // from + "/" + aid
}

type fileEntry struct {
	key []byte
	att body.Attachment
}

// chunkLoop receives chunks until ctx ends.
func (g *Gateway) chunkLoop(ctx context.Context) {
	fb, ok := g.bus.(FileBus)
	if !ok {
		return
	}
	g.settleWhole()
	for ctx.Err() == nil {
		msgs, err := fb.FetchChunks(ctx, chunkFetch)
		if err != nil {
			if ctx.Err() == nil {
				wait(ctx, nil, time.Second)
			}
			continue
		}
		if len(msgs) > 0 {
			g.yieldToEnvelopes(ctx)
			g.receiveChunks(ctx, msgs)
		}
	}
}

// yieldToEnvelopes lets envelopes fetched meanwhile be stored first (for
// at most 100 ms): a referral does not wait behind a file's writes and
// fsyncs.
func (g *Gateway) yieldToEnvelopes(ctx context.Context) {
	for i := 0; i < 50 && g.inHand.Load() > 0 && ctx.Err() == nil; i++ {
		time.Sleep(2 * time.Millisecond)
	}
}

// pendingChunk is a chunk verified and written, to record and ack.
type pendingChunk struct {
	m     ChunkMsg
	from  string
	aid   string
	index int64
}

// receiveChunks handles one batch.
func (g *Gateway) receiveChunks(ctx context.Context, msgs []ChunkMsg) {
	now := g.now()
	files := map[string]*os.File{}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var written []pendingChunk
	for _, m := range msgs {
		from, aid := m.From(), m.Header(crypto.HeaderAttachment)
		tr, fe, err := g.arriving(from, aid)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if m.Delivered() >= unknownChunkTries {
				g.refuseChunk(m, ReasonAttachmentUnknown, now)
			} else {
				m.Nak(time.Second)
			}
			continue
		case err != nil:
			g.log.Warn("chunk: failed to look up its file; will retry", "from", from, "err", err)
			m.Nak(transientRetry)
			continue
		}
		if !tr.Done.IsZero() || tr.Failed != "" {
			m.Term() // a copy of a chunk of a file already settled
			continue
		}
		i, err := crypto.VerifyChunk(fe.key, aid, tr.SealedSize, m.Header(crypto.HeaderChunk), m.Header(crypto.HeaderChunkMAC), m.Data())
		if err != nil {
			g.refuseChunk(m, ReasonChunkInvalid, now)
			continue
		}
		if tr.Has(i) {
			m.Term() // already written and recorded
			if tr.Count == tr.Chunks {
				g.completeFile(tr) // a completion cut short
			}
			continue
		}
		k := from + "/" + aid
		f := files[k]
		if f == nil {
			if err := os.MkdirAll(filepath.Dir(g.partPath(from, aid)), 0o700); err != nil {
				g.log.Warn("chunk: cannot write", "err", err)
				m.Nak(transientRetry)
				continue
			}
			if f, err = os.OpenFile(g.partPath(from, aid), os.O_CREATE|os.O_WRONLY, 0o600); err != nil {
				g.log.Warn("chunk: cannot write", "err", err)
				m.Nak(transientRetry)
				continue
			}
			files[k] = f
		}
		if _, err := f.WriteAt(m.Data(), i*crypto.FileChunkSize); err != nil {
			g.log.Warn("chunk: cannot write", "err", err)
			m.Nak(transientRetry)
			continue
		}
		written = append(written, pendingChunk{m: m, from: from, aid: aid, index: i})
	}
	if len(written) == 0 {
		return
	}
	for k, f := range files {
		if err := f.Sync(); err != nil {
			g.log.Warn("chunk: fsync failed; will retry", "file", k, "err", err)
			for _, p := range written {
				p.m.Nak(transientRetry)
			}
			return
		}
	}
	var complete []*store.TransferIn
	err := g.db.Batch(func(tx *store.Tx) error {
		complete = complete[:0]
		seen := map[string]*store.TransferIn{}
		for _, p := range written {
			k := p.from + "/" + p.aid
			tr := seen[k]
			if tr == nil {
				var err error
				if tr, err = tx.TransferIn(p.from, p.aid); err != nil {
					return err
				}
				seen[k] = tr
			}
			tr.Set(p.index)
			tr.Since = now
		}
		for _, tr := range seen {
			if err := tx.PutTransferIn(tr); err != nil {
				return err
			}
			if tr.Count == crypto.FileChunks(tr.SealedSize) {
				complete = append(complete, tr)
			}
		}
		return nil
	})
	if err != nil {
		g.log.Warn("chunk: failed to record; will retry", "err", err)
		for _, p := range written {
			p.m.Nak(transientRetry)
		}
		return
	}
	var n int64
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	for _, p := range written {
		n += int64(len(p.m.Data()))
		p.m.AckSync(actx)
	}
	cancel()
	g.metricsAttachmentBytes("in", n)
	for _, tr := range complete {
		g.completeFile(tr)
	}
}

// settleWhole completes the files that hold every chunk but were neither
// kept nor failed: their completion was cut short by a crash or an error.
func (g *Gateway) settleWhole() {
	var trs []store.TransferIn
	if err := g.db.View(func(tx *store.Tx) (err error) { trs, err = tx.UnsettledTransfersIn(100); return err }); err != nil {
		g.log.Warn("failed to list files to complete", "err", err)
		return
	}
	for i := range trs {
		g.completeFile(&trs[i])
	}
}

// arriving returns the transfer of a file arriving from agency from and
// its file key (from the stored envelope that lists it).
func (g *Gateway) arriving(from, aid string) (*store.TransferIn, fileEntry, error) {
	var tr *store.TransferIn
	if err := g.db.View(func(tx *store.Tx) (err error) { tr, err = tx.TransferIn(from, aid); return err }); err != nil {
		return nil, fileEntry{}, err
	}
	k := from + "/" + aid
	g.chunks.mu.Lock()
	fe, ok := g.chunks.keys[k]
	g.chunks.mu.Unlock()
	if ok {
		return tr, fe, nil
	}
	b, err := g.envelopeBody(tr.Ref, true)
	if err != nil {
		return nil, fileEntry{}, err
	}
	for _, a := range filesOf(b) {
		if a.ID != aid {
			continue
		}
		key, err := base64.RawStdEncoding.DecodeString(a.Key)
		if err != nil || len(key) != crypto.FileKeySize {
			return nil, fileEntry{}, fmt.Errorf("attachment %s: bad file key", aid)
		}
		fe = fileEntry{key: key, att: a}
		g.chunks.mu.Lock()
		if g.chunks.keys == nil {
			g.chunks.keys = map[string]fileEntry{}
		}
		g.chunks.keys[k] = fe
		g.chunks.mu.Unlock()
		return tr, fe, nil
	}
	return nil, fileEntry{}, fmt.Errorf("attachment %s is not in envelope %s", aid, tr.Ref)
}

// refuseChunk terminates a chunk that can never be written and counts it
// in the sender's next refusal summary.
func (g *Gateway) refuseChunk(m ChunkMsg, reason string, now time.Time) {
	label := g.senderLabel(m.From())
	if g.refusals.count(label, reason, true, now, nil) {
		g.log.Warn("refusing file chunks: counted, and summarised in the audit log", "from", label, "reason", reason)
	}
	g.metrics.refused.WithLabelValues(g.self, label, reasonLabel(reason)).Inc()
	m.Term()
}

// completeFile checks a file whose chunks are all here against its sealed
// body, keeps it, and sends the message's delivered receipt once every file
// of the message is kept. A file that does not verify is removed and
// reported failed.
func (g *Gateway) completeFile(tr *store.TransferIn) {
	_, fe, err := g.arriving(tr.From, tr.ID)
	if err != nil {
		g.log.Warn("attachment: cannot check", "attachment", tr.ID, "err", err)
		return
	}
	part := g.partPath(tr.From, tr.ID)
	reason := ""
	if st, err := os.Lstat(g.inPath(tr.From, tr.ID)); err == nil && st.Mode().IsRegular() {
		// Kept before a crash cut the completion short.
	} else if err := g.verifyFile(part, fe); errors.Is(err, errFileInvalid) {
		g.log.Warn("attachment does not verify", "from", tr.From, "attachment", tr.ID, "err", err)
		reason = ReasonAttachmentInvalid
		os.Remove(part)
	} else if err != nil {
		g.log.Warn("attachment: cannot check now; will retry", "attachment", tr.ID, "err", err)
		return
	} else if err := os.Rename(part, g.inPath(tr.From, tr.ID)); err != nil {
		g.log.Warn("attachment: cannot keep; will retry", "attachment", tr.ID, "err", err)
		return
	}
	syncDir(filepath.Dir(part))
	now := g.now().UTC()
	err = g.db.Update(func(tx *store.Tx) error {
		cur, err := tx.TransferIn(tr.From, tr.ID)
		if err != nil {
			return err
		}
		if !cur.Done.IsZero() || cur.Failed != "" {
			return nil
		}
		outcome := "verified"
		if reason != "" {
			cur.Failed, outcome = reason, "refused"
		} else {
			cur.Done = now
		}
		if err := tx.PutTransferIn(cur); err != nil {
			return err
		}
		if err := tx.Audit(store.AuditEvent{At: now, Actor: g.self, Action: ActAttachmentReceive, Object: tr.ID, Outcome: outcome,
			Reason: reason, Detail: map[string]string{"sha256": fe.att.SHA256, "from": tr.From, "envelope": tr.Ref}}); err != nil {
			return err
		}
		return g.filesSettled(tx, cur, now)
	})
	if err != nil {
		g.log.Warn("attachment: failed to record", "attachment", tr.ID, "err", err)
		return
	}
	g.chunks.mu.Lock()
	delete(g.chunks.keys, tr.From+"/"+tr.ID)
	g.chunks.mu.Unlock()
	g.changed()
	g.poke()
}

// filesSettled sends the delivered receipt of a message once every file it
// lists is kept, or a rejected one when a file did not verify. It runs in
// the transaction that settles one file, so only the last one sends.
func (g *Gateway) filesSettled(tx *store.Tx, tr *store.TransferIn, now time.Time) error {
	all, err := tx.TransfersIn(tr.Ref)
	if err != nil {
		return err
	}
	failed := ""
	for _, o := range all {
		if o.Failed != "" {
			failed = o.Failed
		} else if o.Done.IsZero() {
			return nil
		}
	}
	sender, ok := g.state().dir.Agency(tr.From)
	if !ok {
		return nil
	}
	event := crypto.EventDelivered
	if failed != "" {
		event = crypto.EventRejected
	}
	var thread *crypto.ThreadKey
	if rec, err := tx.Record(tr.Record); err == nil && counterpart(rec) == sender.ID {
		if thread, err = g.threadOf(tx, rec); err != nil {
			return err
		}
	}
	s, err := g.receipt(sender, thread, tr.Ref, tr.EnvelopeHash, event, failed, now)
	if err != nil {
		return err
	}
	if err := queueReceipt(tx, s); err != nil {
		return err
	}
	_, err = tx.AddReceipt(tr.Ref, event, s.signed)
	return err
}

// errFileInvalid marks a file that arrived whole and is not what its
// sealed body says; any other error of verifyFile is worth another try.
var errFileInvalid = errors.New("the file is not what the sealed body says")

// verifyFile opens a sealed file whole with its file key and checks its
// size and SHA-256, and that its bytes are of its type and of a type this
// gateway accepts.
func (g *Gateway) verifyFile(path string, fe fileEntry) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != fe.att.SealedSize {
		return fmt.Errorf("%w: sealed file of %d bytes, not %d", errFileInvalid, st.Size(), fe.att.SealedSize)
	}
	r, err := crypto.OpenFileStream(f, fe.key)
	if err != nil {
		return fmt.Errorf("%w: %v", errFileInvalid, err)
	}
	h := sha256.New()
	head := &headWriter{max: filetype.HeadSize}
	n, err := io.Copy(io.MultiWriter(h, head), r)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return err // the disk, not the file
		}
		return fmt.Errorf("%w: %v", errFileInvalid, err)
	}
	if n != fe.att.Size {
		return fmt.Errorf("%w: %d bytes, not %d", errFileInvalid, n, fe.att.Size)
	}
	if hex.EncodeToString(h.Sum(nil)) != fe.att.SHA256 {
		return fmt.Errorf("%w: SHA-256 differs from the sealed body's", errFileInvalid)
	}
	if _, err := filetype.Check(head.b, fe.att.Type, g.cfg.Attachments.Types); err != nil {
		return fmt.Errorf("%w: %v", errFileInvalid, err)
	}
	return f.Sync()
}

// headWriter keeps the first max bytes written to it.
type headWriter struct {
	b   []byte
	max int
}

func (w *headWriter) Write(p []byte) (int, error) {
	if room := w.max - len(w.b); room > 0 {
		w.b = append(w.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
