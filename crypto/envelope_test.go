package crypto

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

func TestSealOpenRoundTrip(t *testing.T) {
	n := MustNet(t)
	for _, tc := range []struct {
		name, kind, from, to string
		body                 []byte
	}{
		{"referral", KindReferral, "iom", "shelter", []byte(`{"person":{"pseudonym":"V-2026-0042"}}`)},
		{"status", KindStatus, "shelter", "iom", []byte(`{"status":"accepted"}`)},
		{"receipt", KindReceipt, "shelter", "iom", []byte("RJKR...")},
		{"statement-request", KindStatementRequest, "police", "dinsos", []byte(`{"request":"statement"}`)},
		{"statement", KindStatement, "dinsos", "police", []byte(`{"statement":"..."}`)},
		{"empty body", KindReferral, "dinsos", "shelter", nil},
		{"binary body", KindReferral, "iom", "police", bytes.Repeat([]byte{0, 0xff, '\n'}, 70000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := testHeader(tc.kind, tc.from, tc.to)
			env := n.mustSeal(t, h, tc.body)
			got, body, err := n.opener(t, tc.to).Open(env, testNow.Add(time.Minute))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(body, tc.body) {
				t.Errorf("body differs: got %d bytes, want %d", len(body), len(tc.body))
			}
			want := h
			want.Version = Version
			want.SenderKeyID = n.members[tc.from].signer.KeyID()
			want.RecipientKeyID = n.agency(t, tc.to).Keys[0].ID
			if got != want {
				t.Errorf("header:\n got %+v\nwant %+v", got, want)
			}
			if vh, err := VerifyOuter(env, n.dir); err != nil || vh != want {
				t.Errorf("VerifyOuter = %+v, %v", vh, err)
			}
			if ph, err := ParseHeader(env); err != nil || ph != want {
				t.Errorf("ParseHeader = %+v, %v", ph, err)
			}
		})
	}
}

func TestSealTruncatesTimesToMilliseconds(t *testing.T) {
	n := MustNet(t)
	h := testHeader(KindReferral, "iom", "shelter")
	h.Created = testNow.Add(1234567 * time.Nanosecond).In(time.FixedZone("WITA", 8*3600))
	got, _, err := n.opener(t, "shelter").Open(n.mustSeal(t, h, nil), testNow)
	if err != nil {
		t.Fatal(err)
	}
	if want := testNow.Add(time.Millisecond); !got.Created.Equal(want) || got.Created.Location() != time.UTC {
		t.Errorf("Created = %v, want %v in UTC", got.Created, want)
	}
}

func TestSealRefuses(t *testing.T) {
	n := MustNet(t)
	signer := n.members["iom"].signer
	shelter := n.agency(t, "shelter")
	revoked := *shelter
	revoked.Status = StatusRevoked
	noKey := *shelter
	noKey.Keys = []PublicKey{shelter.Keys[1], shelter.Keys[2]}
	x25519 := *shelter
	x25519.Keys = append([]PublicKey{{ID: "0123456789abcdef", Use: UseEncrypt, Status: StatusActive,
		Public: "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"}}, shelter.Keys[1:]...)
	for _, tc := range []struct {
		name   string
		mutate func(*Header)
		to     *Agency
		body   []byte
		want   error
	}{
		{"revoked recipient", nil, &revoked, nil, ErrRecipientUnavailable},
		{"recipient without encryption key", nil, &noKey, nil, ErrRecipientUnavailable},
		{"X25519 recipient", nil, &x25519, nil, ErrRecipientType},
		{"body too large", nil, shelter, make([]byte, MaxBodySize+1), ErrTooLarge},
		{"to differs from recipient", func(h *Header) { h.To = "police" }, shelter, nil, nil},
		{"unknown kind", func(h *Header) { h.Kind = "gossip" }, shelter, nil, nil},
		{"missing id", func(h *Header) { h.ID = "" }, shelter, nil, nil},
		{"id with slash", func(h *Header) { h.ID = "a/b" }, shelter, nil, nil},
		{"expires before created", func(h *Header) { h.Expires = h.Created }, shelter, nil, nil},
		{"zero created", func(h *Header) { h.Created = time.Time{} }, shelter, nil, nil},
		{"to self", func(h *Header) { h.From = "shelter" }, shelter, nil, nil},
		{"unknown version", func(h *Header) { h.Version = 2 }, shelter, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := testHeader(KindReferral, "iom", "shelter")
			if tc.mutate != nil {
				tc.mutate(&h)
			}
			_, err := Seal(h, tc.body, signer, tc.to)
			if err == nil {
				t.Fatal("Seal succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Seal error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestMaxBodySizeSeals(t *testing.T) {
	n := MustNet(t)
	env := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), make([]byte, MaxBodySize))
	if len(env) > MaxEnvelopeSize {
		t.Fatalf("envelope of a maximum body has %d bytes, over MaxEnvelopeSize %d", len(env), MaxEnvelopeSize)
	}
	if _, body, err := n.opener(t, "shelter").Open(env, testNow); err != nil || len(body) != MaxBodySize {
		t.Fatalf("Open = %d bytes, %v", len(body), err)
	}
}

// wantRejected checks that err wraps want and whether Open reported the
// outer signature as verified.
func wantRejected(t *testing.T, err, want error, verified bool) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
	if OuterVerified(err) != verified {
		t.Errorf("OuterVerified = %v, want %v", OuterVerified(err), verified)
	}
	if ReasonCode(err) == ReasonInternal || ReasonCode(err) == "" {
		t.Errorf("ReasonCode(%v) = %q", err, ReasonCode(err))
	}
}

// splitEnv returns the parts of a valid envelope.
func splitEnv(t *testing.T, env []byte) *envelope {
	t.Helper()
	e, err := parseEnvelope(env)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// buildEnvelope frames and signs an outer envelope around an inner object
// encrypted to r, with header h exactly as given: what an attacker holding
// signer could produce.
func buildEnvelope(t *testing.T, h Header, inner []byte, r age.Recipient, signer *Signer) []byte {
	t.Helper()
	var ct bytes.Buffer
	w, err := age.Encrypt(&ct, r)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(inner)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return frameEnvelope(appendHeader(nil, &h), ct.Bytes(), signer)
}

// frameEnvelope frames a header and a ciphertext and signs them.
func frameEnvelope(header, ct []byte, signer *Signer) []byte {
	e := encoder{}
	e.rawStr(envelopeMagic)
	e.u16(uint16(len(header)))
	e.raw(header)
	e.u32(uint32(len(ct)))
	e.raw(ct)
	d := sha256.Sum256(ct)
	e.raw(signer.sign(signingInput(outerDomain, header, &d)))
	return e.b
}

// innerOf decrypts an envelope with the recipient's identity and returns the
// signed inner object.
func innerOf(t *testing.T, env []byte, id *age.HybridIdentity) []byte {
	t.Helper()
	inner, err := decrypt(splitEnv(t, env).ciphertext, id)
	if err != nil {
		t.Fatal(err)
	}
	return inner
}

func TestAttackBitFlipOuterHeader(t *testing.T) {
	n := MustNet(t)
	shelter := n.opener(t, "shelter")
	env := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), []byte("body"))
	e := splitEnv(t, env)
	start := len(envelopeMagic) + 2

	// The last byte of the header is the low byte of the expiry time: the
	// header still parses, and the signature no longer matches.
	bad := bytes.Clone(env)
	bad[start+len(e.header)-1] ^= 1
	_, _, err := shelter.Open(bad, testNow)
	wantRejected(t, err, ErrBadOuterSignature, false)

	// Every other bit of the header is rejected too, before decryption.
	for i := start; i < start+len(e.header); i++ {
		for bit := 0; bit < 8; bit++ {
			bad := bytes.Clone(env)
			bad[i] ^= 1 << bit
			_, _, err := shelter.Open(bad, testNow)
			if err == nil || OuterVerified(err) {
				t.Fatalf("byte %d bit %d: Open error %v, verified %v", i, bit, err, OuterVerified(err))
			}
		}
	}
}

func TestAttackBitFlipCiphertext(t *testing.T) {
	n := MustNet(t)
	shelter := n.opener(t, "shelter")
	env := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), bytes.Repeat([]byte("x"), 3000))
	e := splitEnv(t, env)
	for _, off := range []int{0, 100, len(e.ciphertext) / 2, len(e.ciphertext) - 1} {
		bad := bytes.Clone(env)
		bad[len(env)-64-len(e.ciphertext)+off] ^= 0x10
		_, _, err := shelter.Open(bad, testNow)
		wantRejected(t, err, ErrBadOuterSignature, false)
	}

	// A sender that signs over a damaged ciphertext gets past the outer
	// check; age's authentication then refuses it.
	ct := bytes.Clone(e.ciphertext)
	ct[len(ct)-20] ^= 1
	bad := frameEnvelope(e.header, ct, n.members["iom"].signer)
	_, _, err := shelter.Open(bad, testNow)
	wantRejected(t, err, ErrDecrypt, true)
}

func TestAttackBitFlipSignature(t *testing.T) {
	n := MustNet(t)
	env := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), []byte("body"))
	for _, i := range []int{len(env) - 64, len(env) - 33, len(env) - 1} {
		bad := bytes.Clone(env)
		bad[i] ^= 0x80
		_, _, err := n.opener(t, "shelter").Open(bad, testNow)
		wantRejected(t, err, ErrBadOuterSignature, false)
	}
}

// reframe replaces the outer header of env, keeping ciphertext and
// signature.
func reframe(t *testing.T, env []byte, mutate func(*Header)) []byte {
	t.Helper()
	e := splitEnv(t, env)
	h := e.h
	mutate(&h)
	enc := encoder{}
	enc.rawStr(envelopeMagic)
	header := appendHeader(nil, &h)
	enc.u16(uint16(len(header)))
	enc.raw(header)
	enc.u32(uint32(len(e.ciphertext)))
	enc.raw(e.ciphertext)
	enc.raw(e.sig)
	return enc.b
}

func TestAttackFromSwapped(t *testing.T) {
	n := MustNet(t)
	env := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), []byte("body"))
	shelter := n.opener(t, "shelter")

	// From names another agency, with that agency's key id.
	bad := reframe(t, env, func(h *Header) { h.From, h.SenderKeyID = "dinsos", n.members["dinsos"].signer.KeyID() })
	_, _, err := shelter.Open(bad, testNow)
	wantRejected(t, err, ErrBadOuterSignature, false)

	// From names another agency, with the original key id.
	bad = reframe(t, env, func(h *Header) { h.From = "dinsos" })
	_, _, err = shelter.Open(bad, testNow)
	wantRejected(t, err, ErrUnknownSender, false)

	// From names an agency outside the network.
	bad = reframe(t, env, func(h *Header) { h.From = "mallory" })
	_, _, err = shelter.Open(bad, testNow)
	wantRejected(t, err, ErrUnknownSender, false)
}

func TestAttackToChanged(t *testing.T) {
	n := MustNet(t)
	env := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), []byte("body"))
	police := n.agency(t, "police")
	bad := reframe(t, env, func(h *Header) { h.To, h.RecipientKeyID = "police", police.Keys[0].ID })
	_, _, err := n.opener(t, "police").Open(bad, testNow)
	wantRejected(t, err, ErrBadOuterSignature, false)

	// Delivered unchanged to the wrong agency.
	_, _, err = n.opener(t, "police").Open(env, testNow)
	wantRejected(t, err, ErrNotForUs, true)
}

func TestAttackSignatureStripping(t *testing.T) {
	// police sees iom's envelope to shelter on the wire, strips iom's
	// outer signature and re-signs the envelope as its own.
	n := MustNet(t)
	env := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), []byte("body"))
	police := n.members["police"].signer
	e := splitEnv(t, env)
	h := e.h
	h.From, h.SenderKeyID = "police", police.KeyID()
	bad := frameEnvelope(appendHeader(nil, &h), e.ciphertext, police)

	_, _, err := n.opener(t, "shelter").Open(bad, testNow)
	wantRejected(t, err, ErrMismatch, true)
}

func TestAttackSurreptitiousForwarding(t *testing.T) {
	// shelter opens iom's referral and re-seals the same signed inner object
	// to police, hoping police believes iom sent it to police.
	n := MustNet(t)
	env := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), []byte("body"))
	inner := innerOf(t, env, n.members["shelter"].identity)
	h := splitEnv(t, env).h
	police := n.agency(t, "police")
	policeR, err := ParseRecipient(police.Keys[0].Public)
	if err != nil {
		t.Fatal(err)
	}
	shelter := n.members["shelter"].signer
	opener := n.opener(t, "police")

	// Outer header from shelter, signed by shelter: the inner header (iom
	// to shelter) does not match.
	fwd := h
	fwd.From, fwd.SenderKeyID, fwd.To, fwd.RecipientKeyID = "shelter", shelter.KeyID(), "police", police.Keys[0].ID
	_, _, err = opener.Open(buildEnvelope(t, fwd, inner, policeR, shelter), testNow)
	wantRejected(t, err, ErrMismatch, true)

	// Outer header still from iom: shelter cannot make iom's outer
	// signature.
	fwd = h
	fwd.To, fwd.RecipientKeyID = "police", police.Keys[0].ID
	_, _, err = opener.Open(buildEnvelope(t, fwd, inner, policeR, shelter), testNow)
	wantRejected(t, err, ErrBadOuterSignature, false)
}

func TestAttackInnerSignature(t *testing.T) {
	// A sender that frames an inner object whose signature does not verify.
	n := MustNet(t)
	env := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), []byte("body"))
	inner := innerOf(t, env, n.members["shelter"].identity)
	inner[len(inner)-1] ^= 1
	shelterR, _ := ParseRecipient(n.agency(t, "shelter").Keys[0].Public)
	bad := buildEnvelope(t, splitEnv(t, env).h, inner, shelterR, n.members["iom"].signer)
	_, _, err := n.opener(t, "shelter").Open(bad, testNow)
	wantRejected(t, err, ErrBadInnerSignature, true)

	// An inner object that is not framed as one.
	bad = buildEnvelope(t, splitEnv(t, env).h, []byte("plain text"), shelterR, n.members["iom"].signer)
	_, _, err = n.opener(t, "shelter").Open(bad, testNow)
	wantRejected(t, err, ErrMalformed, true)
}

func TestAttackExpired(t *testing.T) {
	n := MustNet(t)
	h := testHeader(KindReferral, "iom", "shelter")
	env := n.mustSeal(t, h, []byte("body"))
	o := n.opener(t, "shelter")
	if _, _, err := o.Open(env, h.Expires.Add(DefaultClockSkew)); err != nil {
		t.Fatalf("Open at the end of the skew allowance: %v", err)
	}
	_, _, err := o.Open(env, h.Expires.Add(DefaultClockSkew+time.Millisecond))
	wantRejected(t, err, ErrExpired, true)

	// A stored envelope still opens once it has expired.
	if _, body, err := o.OpenStored(env); err != nil || string(body) != "body" {
		t.Fatalf("OpenStored = %q, %v", body, err)
	}
}

// A sender cannot date an envelope far back by giving it a long life.
func TestAttackLifetime(t *testing.T) {
	n := MustNet(t)
	h := testHeader(KindReferral, "iom", "shelter")
	h.Expires = h.Created.Add(MaxLifetime)
	if _, _, err := n.opener(t, "shelter").Open(n.mustSeal(t, h, []byte("body")), h.Created); err != nil {
		t.Fatalf("Open of the longest lifetime: %v", err)
	}
	h.Expires = h.Created.Add(MaxLifetime + time.Millisecond)
	_, _, err := n.opener(t, "shelter").Open(n.mustSeal(t, h, []byte("body")), h.Created)
	wantRejected(t, err, ErrLifetime, true)
}

func TestAttackNotYetValid(t *testing.T) {
	n := MustNet(t)
	h := testHeader(KindReferral, "iom", "shelter")
	env := n.mustSeal(t, h, []byte("body"))
	o := n.opener(t, "shelter")
	if _, _, err := o.Open(env, h.Created.Add(-DefaultClockSkew)); err != nil {
		t.Fatalf("Open at the start of the skew allowance: %v", err)
	}
	_, _, err := o.Open(env, h.Created.Add(-DefaultClockSkew-time.Millisecond))
	wantRejected(t, err, ErrNotYetValid, true)
}

func TestAttackRevokedSender(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  bool
	}{{"key", true}, {"agency", false}} {
		t.Run(tc.name, func(t *testing.T) {
			n := MustNet(t)
			env := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), []byte("body"))
			d := n.dir.clone()
			keyID := ""
			if tc.key {
				keyID = n.members["iom"].signer.KeyID()
			}
			if err := d.Revoke("iom", keyID); err != nil {
				t.Fatal(err)
			}
			d.Version++
			n.resign(t, d)
			o := n.opener(t, "shelter")
			_, _, err := o.Open(env, testNow)
			wantRejected(t, err, ErrSenderRevoked, true)

			// What was received before the revocation still verifies.
			if _, err := VerifyOuter(env, n.dir); err != nil {
				t.Errorf("VerifyOuter: %v", err)
			}
			if _, _, err := o.OpenStored(env); err != nil {
				t.Errorf("OpenStored: %v", err)
			}
		})
	}
}

func TestAttackWrongRecipientKey(t *testing.T) {
	n := MustNet(t)
	shelterAgency := n.agency(t, "shelter")
	old := n.members["shelter"].identity
	oldEnv := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), []byte("old"))

	// shelter rotates its age key, retired for a day; iom seals to the new
	// one.
	newID, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	rotated := *shelterAgency
	rotated.Keys = []PublicKey{NewPublicKey(UseEncrypt, newID.Recipient().String())}
	d := n.dir.clone()
	until := testNow.Add(24 * time.Hour)
	if err := d.Rotate(rotated, until); err != nil {
		t.Fatal(err)
	}
	d.Version++
	n.resign(t, d)
	newEnv := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), []byte("new"))
	if h, _ := ParseHeader(newEnv); h.RecipientKeyID != KeyID(UseEncrypt, newID.Recipient().String()) {
		t.Fatalf("sealed after the rotation to key %s, not the new one", h.RecipientKeyID)
	}

	t.Run("opener without the key", func(t *testing.T) {
		o, _ := NewOpener("shelter", n.dir, &Identity{id: old})
		_, _, err := o.Open(newEnv, testNow)
		wantRejected(t, err, ErrNotForUs, true)
	})
	t.Run("retired recipient key", func(t *testing.T) {
		o, _ := NewOpener("shelter", n.dir, &Identity{id: newID}, &Identity{id: old})
		// In flight when the key was retired: still opened until not_after.
		if _, body, err := o.Open(oldEnv, testNow); err != nil || string(body) != "old" {
			t.Errorf("Open of an envelope to the retired key = %q, %v", body, err)
		}
		if _, body, err := o.Open(newEnv, testNow); err != nil || string(body) != "new" {
			t.Errorf("Open = %q, %v", body, err)
		}
		// Without the retired identity it cannot be opened.
		o2, _ := NewOpener("shelter", n.dir, &Identity{id: newID})
		_, _, err := o2.Open(oldEnv, testNow)
		wantRejected(t, err, ErrNotForUs, true)
	})
	t.Run("retired recipient key past not_after", func(t *testing.T) {
		o, _ := NewOpener("shelter", n.dir, &Identity{id: newID}, &Identity{id: old})
		o.ClockSkew = 48 * time.Hour // keep the envelope's own window open
		_, _, err := o.Open(oldEnv, until.Add(time.Second))
		wantRejected(t, err, ErrNotForUs, true)
		if !strings.Contains(err.Error(), "retired") {
			t.Errorf("error does not say the key was retired: %v", err)
		}
		// What was stored stays readable.
		if _, body, err := o.OpenStored(oldEnv); err != nil || string(body) != "old" {
			t.Errorf("OpenStored of an envelope to the retired key = %q, %v", body, err)
		}
	})
	t.Run("revoked recipient key", func(t *testing.T) {
		d := n.dir.clone()
		if err := d.Revoke("shelter", KeyID(UseEncrypt, old.Recipient().String())); err != nil {
			t.Fatal(err)
		}
		d.Version++
		o, _ := NewOpener("shelter", d, &Identity{id: newID}, &Identity{id: old})
		_, _, err := o.Open(oldEnv, testNow)
		wantRejected(t, err, ErrNotForUs, true)
		if _, body, err := o.OpenStored(oldEnv); err != nil || string(body) != "old" {
			t.Errorf("OpenStored of an envelope to the revoked key = %q, %v", body, err)
		}
	})
	t.Run("ciphertext for another key", func(t *testing.T) {
		// The header names shelter's key, the ciphertext is for police.
		h := splitEnv(t, newEnv).h
		inner := innerOf(t, newEnv, newID)
		policeR, _ := ParseRecipient(n.agency(t, "police").Keys[0].Public)
		bad := buildEnvelope(t, h, inner, policeR, n.members["iom"].signer)
		o, _ := NewOpener("shelter", n.dir, &Identity{id: newID})
		_, _, err := o.Open(bad, testNow)
		wantRejected(t, err, ErrDecrypt, true)
	})
}

// TestRetiredSigningKey: an envelope signed with a signing key that a
// rotation retired is accepted until the key's not_after, then refused as
// from a revoked key; receipts it signed verify whatever the time.
func TestRetiredSigningKey(t *testing.T) {
	n := MustNet(t)
	env := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), []byte("body"))
	oldSigner := n.members["iom"].signer
	receipt, err := SignReceipt(Receipt{EnvelopeID: NewID(), From: "iom", To: "shelter", Event: EventDelivered, At: testNow}, oldSigner)
	if err != nil {
		t.Fatal(err)
	}
	iom := *n.agency(t, "iom")
	newSigner, _ := NewSigner(seedKey("iom rotated"))
	iom.Keys = []PublicKey{NewPublicKey(UseSign, newSigner.PublicKeyString())}
	d := n.dir.clone()
	until := testNow.Add(time.Hour)
	if err := d.Rotate(iom, until); err != nil {
		t.Fatal(err)
	}
	d.Version++
	n.resign(t, d)
	o := n.opener(t, "shelter")
	if _, _, err := o.Open(env, testNow); err != nil {
		t.Fatalf("envelope signed with the retired key before not_after: %v", err)
	}
	o.ClockSkew = 48 * time.Hour
	_, _, err = o.Open(env, until.Add(time.Second))
	wantRejected(t, err, ErrSenderRevoked, true)
	if !strings.Contains(err.Error(), "retired") {
		t.Errorf("error does not say the key was retired: %v", err)
	}
	if r, err := VerifyReceipt(receipt, n.dir); err != nil || r.SignerKeyID != oldSigner.KeyID() {
		t.Errorf("receipt signed with the retired key: %+v, %v", r, err)
	}
}

func TestAttackOversize(t *testing.T) {
	n := MustNet(t)
	env := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), []byte("body"))
	// A valid prefix claiming a huge ciphertext, padded past the cap.
	big := make([]byte, MaxEnvelopeSize+1)
	copy(big, env)
	_, _, err := n.opener(t, "shelter").Open(big, testNow)
	wantRejected(t, err, ErrTooLarge, false)
	if _, err := VerifyOuter(big, n.dir); !errors.Is(err, ErrTooLarge) {
		t.Errorf("VerifyOuter error %v", err)
	}

	// A ciphertext length field larger than the input.
	e := splitEnv(t, env)
	bad := bytes.Clone(env)
	putU32(bad[len(envelopeMagic)+2+len(e.header):], 0xffffffff)
	_, _, err = n.opener(t, "shelter").Open(bad, testNow)
	wantRejected(t, err, ErrMalformed, false)
}

func TestAttackTruncated(t *testing.T) {
	n := MustNet(t)
	env := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), []byte("body"))
	o := n.opener(t, "shelter")
	for l := 0; l < len(env); l++ {
		_, _, err := o.Open(env[:l], testNow)
		if !errors.Is(err, ErrMalformed) || OuterVerified(err) {
			t.Fatalf("truncated to %d bytes: error %v", l, err)
		}
	}
	_, _, err := o.Open(append(bytes.Clone(env), 0), testNow)
	wantRejected(t, err, ErrMalformed, false)
}

func TestAttackEmpty(t *testing.T) {
	n := MustNet(t)
	for _, env := range [][]byte{nil, {}} {
		h, body, err := n.opener(t, "shelter").Open(env, testNow)
		wantRejected(t, err, ErrMalformed, false)
		if h != (Header{}) || body != nil {
			t.Errorf("Open returned %+v, %q", h, body)
		}
	}
}

func TestOpenOtherFailures(t *testing.T) {
	n := MustNet(t)
	env := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), []byte("body"))
	hdrStart := len(envelopeMagic) + 2
	for _, tc := range []struct {
		name     string
		env      []byte
		want     error
		verified bool
	}{
		{"not an envelope", []byte("-----BEGIN AGE ENCRYPTED FILE-----"), ErrMalformed, false},
		{"future version", func() []byte { b := bytes.Clone(env); b[hdrStart] = 2; return b }(), ErrVersion, false},
		{"header length too large", func() []byte { b := bytes.Clone(env); b[4], b[5] = 0xff, 0xff; return b }(), ErrMalformed, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := n.opener(t, "shelter").Open(tc.env, testNow)
			wantRejected(t, err, tc.want, tc.verified)
		})
	}
}

func TestReasonCode(t *testing.T) {
	seen := map[string]bool{}
	for _, rc := range reasonCodes {
		code := ReasonCode(errors.Join(errors.New("context"), rc.err))
		if code != rc.code || !ValidSlug(code) || seen[code] {
			t.Errorf("ReasonCode(%v) = %q", rc.err, code)
		}
		seen[code] = true
	}
	if ReasonCode(nil) != "" || ReasonCode(errors.New("x")) != ReasonInternal {
		t.Error("ReasonCode of nil or of an unknown error")
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewID()
		if len(id) != 22 || !validID(id) || seen[id] || strings.ContainsAny(id, "+/=") {
			t.Fatalf("NewID() = %q", id)
		}
		seen[id] = true
	}
}

// TestOpenAllocations checks the allocation budget of Open: at most four
// times the size of a maximum-size envelope (bytes, not time).
func TestOpenAllocations(t *testing.T) {
	n := MustNet(t)
	o := n.opener(t, "shelter")
	env := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), make([]byte, MaxBodySize))
	if _, _, err := o.Open(env, testNow); err != nil {
		t.Fatal(err)
	}
	const runs = 5
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		if _, _, err := o.Open(env, testNow); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	perOpen := (after.TotalAlloc - before.TotalAlloc) / runs
	if perOpen > 4*uint64(len(env)) {
		t.Errorf("Open of a %d-byte envelope allocates %d bytes (%.2fx), the budget is 4x",
			len(env), perOpen, float64(perOpen)/float64(len(env)))
	}
	t.Logf("Open of a %d-byte envelope allocates %d bytes (%.2fx)", len(env), perOpen, float64(perOpen)/float64(len(env)))
}

// A sender that encrypts to a second recipient (a copy for someone else) is
// refused, though the signatures are its own.
func TestAttackExtraRecipient(t *testing.T) {
	n := MustNet(t)
	env := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), []byte("body"))
	inner := innerOf(t, env, n.members["shelter"].identity)
	shelterR, _ := ParseRecipient(n.agency(t, "shelter").Keys[0].Public)
	eavesdropper, _ := age.GenerateHybridIdentity()
	var ct bytes.Buffer
	w, err := age.Encrypt(&ct, shelterR, eavesdropper.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	w.Write(inner)
	w.Close()
	h := splitEnv(t, env).h
	bad := frameEnvelope(appendHeader(nil, &h), ct.Bytes(), n.members["iom"].signer)
	_, _, err = n.opener(t, "shelter").Open(bad, testNow)
	wantRejected(t, err, ErrDecrypt, true)
}

// Only one stanza, of the hybrid type, passes the header check.
func TestOneHybridStanza(t *testing.T) {
	const mac = "--- AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
	for name, tc := range map[string]struct {
		hdr string
		ok  bool
	}{
		"one hybrid": {"age-encryption.org/v1\n-> mlkem768x25519 AAAA\nAAAA\n" + mac, true},
		"classical":  {"age-encryption.org/v1\n-> X25519 AAAA\nAAAA\n" + mac, false},
		"two hybrid": {"age-encryption.org/v1\n-> mlkem768x25519 AAAA\nAAAA\n-> mlkem768x25519 BBBB\nBBBB\n" + mac, false},
		"no stanza":  {"age-encryption.org/v1\n" + mac, false},
		"not age":    {"hello\n", false},
	} {
		t.Run(name, func(t *testing.T) {
			err := oneHybridStanza([]byte(tc.hdr + "payload"))
			if (err == nil) != tc.ok {
				t.Fatalf("got %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// OpenVerified makes every check of Open but the outer signature's.
func TestOpenVerified(t *testing.T) {
	n := MustNet(t)
	o := n.opener(t, "shelter")
	env := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), []byte("body"))
	if _, b, err := o.OpenVerified(env, testNow); err != nil || string(b) != "body" {
		t.Fatalf("OpenVerified = %q, %v", b, err)
	}
	// Another agency's inner object under iom's name fails inside.
	forged := n.mustSeal(t, testHeader(KindReferral, "iom", "dinsos"), []byte("body"))
	if _, _, err := o.OpenVerified(forged, testNow); !errors.Is(err, ErrNotForUs) {
		t.Errorf("addressed to dinsos: %v", err)
	}
	if _, _, err := o.OpenVerified(env, testNow.Add(48*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Errorf("expired: %v", err)
	}
	bad := bytes.Clone(env)
	bad[len(bad)-100] ^= 1 // in the ciphertext
	if _, _, err := o.OpenVerified(bad, testNow); !errors.Is(err, ErrDecrypt) {
		t.Errorf("ciphertext changed: %v", err)
	}
}
