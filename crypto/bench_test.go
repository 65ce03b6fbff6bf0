package crypto

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"runtime"
	"testing"

	"filippo.io/age"
)

// Run with: go test ./crypto -run '^$' -bench . -benchmem
//
// BenchmarkAgeEncrypt2KiB, BenchmarkAgeDecrypt2KiB, BenchmarkEd25519Sign
// and BenchmarkEd25519Verify measure the primitives alone, so that
// Seal+Open of 2 KiB can be compared with their sum.

var benchSizes = []struct {
	name string
	size int
}{{"2KiB", 2 << 10}, {"512KiB", 512 << 10}}

func benchBody(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func BenchmarkSeal(b *testing.B) {
	n := MustNet(b)
	signer, to := n.members["iom"].signer, n.agency(b, "shelter")
	for _, s := range benchSizes {
		b.Run(s.name, func(b *testing.B) {
			body := benchBody(s.size)
			h := testHeader(KindReferral, "iom", "shelter")
			b.SetBytes(int64(s.size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Seal(h, body, signer, to); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	n := MustNet(b)
	o := n.opener(b, "shelter")
	sizes := append(benchSizes, struct {
		name string
		size int
	}{"max", MaxBodySize})
	for _, s := range sizes {
		b.Run(s.name, func(b *testing.B) {
			env := n.mustSeal(b, testHeader(KindReferral, "iom", "shelter"), benchBody(s.size))
			b.SetBytes(int64(len(env)))
			b.ReportAllocs()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for b.Loop() {
				if _, _, err := o.Open(env, testNow); err != nil {
					b.Fatal(err)
				}
			}
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/float64(len(env)), "alloc/envelope-size")
		})
	}
}

func BenchmarkAgeEncrypt2KiB(b *testing.B) {
	id, _ := age.GenerateHybridIdentity()
	r := id.Recipient()
	body := benchBody(2 << 10)
	b.ReportAllocs()
	for b.Loop() {
		var buf bytes.Buffer
		w, err := age.Encrypt(&buf, r)
		if err != nil {
			b.Fatal(err)
		}
		w.Write(body)
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAgeDecrypt2KiB(b *testing.B) {
	id, _ := age.GenerateHybridIdentity()
	var buf bytes.Buffer
	w, _ := age.Encrypt(&buf, id.Recipient())
	w.Write(benchBody(2 << 10))
	w.Close()
	ct := buf.Bytes()
	b.ReportAllocs()
	for b.Loop() {
		r, err := age.Decrypt(bytes.NewReader(ct), id)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEd25519Sign(b *testing.B) {
	k := seedKey("bench")
	msg := benchBody(128)
	b.ReportAllocs()
	for b.Loop() {
		ed25519.Sign(k, msg)
	}
}

func BenchmarkEd25519Verify(b *testing.B) {
	k := seedKey("bench")
	msg := benchBody(128)
	sig := ed25519.Sign(k, msg)
	pub := k.Public().(ed25519.PublicKey)
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("verify failed")
		}
	}
}
