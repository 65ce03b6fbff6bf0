package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// Sending files. Once the envelope that lists a file is published, the
// transfer loop reads the sealed file in chunks (crypto.FileChunkSize) and
// publishes them to the recipient's file queue, a batch at a time, and
// records after each batch how far the broker has acknowledged. After a
// crash it goes on from there: chunks published again carry the same
// message ids, which the broker drops as duplicates, and the recipient
// keeps each chunk once. Transfers take turns a batch at a time, so one
// large file does not hold up another; a recipient whose share of the
// broker is full is left alone for a while, the others are served.

// chunkBatch is how many chunks are published and acknowledged together
// (4 MiB): the memory one transfer holds, and the progress lost at most
// to a crash.
const chunkBatch = 8

// transferState is the sending side's state between batches.
type transferState struct {
	mu      sync.Mutex
	keys    map[string][]byte    // attachment id -> file key
	backoff map[string]time.Time // recipient -> not before
	delay   map[string]time.Duration
	wake    chan struct{}
}

func (g *Gateway) pokeTransfers() {
	select {
	case g.transfers.wake <- struct{}{}:
	default:
	}
}

// transferLoop publishes the chunks of every file whose envelope has left.
func (g *Gateway) transferLoop(ctx context.Context) {
	fb, ok := g.bus.(FileBus)
	if !ok {
		return
	}
	for ctx.Err() == nil {
		busy, err := g.transferRound(ctx, fb)
		if err != nil && ctx.Err() == nil {
			g.log.Warn("file transfer", "err", err)
		}
		if !busy {
			wait(ctx, g.transfers.wake, time.Second)
		}
	}
}

// transferRound sends one batch of every transfer that can go now and
// reports whether any chunk was published.
func (g *Gateway) transferRound(ctx context.Context, fb FileBus) (bool, error) {
	var trs []store.TransferOut
	if err := g.db.View(func(tx *store.Tx) (err error) { trs, err = tx.TransfersOut(); return err }); err != nil {
		return false, err
	}
	busy := false
	for i := range trs {
		tr := &trs[i]
		if ctx.Err() != nil {
			return busy, nil
		}
		if g.transferHeld(tr.To) {
			continue
		}
		ready, drop, err := g.transferReady(tr)
		if err != nil {
			return busy, err
		}
		if drop {
			g.dropTransfer(tr)
			continue
		}
		if !ready {
			continue
		}
		if !tr.Finished.IsZero() {
			g.maybeResend(tr)
			continue
		}
		n, err := g.sendBatch(ctx, fb, tr)
		if n > 0 {
			busy = true
		}
		switch {
		case errors.Is(err, ErrLimit):
			g.holdTransfers(tr.To)
		case errors.Is(err, ErrUnavailable):
			return busy, err
		case errors.Is(err, os.ErrNotExist):
			g.lostTransfer(tr)
		case err != nil:
			// One transfer's trouble (a read error) does not hold up the
			// others: it is tried again next round.
			g.log.Warn("file transfer failed; will retry", "to", tr.To, "attachment", tr.ID, "err", err)
		default:
			g.releaseTransfers(tr.To)
		}
	}
	return busy, nil
}

// transferReady says whether a transfer's envelope has left (ready) or
// will never leave, its record having failed or been withdrawn, or whether
// the recipient has answered for it (drop).
func (g *Gateway) transferReady(tr *store.TransferOut) (ready, drop bool, err error) {
	err = g.db.View(func(tx *store.Tx) error {
		if _, queued := tx.QueuedEnvelope(tr.Ref); queued {
			return nil
		}
		if tx.HasReceipt(tr.Ref, crypto.EventDelivered) || tx.HasReceipt(tr.Ref, crypto.EventRejected) {
			drop = true
			return nil
		}
		ref := tx.Link(tr.Ref)
		if ref == "" {
			ref = tr.Ref
		}
		rec, err := tx.Record(ref)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				drop = true
				return nil
			}
			return err
		}
		if rec.Outcome == "failed" || rec.Status == policy.RefWithdrawn {
			drop = true
			return nil
		}
		ready = true
		return nil
	})
	return ready, drop, err
}

// lostTransfer gives up a transfer whose sealed file is gone (removed by
// hand, or a disk fault): it is audited, and the recipient's missing
// receipt lets the record fail at its deadline.
func (g *Gateway) lostTransfer(tr *store.TransferOut) {
	g.log.Error("the sealed file of a transfer is missing; giving it up", "to", tr.To, "attachment", tr.ID)
	err := g.db.Update(func(tx *store.Tx) error {
		if err := tx.DeleteTransferOut(tr.To, tr.ID); err != nil {
			return err
		}
		return tx.Audit(store.AuditEvent{At: g.now().UTC(), Actor: g.self, Action: ActAttachmentSend, Object: tr.ID,
			Outcome: "failed", Reason: "file-missing", Detail: map[string]string{"to": tr.To, "envelope": tr.Ref}})
	})
	if err != nil {
		g.log.Warn("failed to give up a transfer", "attachment", tr.ID, "err", err)
	}
}

func (g *Gateway) dropTransfer(tr *store.TransferOut) {
	g.transfers.mu.Lock()
	delete(g.transfers.keys, tr.ID)
	g.transfers.mu.Unlock()
	if err := g.db.Update(func(tx *store.Tx) error { return tx.DeleteTransferOut(tr.To, tr.ID) }); err != nil {
		g.log.Warn("failed to drop a transfer", "attachment", tr.ID, "err", err)
	}
}

// sendBatch publishes the next chunks of a transfer and records how far
// the broker acknowledged them.
func (g *Gateway) sendBatch(ctx context.Context, fb FileBus, tr *store.TransferOut) (int, error) {
	total := crypto.FileChunks(tr.SealedSize)
	if tr.Next >= total {
		return 0, g.finishTransfer(tr)
	}

	key, err := g.transferKey(tr.ID)
	if err != nil {
		return 0, err
	}
	f, err := os.Open(g.ownPath(tr.ID))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var chunks []Chunk
	for i := tr.Next; i < min(total, tr.Next+chunkBatch); i++ {
		size := min(int64(crypto.FileChunkSize), tr.SealedSize-i*crypto.FileChunkSize)
		data := make([]byte, size)
		if _, err := f.ReadAt(data, i*crypto.FileChunkSize); err != nil && !(errors.Is(err, io.EOF) && int64(len(data)) == size) {
			return 0, fmt.Errorf("attachment %s chunk %d: %w", tr.ID, i, err)
		}
		mac, err := crypto.ChunkMAC(key, tr.ID, tr.SealedSize, i, data)
		if err != nil {
			return 0, err
		}
		chunks = append(chunks, Chunk{
			MsgID: tr.ID + "." + strconv.FormatInt(i, 10) + "." + strconv.Itoa(tr.Round),
			Header: map[string]string{crypto.HeaderAttachment: tr.ID, crypto.HeaderChunk: strconv.FormatInt(i, 10),
				crypto.HeaderChunkMAC: mac},
			Data: data})
	}
	n, perr := fb.PublishChunks(ctx, tr.To, chunks)
	if n > 0 {
		tr.Next += int64(n)
		err := g.db.Batch(func(tx *store.Tx) error {
			cur, err := tx.TransferOut(tr.To, tr.ID)
			if err != nil {
				return err
			}
			if cur.Round != tr.Round {
				return nil // a resend started meanwhile
			}
			cur.Next = max(cur.Next, tr.Next)
			return tx.PutTransferOut(cur)
		})
		if err != nil {
			return n, err
		}
		g.metricsAttachmentBytes("out", min(int64(n)*crypto.FileChunkSize, tr.SealedSize))
		if tr.Next >= total {
			return n, g.finishTransfer(tr)
		}
	}
	return n, perr
}

// finishTransfer notes that the broker has the whole file. The transfer is
// kept until the recipient's receipt for the envelope arrives: should a
// chunk be lost or spoiled in flight, the recipient cannot complete the
// file, no receipt comes, and the file is published again (maybeResend).
func (g *Gateway) finishTransfer(tr *store.TransferOut) error {
	return g.db.Update(func(tx *store.Tx) error {
		cur, err := tx.TransferOut(tr.To, tr.ID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if cur.Next < crypto.FileChunks(cur.SealedSize) || !cur.Finished.IsZero() {
			return nil
		}
		cur.Finished = g.now().UTC()
		return tx.PutTransferOut(cur)
	})
}

// maybeResend publishes a whole file again, under new message ids, when
// no receipt came within the resend interval of the last round (doubling
// each round, at most an hour). The recipient keeps each chunk once, so
// only what it lacks is written.
func (g *Gateway) maybeResend(tr *store.TransferOut) {
	wait := g.fileResend << min(tr.Round, 10)
	if wait > time.Hour {
		wait = time.Hour
	}
	if g.now().Sub(tr.Finished) < wait {
		return
	}
	err := g.db.Update(func(tx *store.Tx) error {
		cur, err := tx.TransferOut(tr.To, tr.ID)
		if err != nil || cur.Round != tr.Round {
			return err
		}
		cur.Round++
		cur.Next, cur.Finished = 0, time.Time{}
		return tx.PutTransferOut(cur)
	})
	if err != nil {
		g.log.Warn("failed to start a resend", "attachment", tr.ID, "err", err)
		return
	}
	g.log.Warn("no receipt for a file sent whole: publishing it again", "to", tr.To, "attachment", tr.ID, "round", tr.Round+1)
}

// transferKey returns the file key of a file being sent, read once from
// its sealed header.
func (g *Gateway) transferKey(aid string) ([]byte, error) {
	g.transfers.mu.Lock()
	k, ok := g.transfers.keys[aid]
	g.transfers.mu.Unlock()
	if ok {
		return k, nil
	}
	k, err := g.ownFileKey(aid)
	if err != nil {
		return nil, err
	}
	g.transfers.mu.Lock()
	if g.transfers.keys == nil {
		g.transfers.keys = map[string][]byte{}
	}
	g.transfers.keys[aid] = k
	g.transfers.mu.Unlock()
	return k, nil
}

// holdTransfers leaves a recipient whose share of the broker is full alone
// for a while (250 ms, doubling up to 5 s).
func (g *Gateway) holdTransfers(to string) {
	g.transfers.mu.Lock()
	defer g.transfers.mu.Unlock()
	if g.transfers.backoff == nil {
		g.transfers.backoff, g.transfers.delay = map[string]time.Time{}, map[string]time.Duration{}
	}
	d := min(max(2*g.transfers.delay[to], 250*time.Millisecond), 5*time.Second)
	g.transfers.delay[to] = d
	g.transfers.backoff[to] = time.Now().Add(d)
	g.metrics.limitHits.WithLabelValues(g.self, to, "files").Inc()
}

func (g *Gateway) releaseTransfers(to string) {
	g.transfers.mu.Lock()
	delete(g.transfers.backoff, to)
	delete(g.transfers.delay, to)
	g.transfers.mu.Unlock()
}

func (g *Gateway) transferHeld(to string) bool {
	g.transfers.mu.Lock()
	defer g.transfers.mu.Unlock()
	return time.Now().Before(g.transfers.backoff[to])
}
