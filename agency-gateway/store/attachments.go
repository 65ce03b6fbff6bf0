package store

import (
	"bytes"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Attachments. The files themselves are kept beside the bbolt file, sealed
// (package crypto); the store keeps what is known of them:
//
//   - uploads: a file uploaded here and not sent yet (it leaves the list
//     when it is sent with a message, or expires unsent);
//   - out-transfers: a file on its way to another agency, with how far the
//     broker has acknowledged it;
//   - in-transfers: a file on its way here, with the chunks already written
//     and fsynced.
var (
	bucketUploads      = []byte("att-uploads")
	bucketTransfersOut = []byte("att-out")
	bucketTransfersIn  = []byte("att-in")
	// bucketTransfersInRef indexes in-transfers by message: ref, sender
	// and id, with empty values.
	bucketTransfersInRef = []byte("att-in-ref")
)

func init() {
	allBuckets = append(allBuckets, bucketUploads, bucketTransfersOut, bucketTransfersIn, bucketTransfersInRef)
}

// Upload is a file uploaded to this gateway. Its name is sealed at rest:
// it may speak of the person.
type Upload struct {
	ID     string `json:"id"`
	By     string `json:"by"`
	For    string `json:"for"`
	Type   string `json:"type"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// SealedSize is the size of the sealed file on disk.
	SealedSize int64     `json:"sealed_size"`
	Name       []byte    `json:"name"`
	At         time.Time `json:"at"`
}

// PutUpload stores (or replaces) an upload.
func (t *Tx) PutUpload(u *Upload) error { return putJSON(t.b(bucketUploads), []byte(u.ID), u) }

// Upload returns an upload.
func (t *Tx) Upload(id string) (*Upload, error) {
	var u Upload
	if err := getJSON(t.b(bucketUploads), []byte(id), &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// DeleteUpload forgets an upload.
func (t *Tx) DeleteUpload(id string) error { return t.b(bucketUploads).Delete([]byte(id)) }

// UnsentUploads returns up to max uploads (none of them sent) uploaded
// before before.
func (t *Tx) UnsentUploads(before time.Time, max int) ([]Upload, error) {
	return scanJSON(t.b(bucketUploads), max, nil, func(u *Upload) bool { return u.At.Before(before) })
}

// TransferOut is a file on its way to agency To, with message Ref.
type TransferOut struct {
	To         string `json:"to"`
	ID         string `json:"id"`
	Ref        string `json:"ref"`
	SealedSize int64  `json:"sealed_size"`
	// Next is the first chunk the broker has not acknowledged.
	Next int64 `json:"next"`
	// Round counts the times the whole file was published again because
	// no receipt came (a chunk lost or spoiled in flight): it makes chunk
	// message ids new.
	Round int `json:"round,omitempty"`
	// Finished is when the broker acknowledged the last chunk of this
	// round (zero while chunks are left to publish).
	Finished time.Time `json:"finished,omitzero"`
}

func transferKey(agency, id string) []byte { return []byte(agency + "\x00" + id) }

// PutTransferOut stores (or replaces) an outgoing transfer.
func (t *Tx) PutTransferOut(tr *TransferOut) error {
	return putJSON(t.b(bucketTransfersOut), transferKey(tr.To, tr.ID), tr)
}

// TransferOut returns an outgoing transfer.
func (t *Tx) TransferOut(to, id string) (*TransferOut, error) {
	var tr TransferOut
	if err := getJSON(t.b(bucketTransfersOut), transferKey(to, id), &tr); err != nil {
		return nil, err
	}
	return &tr, nil
}

// DeleteTransferOut forgets an outgoing transfer.
func (t *Tx) DeleteTransferOut(to, id string) error {
	return t.b(bucketTransfersOut).Delete(transferKey(to, id))
}

// SendingFiles says whether any outgoing transfer is left.
func (t *Tx) SendingFiles() bool {
	k, _ := t.b(bucketTransfersOut).Cursor().First()
	return k != nil
}

// TransfersOut returns every outgoing transfer, by recipient then id.
func (t *Tx) TransfersOut() ([]TransferOut, error) {
	return scanJSON[TransferOut](t.b(bucketTransfersOut), 0, nil, nil)
}

// TransferIn is a file on its way here from agency From, listed by message
// Ref.
type TransferIn struct {
	From string `json:"from"`
	ID   string `json:"id"`
	Ref  string `json:"ref"`
	// Record is the record the message belongs to, and EnvelopeHash the
	// hex SHA-256 of its envelope: its delivered receipt names them.
	Record       string `json:"record"`
	EnvelopeHash string `json:"envelope_hash"`
	SealedSize   int64  `json:"sealed_size"`
	// Have has one bit per chunk written and fsynced (chunk i is bit i%8
	// of byte i/8).
	Have []byte `json:"have"`
	// Count is the number of bits set in Have, of Chunks.
	Count  int64 `json:"count"`
	Chunks int64 `json:"chunks"`
	// Done is when the whole file was verified (zero until then).
	Done time.Time `json:"done,omitzero"`
	// Failed is a reason code when the file arrived whole and did not
	// verify.
	Failed string `json:"failed,omitempty"`
	// Since is when the last chunk was written (or the transfer began).
	Since time.Time `json:"since"`
}

// Has reports whether chunk i is written.
func (tr *TransferIn) Has(i int64) bool {
	return i >= 0 && i/8 < int64(len(tr.Have)) && tr.Have[i/8]&(1<<(i%8)) != 0
}

// Set marks chunk i written.
func (tr *TransferIn) Set(i int64) {
	if tr.Has(i) || i < 0 || i/8 >= int64(len(tr.Have)) {
		return
	}
	tr.Have[i/8] |= 1 << (i % 8)
	tr.Count++
}

// FirstMissing returns the first chunk not written, or n when all are.
func (tr *TransferIn) FirstMissing(n int64) int64 {
	for i := range n {
		if !tr.Has(i) {
			return i
		}
	}
	return n
}

// PutTransferIn stores (or replaces) an incoming transfer.
func (t *Tx) PutTransferIn(tr *TransferIn) error {
	if err := t.b(bucketTransfersInRef).Put([]byte(tr.Ref+"\x00"+tr.From+"\x00"+tr.ID), nil); err != nil {
		return err
	}
	return putJSON(t.b(bucketTransfersIn), transferKey(tr.From, tr.ID), tr)
}

// TransferIn returns an incoming transfer.
func (t *Tx) TransferIn(from, id string) (*TransferIn, error) {
	var tr TransferIn
	if err := getJSON(t.b(bucketTransfersIn), transferKey(from, id), &tr); err != nil {
		return nil, err
	}
	return &tr, nil
}

// TransfersIn returns the incoming transfers of message ref (all of them
// when ref is "").
func (t *Tx) TransfersIn(ref string) ([]TransferIn, error) {
	var out []TransferIn
	if ref == "" {
		return scanJSON[TransferIn](t.b(bucketTransfersIn), 0, nil, nil)
	}
	prefix := []byte(ref + "\x00")
	c := t.b(bucketTransfersInRef).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		from, id, ok := bytes.Cut(k[len(prefix):], []byte{0})
		if !ok {
			continue
		}
		tr, err := t.TransferIn(string(from), string(id))
		if err != nil {
			return nil, err
		}
		out = append(out, *tr)
	}
	return out, nil
}

// ArrivingFrom returns the sealed size of the files from agency from that
// are neither kept nor failed yet, all together.
func (t *Tx) ArrivingFrom(from string) (int64, error) {
	var total int64
	prefix := []byte(from + "\x00")
	c := t.b(bucketTransfersIn).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if !unsettled(v) {
			continue
		}
		var tr TransferIn
		if err := getJSON(t.b(bucketTransfersIn), k, &tr); err != nil {
			return 0, err
		}
		if tr.Done.IsZero() && tr.Failed == "" {
			total += tr.SealedSize
		}
	}
	return total, nil
}

// StaleTransfersIn returns up to max incoming transfers neither kept nor
// failed that have had no chunk since before.
func (t *Tx) StaleTransfersIn(before time.Time, max int) ([]TransferIn, error) {
	return scanJSON(t.b(bucketTransfersIn), max, unsettled, func(tr *TransferIn) bool {
		return tr.Done.IsZero() && tr.Failed == "" && tr.Since.Before(before)
	})
}

// UnsettledTransfersIn returns up to max incoming transfers that hold every
// chunk but are neither kept nor failed (their completion was cut short).
func (t *Tx) UnsettledTransfersIn(max int) ([]TransferIn, error) {
	return scanJSON(t.b(bucketTransfersIn), max, unsettled, func(tr *TransferIn) bool {
		return tr.Done.IsZero() && tr.Failed == "" && tr.Chunks > 0 && tr.Count == tr.Chunks
	})
}

// unsettled tells from its stored bytes whether an in-transfer may still
// be neither kept nor failed, so scans decode only those.
func unsettled(raw []byte) bool {
	return !bytes.Contains(raw, []byte(`"done":`)) && !bytes.Contains(raw, []byte(`"failed":`))
}

// scanJSON decodes the entries of bucket b in key order and returns those
// keep accepts (all when keep is nil), at most max of them (0: no
// bound). pre, when set, skips an entry by its stored bytes before it is
// decoded.
func scanJSON[T any](b *bolt.Bucket, max int, pre func([]byte) bool, keep func(*T) bool) ([]T, error) {
	var out []T
	c := b.Cursor()
	for k, v := c.First(); k != nil && (max == 0 || len(out) < max); k, v = c.Next() {
		if pre != nil && !pre(v) {
			continue
		}
		var x T
		if err := getJSON(b, k, &x); err != nil {
			return nil, err
		}
		if keep == nil || keep(&x) {
			out = append(out, x)
		}
	}
	return out, nil
}
