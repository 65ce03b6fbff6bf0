package crypto

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func testReceipt(n *testNet, env []byte, event, reason string) Receipt {
	h, _ := ParseHeader(env)
	return Receipt{EnvelopeID: h.ID, EnvelopeHash: EnvelopeHash(env), From: h.To, To: h.From,
		Event: event, Reason: reason, At: testNow.Add(time.Second)}
}

func TestReceiptRoundTrip(t *testing.T) {
	n := MustNet(t)
	env := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), []byte("body"))
	for _, tc := range []struct{ event, reason string }{
		{EventDelivered, ""}, {EventRead, ""}, {EventRejected, ReasonBadOuterSignature},
	} {
		t.Run(tc.event, func(t *testing.T) {
			r := testReceipt(n, env, tc.event, tc.reason)
			b, err := SignReceipt(r, n.members["shelter"].signer)
			if err != nil {
				t.Fatal(err)
			}
			got, err := VerifyReceipt(b, n.dir)
			if err != nil {
				t.Fatal(err)
			}
			r.SignerKeyID = n.members["shelter"].signer.KeyID()
			r.At = r.At.UTC()
			if got != r {
				t.Errorf("got %+v\nwant %+v", got, r)
			}
			if got.HashHex() != b64hex(EnvelopeHash(env)) {
				t.Errorf("HashHex = %s", got.HashHex())
			}

			// Carried in a receipt envelope back to iom.
			rh := testHeader(KindReceipt, "shelter", "iom")
			renv := n.mustSeal(t, rh, b)
			oh, body, err := n.opener(t, "iom").Open(renv, testNow)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := VerifyReceiptEnvelope(oh, body, n.dir); err != nil {
				t.Errorf("VerifyReceiptEnvelope: %v", err)
			}
		})
	}
}

func b64hex(h [32]byte) string {
	const hexd = "0123456789abcdef"
	var s []byte
	for _, c := range h {
		s = append(s, hexd[c>>4], hexd[c&15])
	}
	return string(s)
}

func TestReceiptRejects(t *testing.T) {
	n := MustNet(t)
	env := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), []byte("body"))
	shelter := n.members["shelter"].signer
	good, err := SignReceipt(testReceipt(n, env, EventDelivered, ""), shelter)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := SignReceipt(testReceipt(n, env, EventDelivered, ""), n.members["police"].signer)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)-64-17-1] ^= 1 // the low byte of the time field
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrReceiptMalformed},
		{"truncated", good[:len(good)-1], ErrReceiptMalformed},
		{"trailing byte", append(bytes.Clone(good), 0), ErrReceiptMalformed},
		{"too large", make([]byte, MaxReceiptSize+1), ErrReceiptMalformed},
		{"bit flipped", flipped, ErrReceiptSignature},
		{"signed by another agency's key", forged, ErrUnknownSender},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := VerifyReceipt(tc.b, n.dir); !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
		})
	}
	for l := range len(good) {
		if _, err := VerifyReceipt(good[:l], n.dir); !errors.Is(err, ErrReceiptMalformed) {
			t.Fatalf("truncated to %d: %v", l, err)
		}
	}

	// Receipt inside an envelope that does not match it.
	h := testHeader(KindReceipt, "shelter", "iom")
	h.SenderKeyID = shelter.KeyID()
	for _, tc := range []struct {
		name   string
		mutate func(*Header)
	}{
		{"kind", func(h *Header) { h.Kind = KindStatus }},
		{"from", func(h *Header) { h.From = "police" }},
		{"to", func(h *Header) { h.To = "dinsos" }},
	} {
		t.Run("envelope "+tc.name, func(t *testing.T) {
			h := h
			tc.mutate(&h)
			if _, err := VerifyReceiptEnvelope(h, good, n.dir); !errors.Is(err, ErrReceiptMismatch) {
				t.Fatalf("error %v", err)
			}
		})
	}
}

func TestSignReceiptRefuses(t *testing.T) {
	n := MustNet(t)
	env := n.mustSeal(t, testHeader(KindReferral, "iom", "shelter"), []byte("body"))
	for _, tc := range []struct {
		name   string
		mutate func(*Receipt)
	}{
		{"unknown event", func(r *Receipt) { r.Event = "lost" }},
		{"rejected without reason", func(r *Receipt) { r.Event = EventRejected }},
		{"reason on delivered", func(r *Receipt) { r.Reason = "x" }},
		{"reason not a slug", func(r *Receipt) { r.Event, r.Reason = EventRejected, "Bad Thing" }},
		{"no envelope id", func(r *Receipt) { r.EnvelopeID = "" }},
		{"to self", func(r *Receipt) { r.To = r.From }},
		{"no time", func(r *Receipt) { r.At = time.Time{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := testReceipt(n, env, EventDelivered, "")
			tc.mutate(&r)
			if _, err := SignReceipt(r, n.members["shelter"].signer); err == nil {
				t.Fatal("SignReceipt succeeded")
			}
		})
	}
}
