package client

import (
	"bytes"
	"fmt"

	"github.com/nats-io/nkeys"

	"github.com/rujukan/rujukan/crypto"
)

// LoadNKeySeed loads a NATS nkey user seed (SU...) from a private key file
// (crypto.NATSSeedFile in an agency's key directory) and returns the seed
// bytes, as Connect takes them. The file must pass the checks of
// crypto.ReadPrivateFile (a regular file, not a symbolic link, owned by
// this user, mode 0600 or stricter); a file that does not hold exactly
// one user seed is refused with an error wrapping crypto.ErrKeyMalformed.
func LoadNKeySeed(path string) ([]byte, error) {
	b, err := crypto.ReadPrivateFile(path)
	if err != nil {
		return nil, err
	}
	seed := bytes.TrimSpace(b)
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("%w: %s does not hold an nkey seed", crypto.ErrKeyMalformed, path)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return nil, fmt.Errorf("%w: %s does not hold an nkey user seed (SU...)", crypto.ErrKeyMalformed, path)
	}
	return seed, nil
}
