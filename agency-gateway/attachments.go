package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rujukan/rujukan/agency-gateway/body"
	"github.com/rujukan/rujukan/agency-gateway/filetype"
	"github.com/rujukan/rujukan/agency-gateway/store"
	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// Attachments: files (scans, photos, recordings) sent with a referral, a
// statement request or a statement. A file is sealed as it is uploaded
// (crypto.SealFile, to this agency's own key) and kept sealed beside the
// bbolt file; the message that lists it carries its hash, size, type, name
// and file key in its sealed, signed body; the sealed file follows the
// envelope through the broker in chunks (transfer.go) and is checked chunk
// by chunk and as a whole where it arrives (chunks.go). The recipient's
// delivered receipt waits until every file of the message is whole and
// verified. Audit events name a file by id and hash, never by name.

// Audit actions of attachments.
const (
	ActAttachmentUpload   store.Action = "attachment.upload"
	ActAttachmentSend     store.Action = "attachment.send"
	ActAttachmentReceive  store.Action = "attachment.receive"
	ActAttachmentDownload store.Action = "attachment.download"
	ActAttachmentExpire   store.Action = "attachment.expire"
)

// Reasons about attachments.
const (
	ReasonAttachmentInvalid = "attachment-invalid"
	ReasonAttachmentReused  = "attachment-reused"
	ReasonChunkInvalid      = "chunk-invalid"
	ReasonAttachmentUnknown = "attachment-unknown"
	// ReasonAttachmentQuota: the sender has too many bytes of files on
	// their way here already (attachments.arriving_max).
	ReasonAttachmentQuota = "attachment-quota"
)

// Errors of uploads and downloads, mapped to statuses by the HTTP layer.
var (
	// ErrTooLarge: an upload over the configured size limit (413).
	ErrTooLarge = errors.New("file too large")
	// ErrUnsupportedType: a type the gateway does not accept, or bytes
	// that are not of the declared type (415).
	ErrUnsupportedType = errors.New("unsupported file type")
	// ErrArriving: a file still on its way here (409).
	ErrArriving = errors.New("the file is still arriving")
	// ErrNoFiles: the gateway's bus carries no files (503).
	ErrNoFiles = errors.New("this gateway's broker connection carries no files")
)

// AttachmentsConfig configures attachments.
type AttachmentsConfig struct {
	// MaxSize is the largest file accepted, in bytes (default 2 GiB).
	MaxSize int64 `yaml:"max_size"`
	// Types are the media types accepted (default filetype.Default:
	// PDF, JPEG, PNG, HEIC, MP3, M4A, OGG, WAV and MP4). A file's bytes
	// must be of the type it is uploaded as.
	Types []string `yaml:"types"`
	// UnsentTTL is how long an upload not sent with any message is kept
	// (default 24 h).
	UnsentTTL time.Duration `yaml:"unsent_ttl"`
	// ArrivingMax is how many bytes of files one other agency may have
	// on their way here at once (default 8 GiB): a message listing more
	// is refused, so no member agency can claim this gateway's disk.
	ArrivingMax int64 `yaml:"arriving_max"`
}

func (c *AttachmentsConfig) defaults() {
	if c.MaxSize == 0 {
		c.MaxSize = 2 << 30
	}
	if len(c.Types) == 0 {
		c.Types = filetype.Default
	}
	if c.UnsentTTL == 0 {
		c.UnsentTTL = 24 * time.Hour
	}
	if c.ArrivingMax == 0 {
		c.ArrivingMax = 8 << 30
	}
}

func (c *AttachmentsConfig) validate() error {
	if c.MaxSize < 0 || c.MaxSize > 64<<30 {
		return fmt.Errorf("%w: field attachments.max_size: %d is outside 0..64 GiB", ErrConfig, c.MaxSize)
	}
	for i, t := range c.Types {
		if filetype.Canonical(t) == "" {
			return fmt.Errorf("%w: field attachments.types[%d]: %q is not a media type", ErrConfig, i, t)
		}
	}
	if c.UnsentTTL < 0 {
		return fmt.Errorf("%w: field attachments.unsent_ttl: negative", ErrConfig)
	}
	if c.ArrivingMax < c.MaxSize {
		return fmt.Errorf("%w: field attachments.arriving_max: %d is below max_size (%d): no file of the largest size could arrive", ErrConfig, c.ArrivingMax, c.MaxSize)
	}
	return nil
}

// MaxAttachmentSize is the largest file an upload may be.
func (g *Gateway) MaxAttachmentSize() int64 { return g.cfg.Attachments.MaxSize }

// attachDir is where the sealed files are kept.
func (g *Gateway) attachDir() string { return filepath.Join(g.cfg.Data, "attachments") }

// ownPath is a file uploaded here.
func (g *Gateway) ownPath(aid string) string { return filepath.Join(g.attachDir(), aid+".age") }

// inPath is a file received from agency from (partPath while it arrives).
func (g *Gateway) inPath(from, aid string) string {
	return filepath.Join(g.attachDir(), "in", from, aid+".age")
}

func (g *Gateway) partPath(from, aid string) string { return g.inPath(from, aid) + ".part" }

// AttachmentInfo is what an upload answers.
type AttachmentInfo struct {
	ID     string `json:"id"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	Type   string `json:"type"`
}

// uploadAction is the scope an upload for a message of kind needs.
func uploadAction(kind string) (policy.Action, bool) {
	switch kind {
	case "", kindReferral:
		return policy.ActionReferralSend, true
	case kindStatementRequest:
		return policy.ActionStatementRequestSend, true
	case kindStatement:
		return policy.ActionStatementRespond, true
	}
	return "", false
}

// Upload seals a file as it is read from r and keeps it until it is sent
// with a message of kind forKind (referral, statement-request or
// statement), which decides the scope it needs. declared is the type the
// uploader says it is; name its file name. The file is never held whole
// in memory.
func (g *Gateway) Upload(ctx context.Context, p policy.Principal, forKind, declared, name string, r io.Reader) (AttachmentInfo, error) {
	act, ok := uploadAction(forKind)
	if !ok {
		return AttachmentInfo{}, invalid("/for", body.CodeEnum, "must be referral, statement-request or statement")
	}
	// A statement answers a request made to this agency: the upload needs
	// the scope of that answer.
	res := policy.Resource{}
	if act == policy.ActionStatementRespond {
		res = policy.Resource{From: "requester", To: p.Agency}
	}
	if err := policy.Decide(p, act, res); err != nil {
		return AttachmentInfo{}, g.denied(p, act, "", err)
	}
	if forKind == "" {
		forKind = kindReferral
	}
	name, err := fileName(name)
	if err != nil {
		return AttachmentInfo{}, err
	}
	head := make([]byte, filetype.HeadSize)
	n, err := io.ReadFull(r, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return AttachmentInfo{}, fmt.Errorf("%w: reading the file: %v", ErrBadRequest, err)
	}
	head = head[:n]
	typ, err := filetype.Check(head, declared, g.cfg.Attachments.Types)
	if err != nil {
		return AttachmentInfo{}, fmt.Errorf("%w: %v", ErrUnsupportedType, err)
	}
	if err := os.MkdirAll(g.attachDir(), 0o700); err != nil {
		return AttachmentInfo{}, err
	}
	aid := crypto.NewID()
	tmp := g.ownPath(aid) + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return AttachmentInfo{}, err
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
			os.Remove(tmp)
		}
	}()
	cw := &countWriter{w: f}
	sw, err := crypto.SealFile(cw, g.keys.Identity)
	if err != nil {
		return AttachmentInfo{}, err
	}
	h := sha256.New()
	max := g.cfg.Attachments.MaxSize
	src := io.MultiReader(bytes.NewReader(head), io.LimitReader(r, max+1-int64(len(head))))
	size, err := io.Copy(io.MultiWriter(sw, h), ctxReader{ctx, src})
	if err != nil {
		return AttachmentInfo{}, fmt.Errorf("%w: reading the file: %v", ErrBadRequest, err)
	}
	if size > max {
		return AttachmentInfo{}, fmt.Errorf("%w: over %d bytes", ErrTooLarge, max)
	}
	if err := sw.Close(); err != nil {
		return AttachmentInfo{}, err
	}
	if err := f.Sync(); err != nil {
		return AttachmentInfo{}, err
	}
	if err := f.Close(); err != nil {
		return AttachmentInfo{}, err
	}
	if err := os.Rename(tmp, g.ownPath(aid)); err != nil {
		return AttachmentInfo{}, err
	}
	keep = true
	syncDir(g.attachDir())
	info := AttachmentInfo{ID: aid, SHA256: hex.EncodeToString(h.Sum(nil)), Size: size, Type: typ}
	by := actorOf(g.self, p)
	u := &store.Upload{ID: aid, By: by, For: forKind, Type: typ, Size: size, SHA256: info.SHA256,
		SealedSize: cw.n, Name: g.keys.AtRest.Seal(uploadNameID(aid), []byte(name)), At: g.now().UTC()}
	err = g.db.Update(func(tx *store.Tx) error {
		if err := tx.PutUpload(u); err != nil {
			return err
		}
		return tx.Audit(store.AuditEvent{At: u.At, Actor: by, Action: ActAttachmentUpload, Object: aid, Outcome: "accepted",
			Detail: map[string]string{"sha256": info.SHA256, "size": strconv.FormatInt(size, 10), "type": typ, "for": forKind}})
	})
	if err != nil {
		os.Remove(g.ownPath(aid))
		return AttachmentInfo{}, err
	}
	return info, nil
}

func uploadNameID(aid string) string { return "upload-name:" + aid }

// fileName checks an uploaded file's name: one line, at most 255 bytes of
// UTF-8, its last path element only.
func fileName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	if name == "" {
		name = "file"
	}
	if !utf8.ValidString(name) || len(name) > 255 || strings.ContainsFunc(name, func(r rune) bool {
		return r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == 0x61c || r == 0x200e || r == 0x200f ||
			(r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
	}) {
		return "", invalid("/name", body.CodeFormat, "the file name must be one line of at most 255 bytes without control characters")
	}
	return name, nil
}

// attachFiles fills in what the sealed body says of each file a member of
// staff lists with a message of kind: it must be their own upload, for that
// kind of message, and not sent yet.
func (g *Gateway) attachFiles(d Draft, kind string, refs []body.Attachment) ([]body.Attachment, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	if _, ok := g.bus.(FileBus); !ok {
		return nil, ErrNoFiles
	}
	by := actorOf(g.self, d.Principal)
	out := make([]body.Attachment, len(refs))
	for i, ref := range refs {
		field := fmt.Sprintf("/attachments/%d/id", i)
		var u *store.Upload
		err := g.db.View(func(tx *store.Tx) (err error) { u, err = tx.Upload(ref.ID); return err })
		if errors.Is(err, store.ErrNotFound) || (err == nil && u.By != by) {
			return nil, invalid(field, "unknown", "is not a file you uploaded and have not sent yet (a file goes with one message; one not sent expires)")
		}
		if err != nil {
			return nil, err
		}
		if u.For != kind {
			return nil, invalid(field, "kind", "was uploaded for a "+u.For+", not a "+kind)
		}
		name, err := g.keys.AtRest.Open(uploadNameID(u.ID), u.Name)
		if err != nil {
			return nil, fmt.Errorf("upload %s: %w", u.ID, err)
		}
		key, err := g.ownFileKey(u.ID)
		if err != nil {
			return nil, err
		}
		out[i] = body.Attachment{ID: u.ID, Name: string(name), Type: u.Type, Size: u.Size, SHA256: u.SHA256,
			Key: base64.RawStdEncoding.EncodeToString(key), SealedSize: u.SealedSize}
	}
	return out, nil
}

// ownFileKey reads the file key of a file uploaded here from its sealed
// header.
func (g *Gateway) ownFileKey(aid string) ([]byte, error) {
	f, err := os.Open(g.ownPath(aid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return crypto.FileKey(f, g.keys.identities()...)
}

// sendFiles, in Send's transaction, takes each file of out from the
// uploads (it goes with this message only; the sealed file stays, for the
// sender's own view) and queues its transfer, which starts once the
// envelope is published.
func (g *Gateway) sendFiles(tx *store.Tx, out *Outgoing, by string, now time.Time) error {
	for i, a := range out.Files {
		if _, err := tx.Upload(a.ID); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return invalid(fmt.Sprintf("/attachments/%d/id", i), "unknown", "was sent with another message meanwhile")
			}
			return err
		}
		if err := tx.DeleteUpload(a.ID); err != nil {
			return err
		}
		if err := tx.PutTransferOut(&store.TransferOut{To: out.To.ID, ID: a.ID, Ref: out.ID, SealedSize: a.SealedSize}); err != nil {
			return err
		}
		if err := tx.Audit(store.AuditEvent{At: now, Actor: by, Action: ActAttachmentSend, Object: a.ID, Outcome: "queued",
			Detail: map[string]string{"sha256": a.SHA256, "size": strconv.FormatInt(a.Size, 10), "to": out.To.ID, "envelope": out.ID}}); err != nil {
			return err
		}
	}
	return nil
}

// expectFiles, in the transaction that stores a received envelope listing
// files, records the transfer of each; the envelope's delivered receipt
// waits for them (chunks.go).
func (g *Gateway) expectFiles(tx *store.Tx, in *Incoming) error {
	record := in.record
	if record == "" {
		record = in.Header.ID
	}
	arriving, err := tx.ArrivingFrom(in.Sender.ID)
	if err != nil {
		return err
	}
	for _, a := range in.Files {
		if _, err := tx.TransferIn(in.Sender.ID, a.ID); err == nil {
			return refuse(ReasonAttachmentReused, fmt.Errorf("attachment id %s already received from %s", a.ID, in.Sender.ID))
		}
		if err := checkSealedSize(a); err != nil {
			return refuse(ReasonAttachmentInvalid, err)
		}
		// A file this gateway would not take from its own staff it does
		// not take from another agency either.
		if a.Size > g.cfg.Attachments.MaxSize || !g.acceptsType(a.Type) {
			return refuse(ReasonAttachmentInvalid, fmt.Errorf("attachment %s: %d bytes of %s is not accepted here", a.ID, a.Size, a.Type))
		}
		arriving += a.SealedSize
		n := crypto.FileChunks(a.SealedSize)
		if err := tx.PutTransferIn(&store.TransferIn{From: in.Sender.ID, ID: a.ID, Ref: in.Header.ID, Record: record,
			EnvelopeHash: in.Hash, SealedSize: a.SealedSize, Chunks: n, Have: make([]byte, (n+7)/8), Since: in.Now}); err != nil {
			return err
		}
	}
	if arriving > g.cfg.Attachments.ArrivingMax {
		// The transaction is rolled back: nothing of it is kept.
		return refuse(ReasonAttachmentQuota, fmt.Errorf("%d bytes of files from %s would be arriving at once, over %d",
			arriving, in.Sender.ID, g.cfg.Attachments.ArrivingMax))
	}
	return nil
}

// acceptsType reports whether typ is one of the configured types.
func (g *Gateway) acceptsType(typ string) bool {
	want := filetype.Canonical(typ)
	for _, t := range g.cfg.Attachments.Types {
		if filetype.Canonical(t) == want {
			return want != ""
		}
	}
	return false
}

// filesPending reports whether a message received here lists files that
// are neither kept nor failed yet.
func (g *Gateway) filesPending(tx *store.Tx, ref string) bool {
	trs, err := tx.TransfersIn(ref)
	if err != nil {
		return true
	}
	for _, tr := range trs {
		if tr.Done.IsZero() && tr.Failed == "" {
			return true
		}
	}
	return false
}

// checkSealedSize checks that a file's sealed size is what age makes of its
// size: a header, a nonce and a tag per 64 KiB chunk.
func checkSealedSize(a body.Attachment) error {
	if _, err := base64.RawStdEncoding.DecodeString(a.Key); err != nil {
		return fmt.Errorf("attachment %s: key is not base64", a.ID)
	}
	chunks := max(1, (a.Size+64<<10-1)/(64<<10))
	min := a.Size + 16 + 16*chunks
	if a.SealedSize < min || a.SealedSize > min+16<<10 {
		return fmt.Errorf("attachment %s: sealed size %d does not fit a file of %d bytes", a.ID, a.SealedSize, a.Size)
	}
	return nil
}

// receivedFiles parses the files a checked body lists (the body already
// passed its schema) and keeps them for Apply; the delivered receipt
// waits for them.
func receivedFiles(in *Incoming, atts []body.Attachment) {
	if len(atts) == 0 {
		return
	}
	in.Files = atts
	in.Receipt = nil
}

// AttachmentView is a file of a message as this gateway holds it.
type AttachmentView struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Type   string `json:"type"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// State is available, arriving or failed.
	State string `json:"state"`
	// Received counts the bytes of the sealed file here so far, while it
	// arrives.
	Received int64 `json:"received,omitempty"`
	// SealedSize is the size of the sealed file.
	SealedSize int64 `json:"-"`
	// From is the agency that sent it.
	From string `json:"-"`
	key  string
}

// Attachment states.
const (
	AttachmentAvailable = "available"
	AttachmentArriving  = "arriving"
	AttachmentFailed    = "failed"
)

// filesOf returns the files a body lists (any body: every kind names them
// "attachments").
func filesOf(b []byte) []body.Attachment {
	var v struct {
		Attachments []body.Attachment `json:"attachments"`
	}
	if json.Unmarshal(b, &v) != nil {
		return nil
	}
	return v.Attachments
}

// attachmentViews returns the files of a message body sent by agency from,
// with their state here.
func (g *Gateway) attachmentViews(b []byte, from string) ([]AttachmentView, error) {
	atts := filesOf(b)
	if len(atts) == 0 {
		return nil, nil
	}
	out := make([]AttachmentView, 0, len(atts))
	err := g.db.View(func(tx *store.Tx) error {
		for _, a := range atts {
			v := AttachmentView{ID: a.ID, Name: a.Name, Type: a.Type, Size: a.Size, SHA256: a.SHA256,
				State: AttachmentAvailable, SealedSize: a.SealedSize, From: from, key: a.Key}
			if from != g.self {
				tr, err := tx.TransferIn(from, a.ID)
				switch {
				case errors.Is(err, store.ErrNotFound):
					v.State = AttachmentFailed
				case err != nil:
					return err
				case tr.Failed != "":
					v.State = AttachmentFailed
				case tr.Done.IsZero():
					v.State = AttachmentArriving
					v.Received = min(tr.Count*crypto.FileChunkSize, tr.SealedSize)
				}
			}
			out = append(out, v)
		}
		return nil
	})
	return out, err
}

// forView returns a body as staff see it: without its list of files (they
// are shown once, with their state here, in the item's attachments) and
// without the keys in it (file keys, the thread key), which are for the
// gateway only.
func forView(b []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return nil // never shown as it is: it could hold a key
	}
	_, files := m["attachments"]
	_, thread := m["thread_key"]
	if !files && !thread {
		return b
	}
	delete(m, "attachments")
	delete(m, "thread_key")
	out, err := json.Marshal(m)
	if err != nil {
		return nil
	}
	return out
}

// AttachmentFile is a file opened for download: its plaintext, read at
// any offset (each read checks the chunks it covers).
type AttachmentFile struct {
	AttachmentView
	io.ReaderAt
	ModTime time.Time
	f       *os.File
}

// Close closes the sealed file.
func (a *AttachmentFile) Close() error { return a.f.Close() }

// OpenAttachment opens file aid of the referral or statement request ref
// for a member of staff who may read that record. A file of another
// message, or of a record the caller may not see, is not found; a file
// still arriving is ErrArriving. A download from the start (from, true)
// is audited with the file's hash; the later parts of one (a player's
// range requests) are not, so reading a recording does not fill the log.
func (g *Gateway) OpenAttachment(ctx context.Context, p policy.Principal, kind, ref, aid string, fromStart bool) (*AttachmentFile, error) {
	act := policy.ActionReferralRead
	if kind == kindStatementRequest {
		act = policy.ActionStatementRequestRead
	}
	rec, err := g.authorize(p, act, ref)
	if err != nil {
		return nil, err
	}
	if rec.Kind != kind {
		return nil, ErrNotFound
	}
	b, err := g.body(rec)
	if err != nil {
		return nil, err
	}
	views, err := g.recordFiles(rec, b)
	if err != nil {
		return nil, err
	}
	for _, v := range views {
		if v.ID != aid {
			continue
		}
		switch v.State {
		case AttachmentArriving:
			return nil, ErrArriving
		case AttachmentFailed:
			return nil, ErrNotFound
		}
		path := g.ownPath(aid)
		if v.From != g.self {
			path = g.inPath(v.From, aid)
		}
		key, err := base64.RawStdEncoding.DecodeString(v.key)
		if err != nil {
			return nil, err
		}
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		ra, size, err := crypto.OpenFile(f, st.Size(), key)
		if err != nil || size != v.Size {
			f.Close()
			return nil, fmt.Errorf("attachment %s does not open: %v", aid, err)
		}
		if fromStart {
			if err := g.allowed(p, ActAttachmentDownload, ref, map[string]string{"attachment": aid, "sha256": v.SHA256}); err != nil {
				f.Close()
				return nil, err
			}
		}
		return &AttachmentFile{AttachmentView: v, ReaderAt: ra, ModTime: st.ModTime(), f: f}, nil
	}
	return nil, ErrNotFound
}

// recordFiles returns every file of a record whose message body is b:
// those of its own message and, for a statement request, those of the
// statement that answered it.
func (g *Gateway) recordFiles(rec *store.Record, b []byte) ([]AttachmentView, error) {
	from := rec.From
	views, err := g.attachmentViews(b, from)
	if err != nil {
		return nil, err
	}
	if id := rec.Related[relStatement]; id != "" && rec.Kind == kindStatementRequest {
		sb, err := g.envelopeBody(id, rec.Box == store.Outbox)
		if err != nil {
			return nil, err
		}
		more, err := g.attachmentViews(sb, rec.To)
		if err != nil {
			return nil, err
		}
		views = append(views, more...)
	}
	return views, nil
}

// expireUploads deletes files uploaded and not sent within UnsentTTL.
func (g *Gateway) expireUploads(now time.Time) {
	var old []store.Upload
	if err := g.db.View(func(tx *store.Tx) (err error) {
		old, err = tx.UnsentUploads(now.Add(-g.cfg.Attachments.UnsentTTL), 100)
		return err
	}); err != nil {
		g.log.Warn("failed to list unsent uploads", "err", err)
		return
	}
	for _, u := range old {
		deleted := false
		err := g.db.Update(func(tx *store.Tx) error {
			deleted = false
			if _, err := tx.Upload(u.ID); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					return nil // sent meanwhile
				}
				return err
			}
			deleted = true
			if err := tx.DeleteUpload(u.ID); err != nil {
				return err
			}
			return tx.Audit(store.AuditEvent{At: now, Actor: g.self, Action: ActAttachmentExpire, Object: u.ID, Outcome: "deleted",
				Detail: map[string]string{"sha256": u.SHA256, "reason": "unsent"}})
		})
		if err != nil {
			g.log.Warn("failed to expire an upload", "attachment", u.ID, "err", err)
			continue
		}
		if deleted {
			os.Remove(g.ownPath(u.ID))
		}
	}
}

// ReasonAttachmentIncomplete: a file that stopped arriving.
const ReasonAttachmentIncomplete = "attachment-incomplete"

// expireArrivals gives up files that have had no chunk for the delivery
// deadline (by then the sender has reported the message failed): the part
// received is deleted, and the file is marked failed.
func (g *Gateway) expireArrivals(now time.Time) {
	var stale []store.TransferIn
	if err := g.db.View(func(tx *store.Tx) (err error) {
		stale, err = tx.StaleTransfersIn(now.Add(-g.cfg.DeliveryDeadline), 100)
		return err
	}); err != nil {
		g.log.Warn("failed to list stale arrivals", "err", err)
		return
	}
	for _, tr := range stale {
		err := g.db.Update(func(tx *store.Tx) error {
			cur, err := tx.TransferIn(tr.From, tr.ID)
			if err != nil || !cur.Done.IsZero() || cur.Failed != "" {
				return err
			}
			cur.Failed = ReasonAttachmentIncomplete
			if err := tx.PutTransferIn(cur); err != nil {
				return err
			}
			return tx.Audit(store.AuditEvent{At: now.UTC(), Actor: g.self, Action: ActAttachmentReceive, Object: tr.ID,
				Outcome: "expired", Reason: ReasonAttachmentIncomplete, Detail: map[string]string{"from": tr.From, "envelope": tr.Ref}})
		})
		if err != nil {
			g.log.Warn("failed to expire an arrival", "attachment", tr.ID, "err", err)
			continue
		}
		os.Remove(g.partPath(tr.From, tr.ID))
		g.chunks.mu.Lock()
		delete(g.chunks.keys, tr.From+"/"+tr.ID)
		g.chunks.mu.Unlock()
	}
}

// removeHalfWritten removes the uploads a crash left half written. New
// calls it, before the gateway can take an upload: once it can, a file
// being written is one of an upload under way.
func (g *Gateway) removeHalfWritten() {
	tmps, _ := filepath.Glob(filepath.Join(g.attachDir(), "*.tmp"))
	for _, t := range tmps {
		os.Remove(t)
	}
}

// attachmentsLoop expires unsent uploads and stale arrivals.
func (g *Gateway) attachmentsLoop(ctx context.Context) {
	every := min(5*time.Second, max(time.Second, g.cfg.Attachments.UnsentTTL/10))
	var lastStale time.Time
	for {
		g.expireUploads(g.now())
		if now := g.now(); now.Sub(lastStale) >= 10*time.Minute {
			g.expireArrivals(now)
			lastStale = now
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ctxReader stops reading once ctx is done (a client that went away).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// syncDir fsyncs a directory so a rename in it lasts.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
