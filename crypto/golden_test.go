package crypto

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"
)

// Regenerate the vectors (only for a deliberate format change, which needs
// a new format version) with:
//
//	go test ./crypto -run TestGoldenVectors -update
var update = flag.Bool("update", false, "rewrite the golden test vectors in testdata/vectors")

const vectorDir = "testdata/vectors"

// vectors describes the files in testdata/vectors. The age identities are
// test keys, published on purpose.
type vectors struct {
	Comment    string            `json:"comment"`
	Authority  string            `json:"authority_public_key"`
	Now        time.Time         `json:"now"`
	Identities map[string]string `json:"age_identities"`
	Directory  string            `json:"directory_file"`
	Envelopes  []envelopeVector  `json:"envelopes"`
	Receipts   []receiptVector   `json:"receipts"`
}

type envelopeVector struct {
	File    string `json:"file"`
	SHA256  string `json:"sha256"`
	Header  header `json:"header"`
	BodyHex string `json:"body_hex"`
}

type header struct {
	Version        int       `json:"version"`
	ID             string    `json:"id"`
	Kind           string    `json:"kind"`
	From           string    `json:"from"`
	To             string    `json:"to"`
	SenderKeyID    string    `json:"sender_key_id"`
	RecipientKeyID string    `json:"recipient_key_id"`
	Created        time.Time `json:"created"`
	Expires        time.Time `json:"expires"`
}

type receiptVector struct {
	File         string    `json:"file"`
	EnvelopeID   string    `json:"envelope_id"`
	EnvelopeHash string    `json:"envelope_hash"`
	From         string    `json:"from"`
	To           string    `json:"to"`
	Event        string    `json:"event"`
	Reason       string    `json:"reason"`
	At           time.Time `json:"at"`
	SignerKeyID  string    `json:"signer_key_id"`
}

// goldenNet is the network of the vectors: fixed signing and NATS keys, and
// the given age identities.
func goldenNet(t *testing.T, ids map[string]*age.HybridIdentity) *testNet {
	n := &testNet{authority: seedKey("authority"), members: map[string]*testMember{}}
	d := NewDirectory("golden", json.RawMessage(`{"example":true}`))
	d.IssuedAt = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, id := range []string{"iom", "shelter"} {
		m := newMember(t, id, id, ids[id])
		n.members[id] = m
		if err := d.Add(m.agency); err != nil {
			t.Fatal(err)
		}
	}
	n.resign(t, d)
	return n
}

func TestGoldenVectors(t *testing.T) {
	if *update {
		writeVectors(t)
	}
	b, err := os.ReadFile(filepath.Join(vectorDir, "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	authority := seedKey("authority").Public().(ed25519.PublicKey)
	if v.Authority != b64(authority) {
		t.Fatalf("authority key %s, want %s", v.Authority, b64(authority))
	}
	signedDir := readVector(t, v.Directory)
	dir, err := ParseDirectory(signedDir, authority)
	if err != nil {
		t.Fatal(err)
	}
	// The directory encoding is deterministic: signing it again gives the
	// same bytes.
	if again, err := SignDirectory(dir, seedKey("authority")); err != nil || !bytes.Equal(again, signedDir) {
		t.Errorf("directory re-signs differently (%v)", err)
	}

	ids := map[string]*age.HybridIdentity{}
	for name, s := range v.Identities {
		if ids[name], err = age.ParseHybridIdentity(s); err != nil {
			t.Fatal(err)
		}
	}
	for _, ev := range v.Envelopes {
		t.Run(ev.File, func(t *testing.T) {
			env := readVector(t, ev.File)
			if h := EnvelopeHash(env); hex.EncodeToString(h[:]) != ev.SHA256 {
				t.Errorf("sha256 %x, want %s", h, ev.SHA256)
			}
			o, err := NewOpener(ev.Header.To, dir, &Identity{id: ids[ev.Header.To]})
			if err != nil {
				t.Fatal(err)
			}
			h, body, err := o.Open(env, v.Now)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if want := Header(ev.Header); h != want {
				t.Errorf("header\n got %+v\nwant %+v", h, want)
			}
			if hex.EncodeToString(body) != ev.BodyHex {
				t.Errorf("body %x, want %s", body, ev.BodyHex)
			}
			checkDocumentedEnvelope(t, env, dir, ids[ev.Header.To])
		})
	}
	for _, rv := range v.Receipts {
		t.Run(rv.File, func(t *testing.T) {
			b := readVector(t, rv.File)
			r, err := VerifyReceipt(b, dir)
			if err != nil {
				t.Fatal(err)
			}
			hash, _ := hex.DecodeString(rv.EnvelopeHash)
			want := Receipt{EnvelopeID: rv.EnvelopeID, From: rv.From, To: rv.To, Event: rv.Event,
				Reason: rv.Reason, At: rv.At, SignerKeyID: rv.SignerKeyID}
			copy(want.EnvelopeHash[:], hash)
			if r != want {
				t.Errorf("receipt\n got %+v\nwant %+v", r, want)
			}
			// Ed25519 is deterministic: signing the same receipt with the
			// same key gives the same bytes.
			s, _ := NewSigner(seedKey(r.From + "/sign"))
			if again, err := SignReceipt(r, s); err != nil || !bytes.Equal(again, b) {
				t.Errorf("receipt re-signs differently (%v)", err)
			}
		})
	}
}

// checkDocumentedEnvelope decodes an envelope by hand, as docs/PROTOCOL.md
// describes it, with the domain strings spelled out, and checks both
// signatures.
func checkDocumentedEnvelope(t *testing.T, env []byte, dir *Directory, id *age.HybridIdentity) {
	t.Helper()
	be := func(b []byte) int {
		n := 0
		for _, c := range b {
			n = n<<8 | int(c)
		}
		return n
	}
	if string(env[:4]) != "RJKE" {
		t.Fatalf("magic %q", env[:4])
	}
	hl := be(env[4:6])
	hdr := env[6 : 6+hl]
	cl := be(env[6+hl : 10+hl])
	ct := env[10+hl : 10+hl+cl]
	sig := env[10+hl+cl:]
	if len(sig) != 64 {
		t.Fatalf("signature of %d bytes", len(sig))
	}
	h, err := parseHeader(hdr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(appendHeader(nil, &h), hdr) {
		t.Error("header does not re-encode to the same bytes")
	}
	_, pub, _, err := senderKey(dir, h.From, h.SenderKeyID)
	if err != nil {
		t.Fatal(err)
	}
	ctHash := sha256.Sum256(ct)
	msg := append(append([]byte("rujukan/v1/envelope/outer\x00"), hdr...), ctHash[:]...)
	if !ed25519.Verify(pub, msg, sig) {
		t.Error("outer signature does not verify as documented")
	}
	inner, err := decrypt(ct, id)
	if err != nil {
		t.Fatal(err)
	}
	if string(inner[:4]) != "RJKI" || be(inner[4:6]) != hl || !bytes.Equal(inner[6:6+hl], hdr) {
		t.Fatal("inner object does not start with RJKI and the outer header")
	}
	bl := be(inner[6+hl : 10+hl])
	body := inner[10+hl : 10+hl+bl]
	bodyHash := sha256.Sum256(body)
	msg = append(append([]byte("rujukan/v1/envelope/inner\x00"), hdr...), bodyHash[:]...)
	if !ed25519.Verify(pub, msg, inner[10+hl+bl:]) || len(inner[10+hl+bl:]) != 64 {
		t.Error("inner signature does not verify as documented")
	}
}

func readVector(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeVectors(t *testing.T) {
	ids := map[string]*age.HybridIdentity{}
	for _, name := range []string{"iom", "shelter"} {
		id, err := age.GenerateHybridIdentity()
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = id
	}
	n := goldenNet(t, ids)
	created := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	v := vectors{
		Comment:    "Golden vectors of docs/PROTOCOL.md. The age identities are test keys, published on purpose.",
		Authority:  b64(n.authority.Public().(ed25519.PublicKey)),
		Now:        created.Add(time.Minute),
		Identities: map[string]string{},
		Directory:  "directory.json",
	}
	for name, id := range ids {
		v.Identities[name] = id.String()
	}
	signed, err := SignDirectory(n.dir, n.authority)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"directory.json": signed}

	referral := []byte(`{"to":"shelter","priority":"urgent","person":{"pseudonym":"V-2026-0042","sex":"female","age":17}}`)
	h := Header{ID: "golden-referral-0001", Kind: KindReferral, From: "iom", To: "shelter",
		Created: created, Expires: created.Add(72 * time.Hour)}
	env := n.mustSeal(t, h, referral)
	files["referral.env"] = env

	r := Receipt{EnvelopeID: h.ID, EnvelopeHash: EnvelopeHash(env), From: "shelter", To: "iom",
		Event: EventDelivered, At: created.Add(30 * time.Second)}
	rb, err := SignReceipt(r, n.members["shelter"].signer)
	if err != nil {
		t.Fatal(err)
	}
	files["receipt-delivered.bin"] = rb
	rh := Header{ID: "golden-receipt-0001", Kind: KindReceipt, From: "shelter", To: "iom",
		Created: r.At, Expires: r.At.Add(72 * time.Hour)}
	renv := n.mustSeal(t, rh, rb)
	files["receipt.env"] = renv

	rejected := Receipt{EnvelopeID: "unknown-0001", EnvelopeHash: sha256.Sum256([]byte("forged")), From: "shelter",
		To: "iom", Event: EventRejected, Reason: ReasonBadInnerSignature, At: created.Add(40 * time.Second)}
	rjb, err := SignReceipt(rejected, n.members["shelter"].signer)
	if err != nil {
		t.Fatal(err)
	}
	files["receipt-rejected.bin"] = rjb

	for _, e := range []struct {
		file string
		env  []byte
		body []byte
	}{{"referral.env", env, referral}, {"receipt.env", renv, rb}} {
		ph, _ := ParseHeader(e.env)
		sum := EnvelopeHash(e.env)
		v.Envelopes = append(v.Envelopes, envelopeVector{File: e.file, SHA256: hex.EncodeToString(sum[:]),
			Header: header(ph), BodyHex: hex.EncodeToString(e.body)})
	}
	for _, e := range []struct {
		file string
		b    []byte
	}{{"receipt-delivered.bin", rb}, {"receipt-rejected.bin", rjb}} {
		r, err := VerifyReceipt(e.b, n.dir)
		if err != nil {
			t.Fatal(err)
		}
		v.Receipts = append(v.Receipts, receiptVector{File: e.file, EnvelopeID: r.EnvelopeID,
			EnvelopeHash: r.HashHex(), From: r.From, To: r.To, Event: r.Event, Reason: r.Reason,
			At: r.At, SignerKeyID: r.SignerKeyID})
	}
	vb, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	files["vectors.json"] = append(vb, '\n')
	if err := os.MkdirAll(vectorDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(vectorDir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
