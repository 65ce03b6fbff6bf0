package crypto

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Errors of editing a directory draft.
var (
	// ErrAgencyRevoked is returned when a revoked agency would be added
	// back: revocation is final, a new entry needs a new agency id.
	ErrAgencyRevoked = errors.New("agency is revoked")
	// ErrNotInDirectory is returned when an agency or key to revoke is not
	// in the directory.
	ErrNotInDirectory = errors.New("not in the directory")
	// ErrAgencyExists is returned by Add for an agency id already in the
	// directory: replacing its keys is Rotate's job, asked for by name.
	ErrAgencyExists = errors.New("agency is already in the directory")
	// ErrKindChange is returned by Rotate for an entry of another kind:
	// the kind decides what an agency may send.
	ErrKindChange = errors.New("agency kind cannot change")
)

// DefaultNetwork is the network name of a new directory.
const DefaultNetwork = "rujukan"

// NewDirectory returns an empty draft directory at version 1 with the given
// network name (DefaultNetwork if empty) and network rules (may be nil).
func NewDirectory(network string, rules json.RawMessage) *Directory {
	if network == "" {
		network = DefaultNetwork
	}
	return &Directory{Version: 1, Network: network, Agencies: []Agency{}, Rules: rules}
}

// ParseAgency parses and validates one public agency entry (the agency.json
// written by GenerateAgencyKeys).
func ParseAgency(b []byte) (*Agency, error) {
	if len(b) > 1<<20 {
		return nil, fmt.Errorf("%w: agency entry larger than 1 MiB", ErrDirectoryMalformed)
	}
	var a Agency
	if err := decodeStrict(b, &a); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDirectoryMalformed, err)
	}
	if a.Limits != nil {
		return nil, fmt.Errorf("%w: agency %s: an agency entry cannot set its own limits (the authority sets them in the directory)", ErrDirectoryMalformed, a.ID)
	}
	d := Directory{Version: 1, Agencies: []Agency{a}}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &a, nil
}

// Add adds a new agency entry to the directory. An agency id already in
// it, active or revoked, is refused (ErrAgencyExists, ErrAgencyRevoked):
// an entry that carried a known id would otherwise take the agency over,
// and its referrals with it. The directory is validated afterwards and
// left unchanged on error.
func (d *Directory) Add(a Agency) error {
	if cur, ok := d.Agency(a.ID); ok {
		if cur.Status == StatusRevoked {
			return fmt.Errorf("%w: %s", ErrAgencyRevoked, a.ID)
		}
		return fmt.Errorf("%w: %s (use rotate to replace its keys)", ErrAgencyExists, a.ID)
	}
	next := d.clone()
	a.Keys = append([]PublicKey(nil), a.Keys...)
	next.Agencies = append(next.Agencies, a)
	if err := next.Validate(); err != nil {
		return err
	}
	*d = *next
	return nil
}

// Rotate replaces the keys of an active agency with those of a new entry
// for it: keys of the entry that are new are added, and each previously
// active key whose use now has a new active key is kept, so that what it
// signed or opened still verifies, with a new status. An encryption or
// signing key becomes retired with NotAfter = retireUntil: envelopes sealed
// to it or signed with it before the rotation (in flight, waiting at the
// broker, queued in a sender's outbox) are still accepted until then. A zero
// retireUntil revokes them at once instead, for a key that may be
// compromised. A NATS key is always revoked: a login has nothing in
// flight. The name may change; the kind may not (ErrKindChange). The
// directory is validated afterwards and left unchanged on error.
func (d *Directory) Rotate(a Agency, retireUntil time.Time) error {
	next := d.clone()
	cur, ok := next.Agency(a.ID)
	switch {
	case !ok:
		return fmt.Errorf("agency %q: %w", a.ID, ErrNotInDirectory)
	case cur.Status == StatusRevoked:
		return fmt.Errorf("%w: %s", ErrAgencyRevoked, a.ID)
	case cur.Kind != a.Kind:
		return fmt.Errorf("%w: %s is %s, the entry says %s", ErrKindChange, a.ID, cur.Kind, a.Kind)
	}
	cur.Name = a.Name
	for _, k := range a.Keys {
		if _, dup := cur.Key(k.Use, k.ID); dup {
			continue
		}
		if k.Status == StatusActive {
			for i := range cur.Keys {
				old := &cur.Keys[i]
				if old.Use != k.Use || old.Status != StatusActive {
					continue
				}
				if retireUntil.IsZero() || old.Use == UseNATS {
					old.Status = StatusRevoked
				} else {
					old.Status, old.NotAfter = StatusRetired, retireUntil.UTC().Truncate(time.Second)
				}
			}
		}
		cur.Keys = append(cur.Keys, k)
	}
	if err := next.Validate(); err != nil {
		return err
	}
	*d = *next
	return nil
}

// Revoke marks an agency (keyID empty) or one of its keys revoked. Revoked
// entries stay in the directory so that what they signed before can still
// be verified; nothing new is sealed to them or accepted from them.
func (d *Directory) Revoke(agencyID, keyID string) error {
	a, ok := d.Agency(agencyID)
	if !ok {
		return fmt.Errorf("agency %q: %w", agencyID, ErrNotInDirectory)
	}
	if keyID == "" {
		a.Status = StatusRevoked
		return nil
	}
	for i := range a.Keys {
		if a.Keys[i].ID == keyID {
			a.Keys[i].Status = StatusRevoked
			return nil
		}
	}
	return fmt.Errorf("key %q of agency %s: %w", keyID, agencyID, ErrNotInDirectory)
}

// clone returns a deep copy of d.
func (d *Directory) clone() *Directory {
	c := *d
	c.Agencies = make([]Agency, len(d.Agencies))
	for i, a := range d.Agencies {
		a.Keys = append([]PublicKey(nil), a.Keys...)
		c.Agencies[i] = a
	}
	c.Rules = append(json.RawMessage(nil), d.Rules...)
	return &c
}

// ParseAuthorityKey parses a network authority public key: standard base64
// of its 32 bytes, or "@path" to read that text from a file.
func ParseAuthorityKey(s string) (ed25519.PublicKey, error) {
	if path, ok := strings.CutPrefix(s, "@"); ok {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("failed to read authority key: %w", err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, 4096))
		if err != nil {
			return nil, fmt.Errorf("failed to read authority key %s: %w", path, err)
		}
		s = string(b)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("authority key is not 32 bytes of standard base64")
	}
	return ed25519.PublicKey(b), nil
}
