package gateway

import (
	"errors"
	"fmt"

	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
)

// Threads (crypto/thread.go): a referral or a statement request carries a
// fresh thread key in its sealed body, and their receipts and status
// envelopes are sealed with it, at the cost of an AEAD and a signature
// instead of a post-quantum hybrid seal and open. Both gateways keep the
// key with the record, sealed at rest, and find it by its key id when a
// thread envelope arrives.

// ReasonThreadReused refuses a message whose thread key names a thread
// this gateway is already in: keys are random, so a sender reusing one is
// forging.
const ReasonThreadReused = "thread-reused"

// newThread is a thread key for a new referral or request.
func newThread() *crypto.ThreadKey {
	k := crypto.NewThreadKey()
	return &k
}

// bodyThread parses the thread key a received body carries (nil when the
// sender set none: its receipts are then sealed to its hybrid key).
func bodyThread(s string) (*crypto.ThreadKey, error) {
	if s == "" {
		return nil, nil
	}
	k, err := crypto.ParseThreadKey(s)
	if err != nil {
		return nil, refuse(ReasonBodyInvalid, err)
	}
	return &k, nil
}

func threadAtRest(id string) string { return "thread/" + id }

// putThread keeps key as the thread of rec, shared with peer.
func (g *Gateway) putThread(tx *store.Tx, rec *store.Record, peer string, key *crypto.ThreadKey) error {
	if key == nil {
		return nil
	}
	id := key.ID()
	err := tx.PutThread(id, store.Thread{Record: rec.ID, Peer: peer, Key: g.keys.AtRest.Seal(threadAtRest(id), key[:])})
	if errors.Is(err, store.ErrThreadExists) {
		return refuse(ReasonThreadReused, fmt.Errorf("thread %s is already in use here", id))
	}
	rec.Thread = id
	return err
}

// thread returns the thread of key id, opened.
func (g *Gateway) thread(tx *store.Tx, id string) (crypto.Thread, error) {
	th, err := tx.Thread(id)
	if err != nil {
		return crypto.Thread{}, err
	}
	b, err := g.keys.AtRest.Open(threadAtRest(id), th.Key)
	if err != nil {
		return crypto.Thread{}, fmt.Errorf("thread %s: %w", id, err)
	}
	t := crypto.Thread{Peer: th.Peer}
	if copy(t.Key[:], b) != len(t.Key) || t.Key.ID() != id {
		return crypto.Thread{}, fmt.Errorf("thread %s: the stored key is not its own", id)
	}
	return t, nil
}

// threadOf returns the key of rec's thread, nil when it has none.
func (g *Gateway) threadOf(tx *store.Tx, rec *store.Record) (*crypto.ThreadKey, error) {
	if rec == nil || rec.Thread == "" {
		return nil, nil
	}
	t, err := g.thread(tx, rec.Thread)
	if err != nil {
		return nil, err
	}
	return &t.Key, nil
}

// peerThread is threadOf for the record of id, in a read transaction of
// its own, when peer is the record's counterpart; nil when the record or
// its thread is not here, or belongs to another agency.
func (g *Gateway) peerThread(id, peer string) (*crypto.ThreadKey, error) {
	var key *crypto.ThreadKey
	err := g.db.View(func(tx *store.Tx) error {
		rec, err := tx.Record(id)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		if counterpart(rec) == peer {
			key, err = g.threadOf(tx, rec)
		}
		return err
	})
	return key, err
}

// lookupThread finds the thread of a thread envelope for the Opener.
func (g *Gateway) lookupThread(id string) (crypto.Thread, bool) {
	var t crypto.Thread
	err := g.db.View(func(tx *store.Tx) (err error) {
		t, err = g.thread(tx, id)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		g.log.Error("a stored thread does not open", "thread", id, "err", err)
	}
	return t, err == nil
}
