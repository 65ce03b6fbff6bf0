package crypto

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDirectorySignParse(t *testing.T) {
	n := MustNet(t)
	pub := n.authority.Public().(ed25519.PublicKey)
	signed, err := SignDirectory(n.dir, n.authority)
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseDirectory(signed, pub)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Agencies) != 4 || d.Version != n.dir.Version {
		t.Fatalf("parsed %+v", d)
	}
	other := seedKey("other authority")
	edited := bytes.Replace(signed, []byte(`"Test shelter"`), []byte(`"Test shelteR"`), 1)
	if bytes.Equal(edited, signed) {
		t.Fatal("test setup: the edit did not apply")
	}
	for _, tc := range []struct {
		name   string
		signed []byte
		key    ed25519.PublicKey
		want   error
	}{
		{"other authority", signed, other.Public().(ed25519.PublicKey), ErrDirectorySignature},
		{"short authority key", signed, pub[:31], ErrDirectorySignature},
		{"edited", edited, pub, ErrDirectorySignature},
		{"unsigned draft", mustJSON(t, n.dir), pub, ErrDirectoryMalformed},
		{"empty", nil, pub, ErrDirectoryMalformed},
		{"too large", make([]byte, MaxDirectorySize+1), pub, ErrDirectoryTooLarge},
		{"no signature", []byte(`{"directory":{"version":1},"signature":{"alg":"","key_id":"","value":""}}`), pub, ErrDirectorySignature},
		{"other algorithm", bytes.Replace(signed, []byte(`"Ed25519"`), []byte(`"none"`), 1), pub, ErrDirectorySignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseDirectory(tc.signed, tc.key); !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckReplace(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cur, next uint64
		ok        bool
	}{{"higher", 3, 4, true}, {"equal", 3, 3, false}, {"lower", 3, 2, false}} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckReplace(&Directory{Version: tc.cur}, &Directory{Version: tc.next})
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrDirectoryStale)) {
				t.Fatalf("CheckReplace(%d, %d) = %v", tc.cur, tc.next, err)
			}
		})
	}
	if err := CheckReplace(nil, &Directory{Version: 1}); err != nil {
		t.Fatal(err)
	}
}

func TestDirectoryRefusesNonHybridRecipients(t *testing.T) {
	for _, tc := range []struct{ name, recipient, says string }{
		{"X25519", "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", "X25519"},
		{"plugin", "age1yubikey1qwt50d05nh5vutpdzmlg5wn80xq5negm4uj9ghv0snvdd3yysf5yw3rhl3t", "plugin"},
		{"ssh", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN", "ssh"},
		{"scrypt", "scrypt:correct horse battery staple", "scrypt"},
		{"secret key", "AGE-SECRET-KEY-PQ-1QQQ", "secret key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRecipient(tc.recipient)
			if !errors.Is(err, ErrRecipientType) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("ParseRecipient error %v", err)
			}
			n := MustNet(t)
			a := *n.agency(t, "iom")
			a.Keys = append([]PublicKey{NewPublicKey(UseEncrypt, tc.recipient)}, a.Keys[1:]...)
			d := NewDirectory("", nil)
			if err := d.Add(a); !errors.Is(err, ErrRecipientType) {
				t.Fatalf("Add error %v", err)
			}
		})
	}
	if _, err := ParseRecipient("age1pq1notbech32"); !errors.Is(err, ErrDirectoryMalformed) {
		t.Errorf("broken hybrid recipient: %v", err)
	}
}

func TestDirectoryValidate(t *testing.T) {
	n := MustNet(t)

	for _, tc := range []struct {
		name   string
		mutate func(*Directory)
	}{
		{"version 0", func(d *Directory) { d.Version = 0 }},
		{"duplicate agency", func(d *Directory) { d.Agencies = append(d.Agencies, d.Agencies[0]) }},
		{"bad id", func(d *Directory) { d.Agencies[0].ID = "IOM" }},
		{"bad kind", func(d *Directory) { d.Agencies[0].Kind = "a b" }},
		{"bad status", func(d *Directory) { d.Agencies[0].Status = "paused" }},
		{"key id mismatch", func(d *Directory) { d.Agencies[0].Keys[1].ID = "0000000000000000" }},
		{"two active sign keys", func(d *Directory) {
			d.Agencies[0].Keys = append(d.Agencies[0].Keys, NewPublicKey(UseSign, n.members["police"].signer.PublicKeyString()))
		}},
		{"unknown use", func(d *Directory) { d.Agencies[0].Keys[1].Use = "jwt" }},
		{"bad nats key", func(d *Directory) { d.Agencies[0].Keys[2] = NewPublicKey(UseNATS, "UABC") }},
		{"nats account key", func(d *Directory) {
			d.Agencies[0].Keys[2] = NewPublicKey(UseNATS, "A"+seedNKey(t, "iom")[1:])
		}},
		{"nats key not base32", func(d *Directory) {
			d.Agencies[0].Keys[2] = NewPublicKey(UseNATS, "U"+strings.ToLower(seedNKey(t, "iom")[1:]))
		}},
		{"nats seed as key", func(d *Directory) {
			d.Agencies[0].Keys[2] = NewPublicKey(UseNATS, string(seedNATSKey("iom").Seed))
		}},
		{"rules not JSON", func(d *Directory) { d.Rules = json.RawMessage("{") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := n.dir.clone()
			tc.mutate(d)
			if err := d.Validate(); !errors.Is(err, ErrDirectoryMalformed) {
				t.Fatalf("Validate error %v", err)
			}
			if _, err := SignDirectory(d, n.authority); err == nil {
				t.Fatal("SignDirectory signed an invalid directory")
			}
		})
	}
}

func TestDirectoryAddRevoke(t *testing.T) {
	n := MustNet(t)
	d := n.dir.clone()

	// Adding an agency already there is refused: that would be a takeover.
	if err := d.Add(*n.agency(t, "iom")); !errors.Is(err, ErrAgencyExists) {
		t.Fatalf("adding iom again: %v", err)
	}
	// Rotating iom's signing key with no retirement period revokes the old
	// one and keeps it.
	iom := *n.agency(t, "iom")
	newSigner, _ := NewSigner(seedKey("iom rotated"))
	iom.Keys = []PublicKey{NewPublicKey(UseSign, newSigner.PublicKeyString())}
	iom.Name = "IOM Mataram"
	if err := d.Rotate(iom, time.Time{}); err != nil {
		t.Fatal(err)
	}
	a, _ := d.Agency("iom")
	old, _ := a.Key(UseSign, n.members["iom"].signer.KeyID())
	cur, _ := a.ActiveKey(UseSign)
	if old == nil || old.Status != StatusRevoked || cur.ID != newSigner.KeyID() || a.Name != "IOM Mataram" || len(a.Keys) != 4 {
		t.Fatalf("after rotation: %+v", a)
	}
	if err := d.Rotate(iom, time.Time{}); err != nil {
		t.Fatalf("rotating to the same entry again: %v", err)
	}
	if len(a.Keys) != 4 {
		t.Fatalf("rotating to the same entry again changed the keys: %+v", a.Keys)
	}
	// The kind stays: it decides what an agency may send.
	police := iom
	police.Kind = "police"
	if err := d.Rotate(police, time.Time{}); !errors.Is(err, ErrKindChange) {
		t.Fatalf("rotating iom into a police agency: %v", err)
	}
	// Another agency's key cannot be listed as one's own.
	stolen := iom
	stolen.Keys = []PublicKey{NewPublicKey(UseSign, n.members["police"].signer.PublicKeyString())}
	if err := d.Rotate(stolen, time.Time{}); !errors.Is(err, ErrDirectoryMalformed) {
		t.Fatalf("taking police's signing key: %v", err)
	}

	// Revoking a key, then the agency.
	if err := d.Revoke("police", n.members["police"].signer.KeyID()); err != nil {
		t.Fatal(err)
	}
	if err := d.Revoke("police", ""); err != nil {
		t.Fatal(err)
	}
	p, _ := d.Agency("police")
	if p.Status != StatusRevoked || p.Keys[1].Status != StatusRevoked || len(p.Keys) != 3 {
		t.Fatalf("after revocation: %+v", p)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	// A revoked agency is not added back.
	before := mustJSON(t, d)
	if err := d.Add(*n.agency(t, "police")); !errors.Is(err, ErrAgencyRevoked) {
		t.Fatalf("re-adding a revoked agency: %v", err)
	}
	if !bytes.Equal(before, mustJSON(t, d)) {
		t.Fatal("a failed Add changed the directory")
	}
	for _, tc := range []struct{ agency, key string }{{"nobody", ""}, {"iom", "ffffffffffffffff"}} {
		if err := d.Revoke(tc.agency, tc.key); !errors.Is(err, ErrNotInDirectory) {
			t.Errorf("Revoke(%q, %q) = %v", tc.agency, tc.key, err)
		}
	}
}

func TestParseAuthorityKey(t *testing.T) {
	pub := seedKey("authority").Public().(ed25519.PublicKey)
	file := filepath.Join(t.TempDir(), "authority.pub")
	os.WriteFile(file, []byte(b64(pub)+"\n"), 0o644)
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"base64", b64(pub), true},
		{"base64 with newline", b64(pub) + "\n", true},
		{"file", "@" + file, true},
		{"missing file", "@" + file + ".x", false},
		{"short", b64(pub[:31]), false},
		{"url base64", strings.NewReplacer("+", "-", "/", "_").Replace(b64(pub)) + "x", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseAuthorityKey(tc.in)
			if (err == nil) != tc.ok || (tc.ok && !got.Equal(pub)) {
				t.Fatalf("ParseAuthorityKey(%q) = %x, %v", tc.in, got, err)
			}
		})
	}
}

func TestParseAgency(t *testing.T) {
	n := MustNet(t)
	b := mustJSON(t, n.agency(t, "iom"))
	if _, err := ParseAgency(b); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{
		nil,
		[]byte(`{"id":"iom","unknown":1}`),
		append(bytes.Clone(b), []byte(`{}`)...),
		bytes.Replace(b, []byte(`"active"`), []byte(`"paused"`), 1),
	} {
		if _, err := ParseAgency(bad); !errors.Is(err, ErrDirectoryMalformed) {
			t.Errorf("ParseAgency(%.40q) = %v", bad, err)
		}
	}
}

// Keys for which signatures can be made without a private key are refused,
// as is a non-canonical encoding of a valid key.
func TestWeakSigningKeys(t *testing.T) {
	identity := make([]byte, 32)
	identity[0] = 1
	zero := make([]byte, 32) // order 4
	orderTwo := bytes.Repeat([]byte{0xff}, 32)
	orderTwo[0], orderTwo[31] = 0xec, 0x7f // y = p-1
	nonCanonical := bytes.Repeat([]byte{0xff}, 32)
	nonCanonical[0], nonCanonical[31] = 0xee, 0x7f // y = p+1, an encoding of the identity
	for name, k := range map[string][]byte{"identity": identity, "zero": zero, "order two": orderTwo, "non-canonical": nonCanonical} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseSigningPublicKey(b64(k)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	good := seedKey("good").Public().(ed25519.PublicKey)
	if _, err := ParseSigningPublicKey(b64(good)); err != nil {
		t.Fatalf("a real key was refused: %v", err)
	}
}

// TestDirectoryRotateRetires: a rotation with a retirement period keeps the
// replaced encryption and signing keys as retired until then, revokes the
// NATS key, and the directory rules on not_after hold.
func TestDirectoryRotateRetires(t *testing.T) {
	n := MustNet(t)
	d := n.dir.clone()
	shelter := *n.agency(t, "shelter")
	oldEnc, _ := shelter.ActiveKey(UseEncrypt)
	oldSign, _ := shelter.ActiveKey(UseSign)
	oldNATS, _ := shelter.ActiveKey(UseNATS)
	newID, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	newSigner, _ := NewSigner(seedKey("shelter rotated"))
	shelter.Keys = []PublicKey{NewPublicKey(UseEncrypt, newID.Recipient()), NewPublicKey(UseSign, newSigner.PublicKeyString()),
		NewPublicKey(UseNATS, "UB"+strings.Repeat("A", 54))}
	until := testNow.Add(720 * time.Hour)
	if err := d.Rotate(shelter, until); err != nil {
		t.Fatal(err)
	}
	a, _ := d.Agency("shelter")
	for _, tc := range []struct {
		use  KeyUse
		id   string
		want Status
	}{{UseEncrypt, oldEnc.ID, StatusRetired}, {UseSign, oldSign.ID, StatusRetired}, {UseNATS, oldNATS.ID, StatusRevoked}} {
		k, ok := a.Key(tc.use, tc.id)
		if !ok || k.Status != tc.want {
			t.Fatalf("old %s key after rotation: %+v, want %s", tc.use, k, tc.want)
		}
		if tc.want == StatusRetired && !k.NotAfter.Equal(until) {
			t.Errorf("old %s key not_after %s, want %s", tc.use, k.NotAfter, until)
		}
		if k.AcceptableAt(until) != (tc.want == StatusRetired) || k.AcceptableAt(until.Add(time.Second)) {
			t.Errorf("old %s key acceptance around not_after is wrong", tc.use)
		}
	}
	if k, _ := a.ActiveKey(UseEncrypt); k.ID != newID.KeyID() {
		t.Fatalf("active encryption key %s, want %s", k.ID, newID.KeyID())
	}
	// The retired key survives signing and parsing.
	signed, err := SignDirectory(d, n.authority)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseDirectory(signed, n.authority.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	ba, _ := back.Agency("shelter")
	if k, _ := ba.Key(UseEncrypt, oldEnc.ID); k.Status != StatusRetired || !k.NotAfter.Equal(until) {
		t.Fatalf("retired key after a round trip: %+v", k)
	}

	// not_after belongs to retired keys, and a retired key needs one.
	bad := back.clone()
	ka, _ := bad.Agency("shelter")
	k, _ := ka.Key(UseEncrypt, oldEnc.ID)
	k.NotAfter = time.Time{}
	if err := bad.Validate(); !errors.Is(err, ErrDirectoryMalformed) || !strings.Contains(err.Error(), "not_after") {
		t.Errorf("retired key without not_after: %v", err)
	}
	bad = back.clone()
	ka, _ = bad.Agency("shelter")
	ak, _ := ka.ActiveKey(UseSign)
	ak.NotAfter = until
	if err := bad.Validate(); !errors.Is(err, ErrDirectoryMalformed) {
		t.Errorf("active key with not_after: %v", err)
	}
	// Revoking a retired key is the explicit step that ends it at once.
	if err := back.Revoke("shelter", oldEnc.ID); err != nil {
		t.Fatal(err)
	}
	if err := back.Validate(); err != nil {
		t.Fatal(err)
	}
	if k, _ := ba.Key(UseEncrypt, oldEnc.ID); k.AcceptableAt(testNow) {
		t.Error("a revoked retired key is still acceptable")
	}
}
