package crypto

import (
	"bytes"
	"errors"
	"testing"

	"filippo.io/age"
)

func TestAtRest(t *testing.T) {
	id, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := age.GenerateHybridIdentity()
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
