package crypto

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"
)

// Kinds of envelope.
const (
	KindReferral         = "referral"
	KindStatus           = "status"
	KindReceipt          = "receipt"
	KindStatementRequest = "statement-request"
	KindStatement        = "statement"
	// KindCheckpoint carries a gateway's signed audit checkpoint to a
	// witness; KindCosignature the witness's cosignature back.
	KindCheckpoint  = "checkpoint"
	KindCosignature = "cosignature"
)

// ValidKind reports whether k is one of the envelope kinds above.
func ValidKind(k string) bool {
	switch k {
	case KindReferral, KindStatus, KindReceipt, KindStatementRequest, KindStatement, KindCheckpoint, KindCosignature:
		return true
	}
	return false
}

// Version is the envelope and receipt format version this package writes
// and reads.
const Version = 1

// Size caps. An envelope must fit in one NATS message (max_payload 1 MiB)
// together with its NATS headers, which get the 16 KiB left over.
// MaxBodySize leaves room for the age header, the age stream overhead, the
// two headers and signatures, so a body of MaxBodySize always seals.
const (
	MaxEnvelopeSize = 1<<20 - 16<<10 // 1,032,192 bytes
	MaxBodySize     = 1<<20 - 64<<10 // 983,040 bytes
)

// DefaultClockSkew is how far the created/expires window of an envelope is
// widened on each side to allow for clocks that disagree.
const DefaultClockSkew = 2 * time.Minute

// MaxLifetime is the longest created-to-expires window Open accepts. It
// bounds how far back a sender can date an envelope and how long its id
// must be remembered against replay.
const MaxLifetime = 90 * 24 * time.Hour

// Wire constants; see docs/PROTOCOL.md.
const (
	envelopeMagic = "RJKE"
	innerMagic    = "RJKI"
	outerDomain   = "rujukan/v1/envelope/outer\x00"
	innerDomain   = "rujukan/v1/envelope/inner\x00"
	maxHeaderSize = 512
	maxIDLen      = 64
	keyIDLen      = 16
)

// Envelope errors. Open and VerifyOuter wrap exactly one of them; callers
// branch with errors.Is and turn them into receipt reason codes with
// ReasonCode.
var (
	// ErrMalformed is returned for bytes that are not an envelope of the
	// expected shape: empty, truncated, trailing data, bad field values,
	// or an inner object that does not parse after decryption.
	ErrMalformed = errors.New("malformed envelope")
	// ErrTooLarge is returned for an envelope over MaxEnvelopeSize or a body
	// over MaxBodySize, before anything proportional to the size is
	// allocated.
	ErrTooLarge = errors.New("envelope too large")
	// ErrVersion is returned for an envelope of a format version this
	// package does not read.
	ErrVersion = errors.New("unsupported envelope version")
	// ErrUnknownSender is returned when the sender agency, or its signing
	// key id, is not in the directory.
	ErrUnknownSender = errors.New("unknown sender")
	// ErrSenderRevoked is returned when the sender agency or its signing key
	// is revoked in the directory. The outer signature did verify.
	ErrSenderRevoked = errors.New("sender revoked")
	// ErrBadOuterSignature is returned when the outer signature does not
	// verify with the sender key named in the header.
	ErrBadOuterSignature = errors.New("bad outer signature")
	// ErrNotForUs is returned when the envelope is addressed to another
	// agency, or to a recipient key this opener does not hold or that is
	// revoked.
	ErrNotForUs = errors.New("envelope not addressed to us")
	// ErrExpired is returned when now is past the envelope's expiry (plus
	// the clock skew allowance).
	ErrExpired = errors.New("envelope expired")
	// ErrNotYetValid is returned when now is before the envelope's creation
	// time (minus the clock skew allowance).
	ErrNotYetValid = errors.New("envelope not yet valid")
	// ErrLifetime is returned when an envelope's created-to-expires window
	// is longer than MaxLifetime.
	ErrLifetime = errors.New("envelope lifetime too long")
	// ErrDecrypt is returned when the ciphertext does not decrypt with the
	// recipient key named in the header.
	ErrDecrypt = errors.New("cannot decrypt envelope")
	// ErrBadInnerSignature is returned when the signature inside the
	// ciphertext does not verify.
	ErrBadInnerSignature = errors.New("bad inner signature")
	// ErrMismatch is returned when the signed header inside the ciphertext
	// differs from the outer header: signature stripping or surreptitious
	// forwarding.
	ErrMismatch = errors.New("inner header does not match outer header")
	// ErrRecipientUnavailable is returned by Seal when the recipient agency
	// is revoked or has no active encryption key.
	ErrRecipientUnavailable = errors.New("recipient agency is revoked or has no active encryption key")
)

// Reason codes carried by rejected receipts.
const (
	ReasonMalformed         = "malformed"
	ReasonTooLarge          = "too-large"
	ReasonVersion           = "unsupported-version"
	ReasonUnknownSender     = "unknown-sender"
	ReasonSenderRevoked     = "sender-revoked"
	ReasonBadOuterSignature = "bad-outer-signature"
	ReasonNotForUs          = "not-addressed-to-us"
	ReasonExpired           = "expired"
	ReasonNotYetValid       = "not-yet-valid"
	ReasonLifetime          = "lifetime-too-long"
	ReasonDecrypt           = "cannot-decrypt"
	ReasonBadInnerSignature = "bad-inner-signature"
	ReasonMismatch          = "header-mismatch"
	ReasonUnknownThread     = "unknown-thread"
	ReasonInternal          = "internal-error"
)

var reasonCodes = []struct {
	err  error
	code string
}{
	{ErrMalformed, ReasonMalformed},
	{ErrTooLarge, ReasonTooLarge},
	{ErrVersion, ReasonVersion},
	{ErrUnknownSender, ReasonUnknownSender},
	{ErrSenderRevoked, ReasonSenderRevoked},
	{ErrBadOuterSignature, ReasonBadOuterSignature},
	{ErrNotForUs, ReasonNotForUs},
	{ErrExpired, ReasonExpired},
	{ErrNotYetValid, ReasonNotYetValid},
	{ErrLifetime, ReasonLifetime},
	{ErrDecrypt, ReasonDecrypt},
	{ErrBadInnerSignature, ReasonBadInnerSignature},
	{ErrMismatch, ReasonMismatch},
	{ErrUnknownThread, ReasonUnknownThread},
}

// ReasonCode returns the receipt reason code of an error returned by Open:
// "" for nil, ReasonInternal for an error that is none of the sentinels.
func ReasonCode(err error) string {
	if err == nil {
		return ""
	}
	for _, rc := range reasonCodes {
		if errors.Is(err, rc.err) {
			return rc.code
		}
	}
	return ReasonInternal
}

// Header holds the routing fields of an envelope. They travel in clear (the
// broker sees them) and, identically, inside the ciphertext; the sender
// signs both copies.
type Header struct {
	// Version is the format version; Seal sets 0 to Version.
	Version int
	// ID is the envelope id, 1 to 64 characters of [A-Za-z0-9_-]; NewID
	// makes one.
	ID string
	// Kind is one of the Kind constants.
	Kind string
	// From and To are agency ids.
	From, To string
	// SenderKeyID and RecipientKeyID are directory key ids. Seal fills both
	// from the signer and the recipient agency it is given.
	SenderKeyID, RecipientKeyID string
	// Created and Expires bound when the envelope may be opened. They are
	// carried as Unix milliseconds, so Open returns them truncated to the
	// millisecond, in UTC.
	Created, Expires time.Time
}

// NewID returns a random envelope id: 128 bits, URL-safe base64 without
// padding (22 characters).
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func validID(s string) bool {
	if len(s) == 0 || len(s) > maxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func validKeyID(s string) bool {
	if len(s) != keyIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// validate checks every header field; the error does not wrap a sentinel.
func (h *Header) validate() error {
	switch {
	case h.Version != Version:
		return fmt.Errorf("version %d", h.Version)
	case !validID(h.ID):
		return fmt.Errorf("id %q is not 1 to %d characters of [A-Za-z0-9_-]", h.ID, maxIDLen)
	case !ValidKind(h.Kind):
		return fmt.Errorf("unknown kind %q", h.Kind)
	case !ValidSlug(h.From):
		return fmt.Errorf("from %q is not an agency id", h.From)
	case !ValidSlug(h.To):
		return fmt.Errorf("to %q is not an agency id", h.To)
	case h.From == h.To:
		return errors.New("from and to are the same agency")
	case !validKeyID(h.SenderKeyID):
		return fmt.Errorf("sender key id %q is not 16 hex digits", h.SenderKeyID)
	case !validKeyID(h.RecipientKeyID):
		return fmt.Errorf("recipient key id %q is not 16 hex digits", h.RecipientKeyID)
	case h.Created.UnixMilli() <= 0:
		return errors.New("created time is not after 1970")
	case h.Expires.UnixMilli() <= h.Created.UnixMilli():
		return errors.New("expires is not after created")
	}
	return nil
}

// appendHeader appends the header encoding (docs/PROTOCOL.md) to b.
func appendHeader(b []byte, h *Header) []byte {
	e := encoder{b}
	e.u8(uint8(h.Version))
	e.str8(h.ID)
	e.str8(h.Kind)
	e.str8(h.From)
	e.str8(h.To)
	e.str8(h.SenderKeyID)
	e.str8(h.RecipientKeyID)
	e.i64(h.Created.UnixMilli())
	e.i64(h.Expires.UnixMilli())
	return e.b
}

// parseHeader decodes exactly one header.
func parseHeader(b []byte) (Header, error) {
	d := decoder{b: b}
	v := d.u8()
	if d.err == nil && v != Version {
		return Header{}, fmt.Errorf("%w: version %d", ErrVersion, v)
	}
	h := Header{Version: int(v)}
	h.ID = d.str8()
	h.Kind = d.str8()
	h.From = d.str8()
	h.To = d.str8()
	h.SenderKeyID = d.str8()
	h.RecipientKeyID = d.str8()
	h.Created = time.UnixMilli(d.i64()).UTC()
	h.Expires = time.UnixMilli(d.i64()).UTC()
	if d.err != nil {
		return Header{}, fmt.Errorf("%w: header: %v", ErrMalformed, d.err)
	}
	if len(d.b) != 0 {
		return Header{}, fmt.Errorf("%w: trailing bytes after header", ErrMalformed)
	}
	if err := h.validate(); err != nil {
		return Header{}, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	return h, nil
}

// signingInput returns domain || header || digest.
func signingInput(domain string, header []byte, digest *[32]byte) []byte {
	m := make([]byte, 0, len(domain)+len(header)+len(digest))
	m = append(m, domain...)
	m = append(m, header...)
	return append(m, digest[:]...)
}

// envelope is a parsed envelope: slices of the input bytes.
type envelope struct {
	h          Header
	header     []byte
	ciphertext []byte
	sig        []byte
	// thread is set for a thread envelope (thread.go).
	thread bool
}

// parseEnvelope splits an envelope into its parts and decodes its header.
// It allocates nothing proportional to the input.
func parseEnvelope(env []byte) (*envelope, error) {
	if len(env) > MaxEnvelopeSize {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(env), MaxEnvelopeSize)
	}
	if len(env) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrMalformed)
	}
	d := decoder{b: env}
	m := d.take(len(envelopeMagic))
	if d.err != nil || (string(m) != envelopeMagic && string(m) != threadMagic) {
		return nil, fmt.Errorf("%w: not a rujukan envelope", ErrMalformed)
	}
	hl := int(d.u16())
	if d.err == nil && hl > maxHeaderSize {
		return nil, fmt.Errorf("%w: header length %d", ErrMalformed, hl)
	}
	header := d.take(hl)
	if d.err != nil {
		return nil, fmt.Errorf("%w: truncated header", ErrMalformed)
	}
	h, err := parseHeader(header)
	if err != nil {
		return nil, err
	}
	e := &envelope{h: h, header: header, thread: string(m) == threadMagic}
	cl := int(d.u32())
	if e.thread && d.err == nil && cl > MaxThreadBodySize+28 { // nonce and tag
		return e, fmt.Errorf("%w: thread envelope ciphertext of %d bytes, the limit is %d", ErrTooLarge, cl, MaxThreadBodySize+28)
	}
	e.ciphertext = d.take(cl)
	e.sig = d.take(ed25519.SignatureSize)
	if d.err != nil {
		return e, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	if len(d.b) != 0 {
		return e, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.b))
	}
	return e, nil
}

// ParseHeader returns the outer header of an envelope WITHOUT verifying
// anything: use it only for routing and logging. VerifyOuter checks who sent
// it; Open checks everything.
func ParseHeader(env []byte) (Header, error) {
	e, err := parseEnvelope(env)
	if e == nil {
		return Header{}, err
	}
	return e.h, err
}

// EnvelopeHash returns the SHA-256 of the envelope bytes, which receipts
// carry.
func EnvelopeHash(env []byte) [32]byte { return sha256.Sum256(env) }

// senderKey looks up the sender's signing key in the directory, whatever its
// status.
func senderKey(dir *Directory, agencyID, keyID string) (*Agency, ed25519.PublicKey, *PublicKey, error) {
	if dir == nil {
		return nil, nil, nil, fmt.Errorf("%w: no directory", ErrUnknownSender)
	}
	a, ok := dir.Agency(agencyID)
	if !ok {
		return nil, nil, nil, fmt.Errorf("%w: agency %q is not in the directory", ErrUnknownSender, agencyID)
	}
	k, ok := a.Key(UseSign, keyID)
	if !ok {
		return nil, nil, nil, fmt.Errorf("%w: agency %s has no signing key %q", ErrUnknownSender, agencyID, keyID)
	}
	pub, err := signingKeys.get(k.Public)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrUnknownSender, err)
	}
	return a, pub, k, nil
}

// verifyOuter checks the outer signature with the sender key from the
// directory, whatever its status.
func (e *envelope) verifyOuter(dir *Directory) (*Agency, *PublicKey, error) {
	a, pub, k, err := senderKey(dir, e.h.From, e.h.SenderKeyID)
	if err != nil {
		return nil, nil, err
	}
	digest := sha256.Sum256(e.ciphertext)
	domain := outerDomain
	if e.thread {
		domain = threadDomain
	}
	if !ed25519.Verify(pub, signingInput(domain, e.header, &digest), e.sig) {
		return nil, nil, ErrBadOuterSignature
	}
	return a, k, nil
}

// VerifyOuter checks who sent a stored envelope without decrypting it: it
// parses the envelope and verifies the outer signature with the sender key
// named in the header. A revoked key still verifies, so old envelopes stay
// checkable; the returned header says which key it was.
func VerifyOuter(env []byte, dir *Directory) (Header, error) {
	e, err := parseEnvelope(env)
	if err != nil {
		if e != nil {
			return e.h, err
		}
		return Header{}, err
	}
	if _, _, err := e.verifyOuter(dir); err != nil {
		return e.h, err
	}
	return e.h, nil
}

// Seal signs and then encrypts body for the agency to, and returns the
// envelope bytes.
//
// The caller fills h.ID, Kind, From, Created and Expires (To may be left
// empty; it must otherwise equal to.ID). Seal sets Version, SenderKeyID
// (the signer's key id) and RecipientKeyID (the recipient's one active
// encryption key). The signer must be the active signing key of h.From in
// the directory the recipient uses, or the recipient will refuse the
// envelope.
func Seal(h Header, body []byte, signer *Signer, to *Agency) ([]byte, error) {
	if signer == nil || to == nil {
		return nil, errors.New("seal: signer and recipient are required")
	}
	if h.To == "" {
		h.To = to.ID
	}
	if h.To != to.ID {
		return nil, fmt.Errorf("seal: header is addressed to %q but the recipient agency is %q", h.To, to.ID)
	}
	if to.Status != StatusActive {
		return nil, fmt.Errorf("seal: %w: %s", ErrRecipientUnavailable, to.ID)
	}
	k, ok := to.ActiveKey(UseEncrypt)
	if !ok {
		return nil, fmt.Errorf("seal: %w: %s", ErrRecipientUnavailable, to.ID)
	}
	r, err := recipients.get(k.Public)
	if err != nil {
		return nil, fmt.Errorf("seal: recipient %s: %w", to.ID, err)
	}
	if h.Version == 0 {
		h.Version = Version
	}
	h.SenderKeyID = signer.KeyID()
	h.RecipientKeyID = k.ID
	return seal(h, body, signer, r)
}

// seal does the work of Seal with the header as given.
func seal(h Header, body []byte, signer *Signer, r age.Recipient) ([]byte, error) {
	if len(body) > MaxBodySize {
		return nil, fmt.Errorf("seal: %w: body of %d bytes, the limit is %d", ErrTooLarge, len(body), MaxBodySize)
	}
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("seal: invalid header: %v", err)
	}
	header := appendHeader(make([]byte, 0, 128), &h)

	bodyDigest := sha256.Sum256(body)
	innerSig := signer.sign(signingInput(innerDomain, header, &bodyDigest))
	ip := encoder{make([]byte, 0, len(innerMagic)+2+len(header)+4)}
	ip.rawStr(innerMagic)
	ip.u16(uint16(len(header)))
	ip.raw(header)
	ip.u32(uint32(len(body)))
	innerLen := len(ip.b) + len(body) + len(innerSig)

	out := encoder{make([]byte, 0, len(envelopeMagic)+2+len(header)+4+ageSize(innerLen)+ed25519.SignatureSize)}
	out.rawStr(envelopeMagic)
	out.u16(uint16(len(header)))
	out.raw(header)
	ctStart := len(out.b) + 4
	out.u32(0) // ciphertext length, filled in below
	w := &appendWriter{out.b}
	aw, err := age.Encrypt(w, r)
	if err != nil {
		return nil, fmt.Errorf("seal: failed to encrypt: %w", err)
	}
	for _, p := range [][]byte{ip.b, body, innerSig} {
		if _, err := aw.Write(p); err != nil {
			return nil, fmt.Errorf("seal: failed to encrypt: %w", err)
		}
	}
	if err := aw.Close(); err != nil {
		return nil, fmt.Errorf("seal: failed to encrypt: %w", err)
	}
	env := w.b
	ct := env[ctStart:]
	putU32(env[ctStart-4:], uint32(len(ct)))
	ctDigest := sha256.Sum256(ct)
	env = append(env, signer.sign(signingInput(outerDomain, header, &ctDigest))...)
	if len(env) > MaxEnvelopeSize {
		return nil, fmt.Errorf("seal: %w: envelope of %d bytes", ErrTooLarge, len(env))
	}
	return env, nil
}

func putU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

// ageSize estimates the size of the age file of n plaintext bytes: the
// hybrid recipient header (about 1.7 KB), the 16-byte nonce and a 16-byte
// tag per 64 KiB chunk. It only sizes a buffer.
func ageSize(n int) int { return 2048 + 16 + n + 16*(n/(64<<10)+1) }

type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// parsed remembers the results of a key parser for the keys of the
// directory: parsing a hybrid recipient, or checking a signing key's point,
// costs about as much as a signature. It holds at most 4096 keys.
type parsed[T any] struct {
	mu    sync.Mutex
	m     map[string]T
	parse func(string) (T, error)
}

func (c *parsed[T]) get(s string) (T, error) {
	c.mu.Lock()
	v, ok := c.m[s]
	c.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := c.parse(s)
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= 4096 {
		c.m = make(map[string]T)
	}
	c.m[s] = v
	c.mu.Unlock()
	return v, nil
}

var (
	recipients  = parsed[*age.HybridRecipient]{parse: ParseRecipient}
	signingKeys = parsed[ed25519.PublicKey]{parse: ParseSigningPublicKey}
)

// oneHybridStanza checks that the age header wraps the file key for
// exactly one recipient, a post-quantum hybrid one (PROTOCOL section 2): a
// sender that adds a second recipient, or a classical one, would copy the
// referral to someone else or drop the post-quantum protection unnoticed.
func oneHybridStanza(ct []byte) error {
	hdr, err := age.ExtractHeader(bytes.NewReader(ct))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	stanzas := 0
	for _, line := range bytes.Split(hdr, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte("-> ")) {
			continue
		}
		stanzas++
		if f := bytes.Fields(line[3:]); len(f) == 0 || string(f[0]) != "mlkem768x25519" {
			return fmt.Errorf("%w: a recipient stanza is not post-quantum hybrid", ErrDecrypt)
		}
	}
	if stanzas != 1 {
		return fmt.Errorf("%w: %d recipient stanzas, want exactly 1", ErrDecrypt, stanzas)
	}
	return nil
}

// Opener opens the envelopes addressed to one agency. It is safe for
// concurrent use.
type Opener struct {
	self string
	ids  map[string]*age.HybridIdentity
	dir  atomic.Pointer[Directory]
	// threads finds the thread of a thread envelope (SetThreads).
	threads atomic.Pointer[func(string) (Thread, bool)]
	// ClockSkew widens the created/expires window on each side. NewOpener
	// sets it to DefaultClockSkew; change it before first use.
	ClockSkew time.Duration
}

// NewOpener returns an Opener for agency self, which holds the given age
// identities (the current one and, after a rotation, older ones) and trusts
// the given verified directory.
func NewOpener(self string, dir *Directory, identities ...*Identity) (*Opener, error) {
	if !ValidSlug(self) {
		return nil, fmt.Errorf("opener: %q is not an agency id", self)
	}
	if dir == nil {
		return nil, errors.New("opener: a directory is required")
	}
	if len(identities) == 0 {
		return nil, errors.New("opener: at least one age identity is required")
	}
	o := &Opener{self: self, ids: make(map[string]*age.HybridIdentity), ClockSkew: DefaultClockSkew}
	for _, id := range identities {
		if id == nil || id.id == nil {
			return nil, errors.New("opener: nil age identity")
		}
		o.ids[KeyID(UseEncrypt, id.Recipient())] = id.id
	}
	o.dir.Store(dir)
	return o, nil
}

// SetDirectory replaces the directory, for example after a newer signed
// directory was verified and checked with CheckReplace.
func (o *Opener) SetDirectory(d *Directory) { o.dir.Store(d) }

// Directory returns the directory in use.
func (o *Opener) Directory() *Directory { return o.dir.Load() }

// openError carries whether the outer signature verified before a failure.
type openError struct {
	err      error
	verified bool
}

func (e *openError) Error() string { return e.err.Error() }
func (e *openError) Unwrap() error { return e.err }

// OuterVerified reports whether an error from Open came after the outer
// signature had verified with the sender's key from the directory. Only
// then is the header's From known to be the sender, and only then may a
// signed "rejected" receipt be sent back to it.
func OuterVerified(err error) bool {
	var oe *openError
	return errors.As(err, &oe) && oe.verified
}

// Open checks and decrypts an envelope received at time now, in this order:
// size and format; the outer signature, with the sender's key looked up in
// the directory by From and SenderKeyID; the sender's status (the agency
// active, the key active or retired until its NotAfter); that To is this
// agency and RecipientKeyID one of its keys that this Opener holds, active
// or retired until its NotAfter; the created/expires window; then it
// decrypts the whole ciphertext,
// verifies the inner signature and checks that the inner header equals the
// outer one. Only then does it return the header and the body.
//
// The error wraps one of the Err sentinels (see ReasonCode). When the outer
// header parsed, the returned Header is filled even on error; OuterVerified
// tells whether its From can be trusted. Open does not detect replays: the
// caller rejects an envelope id it has already stored.
func (o *Opener) Open(env []byte, now time.Time) (Header, []byte, error) {
	return o.open(env, now, false, false)
}

// OpenVerified is Open for an envelope whose outer signature VerifyOuter
// has just checked: it makes every other check of Open, and looks the
// sender's key up without verifying the signature a second time (key ids
// name keys, so the key is the one VerifyOuter used).
func (o *Opener) OpenVerified(env []byte, now time.Time) (Header, []byte, error) {
	return o.open(env, now, false, true)
}

// OpenStored opens an envelope that Open accepted earlier and that was kept
// as received (data at rest stays encrypted). It makes every check of Open
// except the time window and the revocation status of the keys, which may
// have changed since the envelope was received.
func (o *Opener) OpenStored(env []byte) (Header, []byte, error) {
	return o.open(env, time.Time{}, true, false)
}

func (o *Opener) open(env []byte, now time.Time, stored, verified bool) (Header, []byte, error) {
	e, err := parseEnvelope(env)
	if err != nil {
		if e != nil {
			return e.h, nil, &openError{err: err}
		}
		return Header{}, nil, &openError{err: err}
	}
	h := e.h
	fail := func(err error) (Header, []byte, error) {
		return h, nil, &openError{err: err, verified: true}
	}
	dir := o.dir.Load()
	var a *Agency
	var k *PublicKey
	if verified {
		a, _, k, err = senderKey(dir, h.From, h.SenderKeyID)
	} else {
		a, k, err = e.verifyOuter(dir)
	}
	if err != nil {
		return h, nil, &openError{err: err}
	}
	if !stored {
		if a.Status != StatusActive {
			return fail(fmt.Errorf("%w: agency %s is revoked in the directory", ErrSenderRevoked, h.From))
		}
		if !k.AcceptableAt(now) {
			return fail(fmt.Errorf("%w: signing key %s of %s %s", ErrSenderRevoked, h.SenderKeyID, h.From, k.describeStatus(now)))
		}
	}
	if h.To != o.self {
		return fail(fmt.Errorf("%w: addressed to %s", ErrNotForUs, h.To))
	}
	id, ok := o.ids[h.RecipientKeyID]
	if !ok && !e.thread {
		return fail(fmt.Errorf("%w: recipient key %s is not one of ours", ErrNotForUs, h.RecipientKeyID))
	}
	if !stored {
		self, ok := dir.Agency(o.self)
		if !ok {
			return fail(fmt.Errorf("%w: %s is not in the directory", ErrNotForUs, o.self))
		}
		rk, ok := self.Key(UseEncrypt, h.RecipientKeyID)
		switch {
		case self.Status != StatusActive:
			return fail(fmt.Errorf("%w: %s is revoked in the directory", ErrNotForUs, o.self))
		case e.thread:
		case !ok:
			return fail(fmt.Errorf("%w: recipient key %s is not in the directory", ErrNotForUs, h.RecipientKeyID))
		case !rk.AcceptableAt(now):
			return fail(fmt.Errorf("%w: recipient key %s %s", ErrNotForUs, h.RecipientKeyID, rk.describeStatus(now)))
		}
		if now.Before(h.Created.Add(-o.ClockSkew)) {
			return fail(fmt.Errorf("%w: created %s", ErrNotYetValid, h.Created.Format(time.RFC3339)))
		}
		if now.After(h.Expires.Add(o.ClockSkew)) {
			return fail(fmt.Errorf("%w: expired %s", ErrExpired, h.Expires.Format(time.RFC3339)))
		}
		if h.Expires.Sub(h.Created) > MaxLifetime {
			return fail(fmt.Errorf("%w: %s", ErrLifetime, h.Expires.Sub(h.Created)))
		}
	}

	if e.thread {
		body, err := o.openThread(e)
		if err != nil {
			return fail(err)
		}
		return h, body, nil
	}
	plain, err := decrypt(e.ciphertext, id)
	if err != nil {
		return fail(err)
	}

	d := decoder{b: plain}
	if m := d.take(len(innerMagic)); d.err != nil || string(m) != innerMagic {
		return fail(fmt.Errorf("%w: inner object", ErrMalformed))
	}
	header := d.take(int(d.u16()))
	body := d.take(int(d.u32()))
	sig := d.take(ed25519.SignatureSize)
	if d.err != nil || len(d.b) != 0 {
		return fail(fmt.Errorf("%w: inner object framing", ErrMalformed))
	}
	ih, err := parseHeader(header)
	if err != nil {
		return fail(fmt.Errorf("inner object: %w", err))
	}
	_, pub, _, err := senderKey(dir, ih.From, ih.SenderKeyID)
	if err != nil {
		return fail(fmt.Errorf("%w: inner signer: %v", ErrBadInnerSignature, err))
	}
	digest := sha256.Sum256(body)
	if !ed25519.Verify(pub, signingInput(innerDomain, header, &digest), sig) {
		return fail(ErrBadInnerSignature)
	}
	if !bytes.Equal(header, e.header) {
		return fail(fmt.Errorf("%w: inner is %s -> %s (%s), outer is %s -> %s (%s)",
			ErrMismatch, ih.From, ih.To, ih.ID, h.From, h.To, h.ID))
	}
	return h, body, nil
}

// decrypt decrypts an age file in full into one buffer the size of the
// ciphertext (the plaintext is always shorter) and returns the plaintext only
// if the whole file authenticated.
func decrypt(ct []byte, id *age.HybridIdentity) ([]byte, error) {
	if err := oneHybridStanza(ct); err != nil {
		return nil, err
	}
	// DecryptReaderAt authenticates the final chunk (and so the length)
	// first and allocates one chunk buffer per read, where the streaming
	// reader allocates two 64 KiB buffers per message.
	r, size, err := age.DecryptReaderAt(bytes.NewReader(ct), int64(len(ct)), id)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	if size < 0 || size > int64(len(ct)) {
		return nil, fmt.Errorf("%w: plaintext longer than ciphertext", ErrDecrypt)
	}
	buf := make([]byte, size)
	n, err := r.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	if int64(n) != size {
		return nil, fmt.Errorf("%w: short plaintext", ErrDecrypt)
	}
	return buf, nil
}

// KnownReason reports whether code is a reason code ReasonCode returns.
func KnownReason(code string) bool {
	if code == ReasonInternal {
		return true
	}
	for _, rc := range reasonCodes {
		if rc.code == code {
			return true
		}
	}
	return false
}
