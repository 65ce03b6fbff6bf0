package crypto

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// threadOpener is an opener of agency self that knows the given threads.
func (n *testNet) threadOpener(t testing.TB, self string, threads map[string]Thread) *Opener {
	o := n.opener(t, self)
	o.SetThreads(func(id string) (Thread, bool) { th, ok := threads[id]; return th, ok })
	return o
}

func (n *testNet) mustSealThread(t testing.TB, h Header, body []byte, key ThreadKey) []byte {
	t.Helper()
	env, err := SealThread(h, body, n.members[h.From].signer, n.agency(t, h.To), key)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestThreadRoundTrip(t *testing.T) {
	n := MustNet(t)
	key := NewThreadKey()
	iom := n.threadOpener(t, "iom", map[string]Thread{key.ID(): {Key: key, Peer: "shelter"}})
	shelter := n.threadOpener(t, "shelter", map[string]Thread{key.ID(): {Key: key, Peer: "iom"}})
	for _, size := range []int{0, 1, 500, MaxThreadBodySize} {
		body := bytes.Repeat([]byte{'r'}, size)
		h := testHeader(KindReceipt, "shelter", "iom")
		env := n.mustSealThread(t, h, body, key)
		if len(env) > MaxEnvelopeSize {
			t.Fatalf("%d-byte body: envelope of %d bytes", size, len(env))
		}
		got, b, err := iom.Open(env, testNow)
		if err != nil {
			t.Fatalf("%d-byte body: %v", size, err)
		}
		if !bytes.Equal(b, body) || got.RecipientKeyID != key.ID() || got.SenderKeyID != n.members["shelter"].signer.KeyID() {
			t.Fatalf("%d-byte body: opened %d bytes, header %+v", size, len(b), got)
		}
		if _, err := VerifyOuter(env, n.dir); err != nil {
			t.Errorf("VerifyOuter: %v", err)
		}
		if _, _, err := iom.OpenStored(env); err != nil {
			t.Errorf("OpenStored: %v", err)
		}
	}
	// And the other way, a status from iom to the shelter.
	env := n.mustSealThread(t, testHeader(KindStatus, "iom", "shelter"), []byte(`{"status":"withdrawn"}`), key)
	if _, b, err := shelter.Open(env, testNow); err != nil || string(b) != `{"status":"withdrawn"}` {
		t.Fatalf("status: %q %v", b, err)
	}
	// Two seals of the same header and body differ (random nonce).
	h := testHeader(KindReceipt, "shelter", "iom")
	if a, b := n.mustSealThread(t, h, []byte("x"), key), n.mustSealThread(t, h, []byte("x"), key); bytes.Equal(a, b) {
		t.Error("two seals gave the same bytes")
	}
}

func TestThreadRefusals(t *testing.T) {
	n := MustNet(t)
	key := NewThreadKey()
	other := NewThreadKey()
	iom := n.threadOpener(t, "iom", map[string]Thread{key.ID(): {Key: key, Peer: "shelter"},
		other.ID(): {Key: other, Peer: "police"}})
	good := func() []byte {
		return n.mustSealThread(t, testHeader(KindReceipt, "shelter", "iom"), []byte("receipt"), key)
	}
	flip := func(env []byte, at int) []byte {
		c := bytes.Clone(env)
		c[at] ^= 1
		return c
	}
	resign := func(env []byte, signer string) []byte {
		e, err := parseEnvelope(env)
		if err != nil {
			t.Fatal(err)
		}
		d := sha256.Sum256(e.ciphertext)
		c := bytes.Clone(env[:len(env)-64])
		return append(c, n.members[signer].signer.sign(signingInput(threadDomain, e.header, &d))...)
	}
	// withHeader seals a thread envelope whose header h the caller sets
	// exactly (SealThread would refuse some of them).
	withHeader := func(h Header, k ThreadKey, signer string) []byte {
		h.Version, h.SenderKeyID, h.RecipientKeyID = Version, n.members[signer].signer.KeyID(), k.ID()
		header := appendHeader(nil, &h)
		aead, _ := threadAEAD(k, header)
		nonce := make([]byte, aead.NonceSize())
		ct := aead.Seal(nonce, nonce, []byte("body"), header)
		out := encoder{}
		out.rawStr(threadMagic)
		out.u16(uint16(len(header)))
		out.raw(header)
		out.u32(uint32(len(ct)))
		out.raw(ct)
		d := sha256.Sum256(ct)
		return append(out.b, n.members[signer].signer.sign(signingInput(threadDomain, header, &d))...)
	}
	env := good()
	hl := int(env[4])<<8 | int(env[5])
	ctAt := 4 + 2 + hl + 4
	for _, tc := range []struct {
		name string
		env  []byte
		o    *Opener
		want error
	}{
		{"ciphertext bit flipped", flip(env, ctAt+20), iom, ErrBadOuterSignature},
		{"ciphertext flipped and re-signed by the sender", resign(flip(env, ctAt+20), "shelter"), iom, ErrDecrypt},
		{"nonce flipped and re-signed", resign(flip(env, ctAt), "shelter"), iom, ErrDecrypt},
		{"signed by another agency", resign(env, "police"), iom, ErrBadOuterSignature},
		{"hybrid magic on a thread envelope", append([]byte("RJKE"), env[4:]...), iom, ErrBadOuterSignature},
		{"unknown thread", good(), n.threadOpener(t, "iom", nil), ErrUnknownThread},
		{"no thread lookup", good(), n.opener(t, "iom"), ErrUnknownThread},
		// The police know the other thread with iom, not this one: using
		// its id with their own key does not open as iom's thread with
		// the shelter.
		{"thread of another pair", withHeader(testHeader(KindReceipt, "police", "iom"), key, "police"), iom, ErrNotForUs},
		{"right thread id, wrong key", func() []byte {
			e := withHeader(testHeader(KindReceipt, "shelter", "iom"), NewThreadKey(), "shelter")
			return e
		}(), n.threadOpener(t, "iom", map[string]Thread{key.ID(): {Key: key, Peer: "shelter"}}), ErrUnknownThread},
		{"a referral as a thread envelope", withHeader(testHeader(KindReferral, "shelter", "iom"), key, "shelter"), iom, ErrMalformed},
		{"a statement as a thread envelope", withHeader(testHeader(KindStatement, "shelter", "iom"), key, "shelter"), iom, ErrMalformed},
		{"addressed to another agency", withHeader(testHeader(KindReceipt, "shelter", "dinsos"), key, "shelter"), iom, ErrNotForUs},
		{"expired", withHeader(Header{ID: NewID(), Kind: KindReceipt, From: "shelter", To: "iom",
			Created: testNow.Add(-48 * time.Hour), Expires: testNow.Add(-24 * time.Hour)}, key, "shelter"), iom, ErrExpired},
		{"truncated", env[:len(env)-1], iom, ErrMalformed},
		{"trailing byte", append(bytes.Clone(env), 0), iom, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, body, err := tc.o.Open(tc.env, testNow)
			if !errors.Is(err, tc.want) || body != nil {
				t.Fatalf("Open = %q, %v; want %v", body, err, tc.want)
			}
		})
	}
	if _, err := SealThread(testHeader(KindReferral, "iom", "shelter"), nil, n.members["iom"].signer, n.agency(t, "shelter"), key); err == nil {
		t.Error("SealThread sealed a referral")
	}
	if _, err := SealThread(testHeader(KindReceipt, "shelter", "iom"), make([]byte, MaxThreadBodySize+1), n.members["shelter"].signer, n.agency(t, "iom"), key); !errors.Is(err, ErrTooLarge) {
		t.Errorf("SealThread of a body over the limit: %v", err)
	}
	// A thread envelope too large to be a receipt or a status is refused
	// before anything else, by its framing (so it never waits for a
	// thread).
	big := withHeader(testHeader(KindStatus, "shelter", "iom"), key, "shelter")
	bhl := int(big[4])<<8 | int(big[5])
	big = append(big[:6+bhl], 0, 1, 0, 0) // ciphertext length 64 KiB
	big = append(big, make([]byte, 64<<10+64)...)
	if _, err := VerifyOuter(big, n.dir); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a 64 KiB thread envelope: %v", err)
	}
	if ReasonCode(ErrUnknownThread) != ReasonUnknownThread || !KnownReason(ReasonUnknownThread) {
		t.Error("unknown-thread is not a reason code")
	}
}

func TestThreadKeyText(t *testing.T) {
	k := NewThreadKey()
	got, err := ParseThreadKey(k.String())
	if err != nil || got != k || len(k.String()) != 43 {
		t.Fatalf("ParseThreadKey(%q) = %v, %v", k.String(), got, err)
	}
	for _, bad := range []string{"", k.String() + "A", k.String()[:42], k.String()[:42] + "=", "+" + k.String()[1:],
		string(bytes.Repeat([]byte{'A'}, 43))[:42] + "B"} {
		if _, err := ParseThreadKey(bad); err == nil {
			t.Errorf("ParseThreadKey(%q) accepted", bad)
		}
	}
	if k.ID() == NewThreadKey().ID() || !validKeyID(k.ID()) {
		t.Errorf("key id %q", k.ID())
	}
}

var updateThread = flag.Bool("update-thread", false, "rewrite the thread envelope vector in testdata/vectors")

// threadVector is testdata/vectors/thread.json: a receipt sent as a thread
// envelope from the shelter to iom, in the network of vectors.json.
type threadVector struct {
	Comment   string `json:"comment"`
	File      string `json:"file"`
	SHA256    string `json:"sha256"`
	ThreadKey string `json:"thread_key"`
	ThreadID  string `json:"thread_id"`
	// EnvelopeKeyHex is HKDF-SHA256(thread key, "", domain || header).
	EnvelopeKeyHex string `json:"envelope_key_hex"`
	Header         header `json:"header"`
	BodyHex        string `json:"body_hex"`
}

// TestThreadVector opens the thread envelope vector, and decodes it by hand
// as docs/PROTOCOL.md section 2, "Thread envelopes", describes it.
func TestThreadVector(t *testing.T) {
	var v vectors
	if err := json.Unmarshal(readVector(t, "vectors.json"), &v); err != nil {
		t.Fatal(err)
	}
	dir, err := ParseDirectory(readVector(t, v.Directory), seedKey("authority").Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if *updateThread {
		writeThreadVector(t, dir, v.Now)
	}
	var tv threadVector
	if err := json.Unmarshal(readVector(t, "thread.json"), &tv); err != nil {
		t.Fatal(err)
	}
	key, err := ParseThreadKey(tv.ThreadKey)
	if err != nil || key.ID() != tv.ThreadID {
		t.Fatalf("thread key %v, id %s want %s", err, key.ID(), tv.ThreadID)
	}
	env := readVector(t, tv.File)
	if h := EnvelopeHash(env); hex.EncodeToString(h[:]) != tv.SHA256 {
		t.Errorf("sha256 %x, want %s", h, tv.SHA256)
	}
	o, err := NewOpener("iom", dir, mustIdentity(t))
	if err != nil {
		t.Fatal(err)
	}
	o.SetThreads(func(id string) (Thread, bool) { return Thread{Key: key, Peer: "shelter"}, id == tv.ThreadID })
	h, body, err := o.Open(env, v.Now)
	if err != nil {
		t.Fatal(err)
	}
	if h != Header(tv.Header) || hex.EncodeToString(body) != tv.BodyHex {
		t.Errorf("opened %+v %x", h, body)
	}
	if _, err := VerifyReceiptEnvelope(h, body, dir); err != nil {
		t.Errorf("the receipt inside: %v", err)
	}

	// By hand.
	if string(env[:4]) != "RJKT" {
		t.Fatalf("magic %q", env[:4])
	}
	hl := int(env[4])<<8 | int(env[5])
	hdr := env[6 : 6+hl]
	cl := int(env[6+hl])<<24 | int(env[7+hl])<<16 | int(env[8+hl])<<8 | int(env[9+hl])
	ct := env[10+hl : 10+hl+cl]
	sig := env[10+hl+cl:]
	_, pub, _, err := senderKey(dir, h.From, h.SenderKeyID)
	if err != nil {
		t.Fatal(err)
	}
	ctHash := sha256.Sum256(ct)
	if !ed25519.Verify(pub, append(append([]byte("rujukan/v1/envelope/thread\x00"), hdr...), ctHash[:]...), sig) {
		t.Error("signature does not verify as documented")
	}
	k, _ := hkdf.Key(sha256.New, key[:], nil, "rujukan/v1/envelope/thread\x00"+string(hdr), 32)
	if hex.EncodeToString(k) != tv.EnvelopeKeyHex {
		t.Errorf("envelope key %x, want %s", k, tv.EnvelopeKeyHex)
	}
	block, _ := aes.NewCipher(k)
	gcm, _ := cipher.NewGCM(block)
	plain, err := gcm.Open(nil, ct[:12], ct[12:], hdr)
	if err != nil || hex.EncodeToString(plain) != tv.BodyHex {
		t.Errorf("AES-256-GCM as documented: %x %v", plain, err)
	}
}

// mustIdentity is an age identity that opens no vector: thread envelopes
// need none.
func mustIdentity(t *testing.T) *Identity {
	id, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func writeThreadVector(t *testing.T, dir *Directory, now time.Time) {
	signer, err := NewSigner(seedKey("shelter/sign"))
	if err != nil {
		t.Fatal(err)
	}
	var key ThreadKey
	copy(key[:], bytes.Repeat([]byte{0x42}, 32))
	at := now.Add(-10 * time.Second)
	var referral [32]byte
	copy(referral[:], bytes.Repeat([]byte{0x17}, 32))
	rb, err := SignReceipt(Receipt{EnvelopeID: "golden-referral-0002", EnvelopeHash: referral, From: "shelter", To: "iom",
		Event: EventRead, At: at}, signer)
	if err != nil {
		t.Fatal(err)
	}
	iom, _ := dir.Agency("iom")
	h := Header{ID: "golden-thread-0001", Kind: KindReceipt, From: "shelter", To: "iom", Created: at, Expires: at.Add(72 * time.Hour)}
	env, err := SealThread(h, rb, signer, iom, key)
	if err != nil {
		t.Fatal(err)
	}
	ph, _ := ParseHeader(env)
	hdr := appendHeader(nil, &ph)
	k, _ := hkdf.Key(sha256.New, key[:], nil, threadDomain+string(hdr), 32)
	sum := EnvelopeHash(env)
	tv := threadVector{Comment: "A read receipt from the shelter to iom as a thread envelope (docs/PROTOCOL.md section 2, Thread envelopes). The thread key is a test key.",
		File: "thread.env", SHA256: hex.EncodeToString(sum[:]), ThreadKey: key.String(), ThreadID: key.ID(),
		EnvelopeKeyHex: hex.EncodeToString(k), Header: header(ph), BodyHex: hex.EncodeToString(rb)}
	b, _ := json.MarshalIndent(tv, "", "  ")
	for name, data := range map[string][]byte{"thread.env": env, "thread.json": append(b, '\n')} {
		if err := os.WriteFile(filepath.Join(vectorDir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
