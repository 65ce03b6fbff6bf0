package store

import "errors"

// bucketThreads holds the threads this gateway is in, by thread key id.
var bucketThreads = []byte("threads")

func init() { allBuckets = append(allBuckets, bucketThreads) }

// Thread is a thread this gateway shares with another agency: the record
// whose first message opened it, the other agency, and the thread key,
// sealed at rest by the caller (the store never sees it in the clear).
type Thread struct {
	Record string `json:"record"`
	Peer   string `json:"peer"`
	Key    []byte `json:"key"`
}

// ErrThreadExists is returned by PutThread for a thread id already in use.
var ErrThreadExists = errors.New("thread already in use")

// PutThread keeps a new thread under its key id.
func (t *Tx) PutThread(id string, th Thread) error {
	b := t.b(bucketThreads)
	if b.Get([]byte(id)) != nil {
		return ErrThreadExists
	}
	return putJSON(b, []byte(id), th)
}

// Thread returns the thread of key id.
func (t *Tx) Thread(id string) (Thread, error) {
	var th Thread
	err := getJSON(t.b(bucketThreads), []byte(id), &th)
	return th, err
}
