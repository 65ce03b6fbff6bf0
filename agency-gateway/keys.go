package gateway

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"time"

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
	// Retired are age identities a rotation replaced (crypto.RetiredDir in
	// the key folder): they open what was sealed to them, arrivals while
	// the directory lists them as retired and what the inbox stored, and
	// are never sealed to or published.
	Retired []*crypto.Identity
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
	if k.Retired, err = crypto.LoadRetiredIdentities(cfg.Keys); err != nil {
		return Keys{}, err
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return Keys{}, fmt.Errorf("failed to create data directory: %w", err)
	}
	if k.AtRest, err = crypto.LoadAtRest(filepath.Join(cfg.Data, AtRestKeyFile)); err != nil {
		return Keys{}, err
	}
	return k, nil
}

// identities returns the current age identity and the retired ones, for
// the Opener.
func (k Keys) identities() []*crypto.Identity {
	ids := []*crypto.Identity{k.Identity}
	for _, r := range k.Retired {
		if r != nil && r.KeyID() != k.Identity.KeyID() {
			ids = append(ids, r)
		}
	}
	return ids
}

// logKeys says which retired encryption keys of this agency the directory
// lists, until when arrivals sealed to them are accepted, and whether this
// gateway holds their private key; a missing one is a warning, since what
// was sealed to it cannot be opened here.
func (g *Gateway) logKeys(dir *crypto.Directory) {
	self, ok := dir.Agency(g.self)
	if !ok {
		return
	}
	held := map[string]bool{}
	for _, id := range g.keys.Retired {
		held[id.KeyID()] = true
	}
	for _, k := range self.Keys {
		if k.Use != crypto.UseEncrypt || k.Status != crypto.StatusRetired {
			continue
		}
		switch {
		case held[k.ID]:
			g.log.Info("retired age identity kept for decryption only", "key_id", k.ID,
				"accepted_until", k.NotAfter.UTC().Format(time.RFC3339), "file", crypto.RetiredIdentityPath(g.cfg.Keys, k.ID))
		case !g.now().After(k.NotAfter):
			g.log.Warn("the directory lists a retired encryption key of this agency whose private key is not here; envelopes sealed to it will be refused",
				"key_id", k.ID, "expected_file", crypto.RetiredIdentityPath(g.cfg.Keys, k.ID))
		}
	}
}
