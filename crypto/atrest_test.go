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
	ct, err := SealAtRest("env-1", []byte("body"), id.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := OpenAtRest("env-1", ct, id); err != nil || !bytes.Equal(pt, []byte("body")) {
		t.Fatalf("round trip: %q %v", pt, err)
	}
	if _, err := OpenAtRest("env-2", ct, id); !errors.Is(err, ErrAtRest) {
		t.Errorf("other id: %v", err)
	}
	if _, err := OpenAtRest("env-1", ct, other); !errors.Is(err, ErrAtRest) {
		t.Errorf("other identity: %v", err)
	}
	ct[len(ct)-1] ^= 1
	if _, err := OpenAtRest("env-1", ct, id); !errors.Is(err, ErrAtRest) {
		t.Errorf("flipped bit: %v", err)
	}
}
