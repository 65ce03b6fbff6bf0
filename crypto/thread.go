package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
)

// A thread is a message that opens a conversation between two agencies (a
// referral, a statement request) and what follows it: its receipts and its
// status changes. Those follow-ups are short and many, and sealing each to
// the other agency's post-quantum hybrid key costs most of a referral's
// CPU. So the sender of the first message puts a fresh ThreadKey in its
// sealed, signed body; it travels only inside that hybrid envelope, and the
// follow-ups of the thread are thread envelopes: AES-256-GCM under a key
// derived from it, signed with Ed25519 like every envelope. They keep the
// post-quantum protection of the first message (a quantum adversary must
// break the hybrid envelope to learn the key, and a 256-bit symmetric key
// holds), and the cost of a signature and an AEAD. docs/PROTOCOL.md
// section 2, "Thread envelopes", specifies the bytes.

// ThreadKey is the secret of one thread, shared by its two agencies.
type ThreadKey [32]byte

// UseThread names thread keys in key ids: a thread envelope's
// recipient_key_id is KeyID(UseThread, the key in base64url).
const UseThread KeyUse = "thread"

const (
	threadMagic  = "RJKT"
	threadDomain = "rujukan/v1/envelope/thread\x00"
)

// MaxThreadBodySize caps the body of a thread envelope: a signed receipt
// is at most 1 KiB and a status body 8 KiB, and an envelope that may wait
// for its thread (ErrUnknownThread) must be small.
const MaxThreadBodySize = 16 << 10

// IsThreadEnvelope reports whether env is framed as a thread envelope (it
// checks nothing else).
func IsThreadEnvelope(env []byte) bool {
	return len(env) >= len(threadMagic) && string(env[:len(threadMagic)]) == threadMagic
}

// ErrUnknownThread is returned by Open for a thread envelope whose thread
// this Opener does not know (yet: a status may overtake the referral it
// is about).
var ErrUnknownThread = errors.New("unknown thread")

// NewThreadKey returns a new random thread key.
func NewThreadKey() ThreadKey {
	var k ThreadKey
	rand.Read(k[:])
	return k
}

// ParseThreadKey decodes a thread key from its String form.
func ParseThreadKey(s string) (ThreadKey, error) {
	var k ThreadKey
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != len(k) {
		return k, fmt.Errorf("%w: a thread key is 32 bytes in unpadded base64url", ErrKeyMalformed)
	}
	copy(k[:], b)
	return k, nil
}

// String is the key in unpadded base64url (43 characters), as bodies carry
// it.
func (k ThreadKey) String() string { return base64.RawURLEncoding.EncodeToString(k[:]) }

// ID is the thread's key id: 16 hex digits of a hash of the key, which
// names the thread in the headers of its envelopes and reveals nothing of
// the key.
func (k ThreadKey) ID() string { return KeyID(UseThread, k.String()) }

// ThreadKind reports whether envelopes of kind k may be thread envelopes:
// receipts and status changes. Everything else, and every first message
// of a thread, is sealed to the recipient's hybrid key.
func ThreadKind(k string) bool { return k == KindReceipt || k == KindStatus }

// Thread is what an Opener needs to know of a thread: its key and the
// other agency in it.
type Thread struct {
	Key  ThreadKey
	Peer string
}

// SealThread signs and encrypts body as an envelope of the thread of key,
// to agency to. h is filled in as for Seal; RecipientKeyID becomes the
// thread's key id. Only ThreadKind kinds may be sealed so.
func SealThread(h Header, body []byte, signer *Signer, to *Agency, key ThreadKey) ([]byte, error) {
	if signer == nil || to == nil {
		return nil, errors.New("seal: signer and recipient are required")
	}
	if h.To == "" {
		h.To = to.ID
	}
	switch {
	case h.To != to.ID:
		return nil, fmt.Errorf("seal: header is addressed to %q but the recipient agency is %q", h.To, to.ID)
	case to.Status != StatusActive:
		return nil, fmt.Errorf("seal: %w: %s", ErrRecipientUnavailable, to.ID)
	case !ThreadKind(h.Kind):
		return nil, fmt.Errorf("seal: a %s is never a thread envelope", h.Kind)
	case len(body) > MaxThreadBodySize:
		return nil, fmt.Errorf("seal: %w: body of %d bytes, the limit of a thread envelope is %d", ErrTooLarge, len(body), MaxThreadBodySize)
	}
	if h.Version == 0 {
		h.Version = Version
	}
	h.SenderKeyID = signer.KeyID()
	h.RecipientKeyID = key.ID()
	if err := h.validate(); err != nil {
		return nil, fmt.Errorf("seal: invalid header: %v", err)
	}
	header := appendHeader(make([]byte, 0, 128), &h)
	aead, err := threadAEAD(key, header)
	if err != nil {
		return nil, err
	}
	ctLen := aead.NonceSize() + len(body) + aead.Overhead()
	out := encoder{make([]byte, 0, len(threadMagic)+2+len(header)+4+ctLen+ed25519.SignatureSize)}
	out.rawStr(threadMagic)
	out.u16(uint16(len(header)))
	out.raw(header)
	out.u32(uint32(ctLen))
	nonce := out.b[len(out.b) : len(out.b)+aead.NonceSize()]
	rand.Read(nonce)
	ct := aead.Seal(out.b[:len(out.b)+len(nonce)], nonce, body, header)
	ctDigest := sha256.Sum256(ct[len(out.b):])
	env := append(ct, signer.sign(signingInput(threadDomain, header, &ctDigest))...)
	if len(env) > MaxEnvelopeSize {
		return nil, fmt.Errorf("seal: %w: envelope of %d bytes", ErrTooLarge, len(env))
	}
	return env, nil
}

// threadAEAD is the cipher of one thread envelope: AES-256-GCM under
// HKDF-SHA256(key, info = domain || header), a key of its own for each
// envelope (the header holds its random id), so that even a repeated nonce
// could not join two envelopes.
func threadAEAD(key ThreadKey, header []byte) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, key[:], nil, threadDomain+string(header), 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// openThread decrypts the ciphertext of a verified thread envelope e with
// the thread the Opener's lookup finds for it.
func (o *Opener) openThread(e *envelope) ([]byte, error) {
	if !ThreadKind(e.h.Kind) {
		return nil, fmt.Errorf("%w: a %s is never a thread envelope", ErrMalformed, e.h.Kind)
	}
	lookup := o.threads.Load()
	if lookup == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownThread, e.h.RecipientKeyID)
	}
	t, ok := (*lookup)(e.h.RecipientKeyID)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownThread, e.h.RecipientKeyID)
	}
	if t.Peer != e.h.From || t.Key.ID() != e.h.RecipientKeyID {
		return nil, fmt.Errorf("%w: thread %s is not shared with %s", ErrNotForUs, e.h.RecipientKeyID, e.h.From)
	}
	aead, err := threadAEAD(t.Key, e.header)
	if err != nil {
		return nil, err
	}
	n := aead.NonceSize()
	if len(e.ciphertext) < n+aead.Overhead() {
		return nil, fmt.Errorf("%w: ciphertext of %d bytes", ErrDecrypt, len(e.ciphertext))
	}
	body, err := aead.Open(nil, e.ciphertext[:n], e.ciphertext[n:], e.header)
	if err != nil {
		return nil, fmt.Errorf("%w: thread envelope does not authenticate", ErrDecrypt)
	}
	return body, nil
}

// SetThreads sets how the Opener finds the thread of a thread envelope by
// its key id (nil: it knows none, and refuses them with ErrUnknownThread).
// The lookup must be safe for concurrent use.
func (o *Opener) SetThreads(lookup func(id string) (Thread, bool)) {
	if lookup == nil {
		o.threads.Store(nil)
		return
	}
	o.threads.Store(&lookup)
}
