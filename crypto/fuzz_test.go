package crypto

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"
)

// Run one target with, for example:
//
//	go test ./crypto -run '^$' -fuzz '^FuzzOpen$' -fuzztime 15s

// fuzzNet loads the network of the golden vectors, so that the seed
// corpus (the vectors) opens.
func fuzzNet(f *testing.F) (*vectors, *Directory, map[string]*age.HybridIdentity) {
	b, err := os.ReadFile(filepath.Join(vectorDir, "vectors.json"))
	if err != nil {
		f.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		f.Fatal(err)
	}
	dir, err := ParseDirectory(readVectorF(f, v.Directory), seedKey("authority").Public().(ed25519.PublicKey))
	if err != nil {
		f.Fatal(err)
	}
	ids := map[string]*age.HybridIdentity{}
	for name, s := range v.Identities {
		if ids[name], err = age.ParseHybridIdentity(s); err != nil {
			f.Fatal(err)
		}
	}
	return &v, dir, ids
}

func readVectorF(f *testing.F, name string) []byte {
	b, err := os.ReadFile(filepath.Join(vectorDir, name))
	if err != nil {
		f.Fatal(err)
	}
	return b
}

func FuzzOpen(f *testing.F) {
	v, dir, ids := fuzzNet(f)
	openers := map[string]*Opener{}
	for name, id := range ids {
		o, err := NewOpener(name, dir, &Identity{id: id})
		if err != nil {
			f.Fatal(err)
		}
		openers[name] = o
	}
	// iom knows the thread of the thread envelope vector.
	var tv threadVector
	if err := json.Unmarshal(readVectorF(f, "thread.json"), &tv); err != nil {
		f.Fatal(err)
	}
	key, err := ParseThreadKey(tv.ThreadKey)
	if err != nil {
		f.Fatal(err)
	}
	openers["iom"].SetThreads(func(id string) (Thread, bool) { return Thread{Key: key, Peer: "shelter"}, id == key.ID() })
	for _, file := range append(vectorFiles(*v), tv.File) {
		env := readVectorF(f, file)
		f.Add(env)
		f.Add(env[:len(env)/2])
		f.Add(env[:40])
	}
	f.Add([]byte{})
	f.Add([]byte("RJKE"))
	f.Add([]byte("RJKT\x00\x01\x01"))
	f.Add([]byte("RJKE\x00\x01\x01"))
	f.Fuzz(func(t *testing.T, env []byte) {
		for _, o := range []*Opener{openers["shelter"], openers["iom"]} {
			h, body, err := o.Open(env, v.Now)
			if err != nil {
				if ReasonCode(err) == ReasonInternal {
					t.Fatalf("error wraps no sentinel: %v", err)
				}
				if body != nil {
					t.Fatal("body returned with an error")
				}
				continue
			}
			if err := h.validate(); err != nil {
				t.Fatalf("opened an envelope with an invalid header: %v", err)
			}
			if vh, err := VerifyOuter(env, dir); err != nil || vh != h {
				t.Fatalf("opened, but VerifyOuter = %+v, %v", vh, err)
			}
		}
	})
}

func FuzzDirectory(f *testing.F) {
	// Small seeds: the fuzzer minimizes every new input, and a full
	// directory (about 2 KB per agency) makes that slow.
	_, dir, _ := fuzzNet(f)
	authority := seedKey("authority")
	pub := authority.Public().(ed25519.PublicKey)
	one := NewDirectory("x", json.RawMessage(`{"a":1}`))
	one.Agencies = dir.Agencies[:1]
	draft, _ := json.Marshal(one)
	f.Add(draft)
	empty := NewDirectory("x", nil)
	signed, err := SignDirectory(empty, authority)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Add([]byte(`{"directory":{},"signature":{"alg":"Ed25519","key_id":"","value":""}}`))
	f.Add([]byte(`{"version":1,"network":"x","issued_at":"2026-01-01T00:00:00Z","agencies":[]}`))
	f.Add([]byte(`{"version":1,"network":"x","issued_at":"2026-01-01T00:00:00Z","agencies":[],"limits":{"inbox_max_bytes":1073741824,"sender_max_messages":-1,"max_connections":8}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := ParseDirectory(b, pub); err != nil && !isDirectoryError(err) {
			t.Fatalf("ParseDirectory error wraps no sentinel: %v", err)
		}
		d, err := ParseDraft(b)
		if err != nil {
			if !isDirectoryError(err) {
				t.Fatalf("ParseDraft error wraps no sentinel: %v", err)
			}
			return
		}
		// A valid draft signs, and the signed file verifies to the same
		// directory.
		signed, err := SignDirectory(d, authority)
		if err != nil {
			t.Fatalf("SignDirectory of a valid draft: %v", err)
		}
		d2, err := ParseDirectory(signed, pub)
		if err != nil {
			t.Fatalf("ParseDirectory of a fresh signature: %v", err)
		}
		j1, _ := json.Marshal(d)
		j2, _ := json.Marshal(d2)
		if !bytes.Equal(j1, j2) {
			t.Fatalf("round trip changed the directory:\n%s\n%s", j1, j2)
		}
	})
}

func isDirectoryError(err error) bool {
	for _, s := range []error{ErrDirectoryMalformed, ErrDirectorySignature, ErrDirectoryTooLarge, ErrRecipientType} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func FuzzReceipt(f *testing.F) {
	v, dir, _ := fuzzNet(f)
	for _, rv := range v.Receipts {
		b := readVectorF(f, rv.File)
		f.Add(b)
		f.Add(b[:len(b)-64])
	}
	f.Add([]byte("RJKR\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, perr := ParseReceipt(b)
		r, err := VerifyReceipt(b, dir)
		if perr != nil {
			if err == nil {
				t.Fatal("VerifyReceipt accepted what ParseReceipt refused")
			}
			if !errors.Is(perr, ErrReceiptMalformed) {
				t.Fatalf("ParseReceipt error wraps no sentinel: %v", perr)
			}
			return
		}
		// What parses re-encodes to the same bytes: the encoding is
		// canonical.
		if enc := appendReceipt(nil, &p); !bytes.Equal(enc, b[:len(b)-ed25519.SignatureSize]) {
			t.Fatalf("receipt re-encodes differently:\n%x\n%x", enc, b)
		}
		if err != nil && !errors.Is(err, ErrReceiptSignature) && !errors.Is(err, ErrUnknownSender) {
			t.Fatalf("VerifyReceipt error wraps no sentinel: %v", err)
		}
		if err == nil && r != p {
			t.Fatalf("VerifyReceipt = %+v, ParseReceipt = %+v", r, p)
		}
	})
}

// vectorFiles lists the envelope files of the vectors.
func vectorFiles(v vectors) []string {
	var files []string
	for _, ev := range v.Envelopes {
		files = append(files, ev.File)
	}
	return files
}
