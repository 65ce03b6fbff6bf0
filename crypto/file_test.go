package crypto

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"testing"
)

// TestChunkMACVector pins the chunk MAC of docs/PROTOCOL.md §7.
func TestChunkMACVector(t *testing.T) {
	key := []byte("0123456789abcdef")
	got, err := ChunkMAC(key, "att-1", 1_000_000, 1, []byte("chunk bytes"))
	if err != nil {
		t.Fatal(err)
	}
	const want = "4IXnFcz96LCH4+frMXcLmtn+RkvgM4cEdowrhnPJioE"
	if got != want {
		t.Fatalf("ChunkMAC = %s, want %s", got, want)
	}
}

func TestVerifyChunk(t *testing.T) {
	key := []byte("0123456789abcdef")
	size := int64(FileChunkSize + 10)
	full := bytes.Repeat([]byte{7}, FileChunkSize)
	last := bytes.Repeat([]byte{8}, 10)
	mac0, _ := ChunkMAC(key, "a", size, 0, full)
	mac1, _ := ChunkMAC(key, "a", size, 1, last)
	if i, err := VerifyChunk(key, "a", size, "0", mac0, full); err != nil || i != 0 {
		t.Fatalf("chunk 0: %d %v", i, err)
	}
	if i, err := VerifyChunk(key, "a", size, "1", mac1, last); err != nil || i != 1 {
		t.Fatalf("chunk 1: %d %v", i, err)
	}
	bad := []struct {
		name, aid, index, mac string
		data                  []byte
		key                   []byte
	}{
		{"moved to another index", "a", "1", mac0, full, key},
		{"another file", "b", "0", mac0, full, key},
		{"cut", "a", "0", mac0, full[:100], key},
		{"changed", "a", "1", mac1, []byte("0123456789"), key},
		{"index past the end", "a", "2", mac1, last, key},
		{"negative index", "a", "-1", mac0, full, key},
		{"index not a number", "a", "x", mac0, full, key},
		{"index with a sign", "a", "+0", mac0, full, key},
		{"another key", "a", "0", mac0, full, []byte("fedcba9876543210")},
		{"no MAC", "a", "0", "", full, key},
	}
	for _, b := range bad {
		if _, err := VerifyChunk(b.key, b.aid, size, b.index, b.mac, b.data); !errors.Is(err, ErrChunk) {
			t.Errorf("%s: %v", b.name, err)
		}
	}
}

// TestSealedFileRoundTrip: a file sealed to an agency's own key opens with
// the file key read from its header, whole and at any offset.
func TestSealedFileRoundTrip(t *testing.T) {
	id, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 1, 64 << 10, 64<<10 + 1, 300_000} {
		plain := bytes.Repeat([]byte("rujukan "), n/8+1)[:n]
		var sealed bytes.Buffer
		w, err := SealFile(&sealed, id)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(plain)
		w.Close()
		key, err := FileKey(bytes.NewReader(sealed.Bytes()), id)
		if err != nil || len(key) != FileKeySize {
			t.Fatalf("%d: key %v", n, err)
		}
		r, err := OpenFileStream(bytes.NewReader(sealed.Bytes()), key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%d: stream %v", n, err)
		}
		ra, size, err := OpenFile(bytes.NewReader(sealed.Bytes()), int64(sealed.Len()), key)
		if err != nil || size != int64(n) {
			t.Fatalf("%d: reader at %d %v", n, size, err)
		}
		if n > 10 {
			buf := make([]byte, 10)
			if _, err := ra.ReadAt(buf, int64(n-10)); err != nil && err != io.EOF || !bytes.Equal(buf, plain[n-10:]) {
				t.Fatalf("%d: tail %v", n, err)
			}
		}
		// Another agency's identity does not open the header.
		other, _ := GenerateIdentity()
		if _, err := FileKey(bytes.NewReader(sealed.Bytes()), other); err == nil {
			t.Fatalf("%d: another identity opened the file", n)
		}
		// A flipped byte in the payload is caught.
		if n > 0 {
			b := bytes.Clone(sealed.Bytes())
			b[len(b)-1] ^= 1
			r, err := OpenFileStream(bytes.NewReader(b), key)
			if err == nil {
				_, err = io.ReadAll(r)
			}
			if err == nil {
				t.Fatalf("%d: a changed byte went unnoticed", n)
			}
		}
	}
}

func FuzzVerifyChunk(f *testing.F) {
	key := []byte("0123456789abcdef")
	mac, _ := ChunkMAC(key, "a", 20, 0, []byte("01234567890123456789"))
	f.Add("a", int64(20), "0", mac, []byte("01234567890123456789"))
	f.Add("a", int64(FileChunkSize+1), "1", "", []byte("x"))
	f.Fuzz(func(t *testing.T, aid string, size int64, index, mac string, data []byte) {
		i, err := VerifyChunk(key, aid, size, index, mac, data)
		if err != nil {
			return
		}
		if i < 0 || i >= FileChunks(size) || index != strconv.FormatInt(i, 10) {
			t.Fatalf("accepted index %q as %d of %d", index, i, FileChunks(size))
		}
	})
}
