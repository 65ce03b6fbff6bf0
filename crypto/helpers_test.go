package crypto

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"testing"
	"time"

	"filippo.io/age"
)

// testMember is one agency of a test network with its private keys.
type testMember struct {
	id       string
	identity *age.HybridIdentity
	signer   *Signer
	agency   Agency
}

// testNet is a network of agencies and a signed, verified directory.
type testNet struct {
	authority ed25519.PrivateKey
	dir       *Directory
	members   map[string]*testMember
}

// seedKey derives a fixed Ed25519 key from a label.
func seedKey(label string) ed25519.PrivateKey {
	s := sha256.Sum256([]byte("rujukan test key\x00" + label))
	return ed25519.NewKeyFromSeed(s[:])
}

// seedNKey derives a fixed NATS user public key from a label.
func seedNKey(t testing.TB, label string) string { return seedNATSKey(label).Public }

// seedNATSKey derives a fixed NATS user key pair from a label. It writes
// the nkey text encoding itself (prefix, key, CRC-16/XMODEM, unpadded
// base32) so that this package's tests need not import the NATS libraries;
// broker tests check that the broker's nkey parser accepts keys made the
// same way.
func seedNATSKey(label string) NATSKey {
	s := sha256.Sum256([]byte("rujukan test nkey\x00" + label))
	pub := ed25519.NewKeyFromSeed(s[:]).Public().(ed25519.PublicKey)
	const prefixSeed, prefixUser = 18 << 3, 20 << 3
	seed := append([]byte{prefixSeed | prefixUser>>5, (prefixUser & 31) << 3}, s[:]...)
	return NATSKey{Seed: []byte(nkeyText(seed)), Public: nkeyText(append([]byte{prefixUser}, pub...))}
}

// nkeyText appends the CRC-16/XMODEM of raw, little-endian, and encodes it
// in unpadded base32.
func nkeyText(raw []byte) string {
	var crc uint16
	for _, b := range raw {
		crc ^= uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	raw = append(raw, byte(crc), byte(crc>>8))
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(raw)
}

// newMember makes an agency with the given age identity (a fresh one if
// nil) and fixed signing and NATS keys.
func newMember(t testing.TB, id, kind string, identity *age.HybridIdentity) *testMember {
	t.Helper()
	if identity == nil {
		var err error
		if identity, err = age.GenerateHybridIdentity(); err != nil {
			t.Fatal(err)
		}
	}
	signer, err := NewSigner(seedKey(id + "/sign"))
	if err != nil {
		t.Fatal(err)
	}
	return &testMember{
		id: id, identity: identity, signer: signer,
		agency: Agency{
			ID: id, Kind: kind, Name: "Test " + id, Status: StatusActive,
			Keys: []PublicKey{
				NewPublicKey(UseEncrypt, identity.Recipient().String()),
				NewPublicKey(UseSign, signer.PublicKeyString()),
				NewPublicKey(UseNATS, seedNKey(t, id)),
			},
		},
	}
}

// MustNet returns a network of iom, dinsos, police and shelter with a
// directory signed by a fixed authority key and verified.
func MustNet(t testing.TB) *testNet {
	t.Helper()
	n := &testNet{authority: seedKey("authority"), members: map[string]*testMember{}}
	d := NewDirectory("test", nil)
	for _, m := range []struct{ id, kind string }{{"iom", "iom"}, {"dinsos", "dinsos"}, {"police", "police"}, {"shelter", "shelter"}} {
		mem := newMember(t, m.id, m.kind, nil)
		n.members[m.id] = mem
		if err := d.Add(mem.agency); err != nil {
			t.Fatal(err)
		}
	}
	n.resign(t, d)
	return n
}

// resign signs d with the authority, verifies it, and makes it the
// network's directory.
func (n *testNet) resign(t testing.TB, d *Directory) {
	t.Helper()
	signed, err := SignDirectory(d, n.authority)
	if err != nil {
		t.Fatal(err)
	}
	n.dir, err = ParseDirectory(signed, n.authority.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
}

func (n *testNet) agency(t testing.TB, id string) *Agency {
	t.Helper()
	a, ok := n.dir.Agency(id)
	if !ok {
		t.Fatalf("no agency %s", id)
	}
	return a
}

func (n *testNet) opener(t testing.TB, id string) *Opener {
	t.Helper()
	o, err := NewOpener(id, n.dir, &Identity{id: n.members[id].identity})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

var testNow = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

func testHeader(kind, from, to string) Header {
	return Header{ID: NewID(), Kind: kind, From: from, To: to, Created: testNow, Expires: testNow.Add(24 * time.Hour)}
}

// mustSeal seals body from one member to another.
func (n *testNet) mustSeal(t testing.TB, h Header, body []byte) []byte {
	t.Helper()
	env, err := Seal(h, body, n.members[h.From].signer, n.agency(t, h.To))
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
