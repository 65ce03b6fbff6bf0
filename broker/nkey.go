package broker

import (
	"bytes"
	"fmt"

	"github.com/nats-io/nkeys"

	"github.com/rujukan/rujukan/crypto"
)

// NewNATSKey generates an agency's NATS nkey user key pair, for
// crypto.WriteAgencyKeys: the seed goes to the agency's nats.nk, the public
// key to its directory entry.
func NewNATSKey() (crypto.NATSKey, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return crypto.NATSKey{}, fmt.Errorf("failed to generate nkey: %w", err)
	}
	defer kp.Wipe()
	seed, err := kp.Seed()
	if err != nil {
		return crypto.NATSKey{}, fmt.Errorf("failed to generate nkey: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return crypto.NATSKey{}, fmt.Errorf("failed to generate nkey: %w", err)
	}
	// Wipe overwrites the key pair's own copy of the seed, which Seed returns.
	return crypto.NATSKey{Seed: bytes.Clone(seed), Public: pub}, nil
}

// CheckAgency parses every NATS key of an agency entry with the nkeys
// library. Package crypto checks only their shape (it does not depend on
// NATS), so a key with a wrong checksum passes crypto's validation; this
// check refuses it with an error wrapping crypto.ErrDirectoryMalformed that
// names the agency and the key.
func CheckAgency(a *crypto.Agency) error {
	for _, k := range a.Keys {
		if k.Use == crypto.UseNATS && !nkeys.IsValidPublicUserKey(k.Public) {
			return fmt.Errorf("%w: agency %s: key %s: %q is not a valid NATS user public nkey",
				crypto.ErrDirectoryMalformed, a.ID, k.ID, k.Public)
		}
	}
	return nil
}

// CheckDirectory runs CheckAgency on every agency of d, active or revoked.
// The broker refuses a directory that fails it, at start and on reload.
func CheckDirectory(d *crypto.Directory) error {
	for i := range d.Agencies {
		if err := CheckAgency(&d.Agencies[i]); err != nil {
			return err
		}
	}
	return nil
}

func validUserNKey(k string) bool { return nkeys.IsValidPublicUserKey(k) }
