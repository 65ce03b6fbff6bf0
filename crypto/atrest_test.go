package crypto

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestAtRest(t *testing.T) {
	id, other := NewAtRestKey(), NewAtRestKey()
	a, _ := NewAtRest(id)
	b, _ := NewAtRest(other)
	ct := a.Seal("env-1", []byte("body"))
	if pt, err := a.Open("env-1", ct); err != nil || !bytes.Equal(pt, []byte("body")) {
		t.Fatalf("round trip: %q %v", pt, err)
	}
	if again, _ := NewAtRest(id); again != nil {
		if _, err := again.Open("env-1", ct); err != nil {
			t.Errorf("the key is not derived the same way twice: %v", err)
		}
	}
	if _, err := NewAtRest(id[:16]); !errors.Is(err, ErrKeyMalformed) {
		t.Errorf("short secret: %v", err)
	}
	cases := map[string]func() ([]byte, error){
		"other id":       func() ([]byte, error) { return a.Open("env-2", ct) },
		"other identity": func() ([]byte, error) { return b.Open("env-1", ct) },
		"truncated":      func() ([]byte, error) { return a.Open("env-1", ct[:10]) },
		"empty":          func() ([]byte, error) { return a.Open("env-1", nil) },
		"flipped bit": func() ([]byte, error) {
			c := bytes.Clone(ct)
			c[len(c)-1] ^= 1
			return a.Open("env-1", c)
		},
	}
	for name, open := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := open(); !errors.Is(err, ErrAtRest) {
				t.Fatalf("got %v, want ErrAtRest", err)
			}
		})
	}
}

// LoadAtRest creates the key file once (0600) and reads the same key later.
func TestLoadAtRest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "at-rest.key")
	a, err := LoadAtRest(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	b, err := LoadAtRest(path)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := b.Open("id", a.Seal("id", []byte("x"))); err != nil || string(pt) != "x" {
		t.Fatalf("reloaded key: %q %v", pt, err)
	}
}
