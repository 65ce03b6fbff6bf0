package gateway

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rujukan/rujukan/crypto"
)

// Keys are the private keys of one agency's gateway, handed to New.
type Keys struct {
	// Signer signs envelopes and receipts.
	Signer *crypto.Signer
	// SigningKey signs envelopes, receipts and the audit checkpoints.
	SigningKey ed25519.PrivateKey
	// Identity opens envelopes sealed to this agency.
	Identity *crypto.Identity
	// AtRest seals what this gateway keeps for itself (its copy of what it
	// sent, staff notes, consent records).
	AtRest *crypto.AtRest
}

// LoadKeys reads the keys named by cfg: the signing key and age identity
// from cfg.Keys, the at-rest key from cfg.Data (made on first use).
func LoadKeys(cfg Config) (Keys, error) {
	var k Keys
	var err error
	if k.SigningKey, err = crypto.LoadEd25519PrivateKey(filepath.Join(cfg.Keys, crypto.SigningKeyFile)); err != nil {
		return Keys{}, err
	}
	if k.Signer, err = crypto.NewSigner(k.SigningKey); err != nil {
		return Keys{}, err
	}
	if k.Identity, err = crypto.LoadIdentity(filepath.Join(cfg.Keys, crypto.AgeKeyFile)); err != nil {
		return Keys{}, err
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return Keys{}, fmt.Errorf("failed to create data directory: %w", err)
	}
	if k.AtRest, err = crypto.LoadAtRest(filepath.Join(cfg.Data, "at-rest.key")); err != nil {
		return Keys{}, err
	}
	return k, nil
}
