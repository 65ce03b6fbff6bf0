package staff

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are the argon2id cost parameters of new password hashes. A stored
// hash carries its own parameters, so raising them later leaves existing
// passwords valid.
type Params struct {
	// Time is the number of passes over the memory.
	Time uint32
	// Memory is in KiB.
	Memory uint32
	// Threads is the degree of parallelism.
	Threads uint8
}

// DefaultParams are the parameters used when Options.Argon is zero:
// one pass over 64 MiB with two lanes, as golang.org/x/crypto/argon2
// suggests for IDKey (and above OWASP's minimum of 19 MiB, two passes).
var DefaultParams = Params{Time: 1, Memory: 64 * 1024, Threads: 2}

const (
	saltLen = 16
	keyLen  = 32
	// Bounds on the parameters read from a stored hash, so a damaged
	// record cannot make a sign-in allocate without limit.
	maxTime   = 16
	maxMemory = 1 << 20 // 1 GiB
	maxLanes  = 16
)

// hashSlots bounds how many hashes are computed at once in this process:
// each takes Params.Memory, and sign-ins come from outside.
var hashSlots = make(chan struct{}, 4)

// hashPassword returns the PHC-style encoding of an argon2id hash of
// password with a new random salt:
// $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<hash> (base64 without
// padding).
func hashPassword(password string, p Params) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	hashSlots <- struct{}{}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, keyLen)
	<-hashSlots
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

var errBadHash = errors.New("not an argon2id hash this program made")

// parseHash reads an encoded hash.
func parseHash(encoded string) (p Params, salt, key []byte, err error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, errBadHash
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, errBadHash
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return p, nil, nil, errBadHash
	}
	if p.Time < 1 || p.Time > maxTime || p.Threads < 1 || p.Threads > maxLanes ||
		p.Memory < 8*uint32(p.Threads) || p.Memory > maxMemory {
		return p, nil, nil, errBadHash
	}
	if salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(salt) < 8 || len(salt) > 64 {
		return p, nil, nil, errBadHash
	}
	if key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(key) < 16 || len(key) > 64 {
		return p, nil, nil, errBadHash
	}
	return p, salt, key, nil
}

// checkPassword reports whether password matches the encoded hash,
// comparing in constant time. A hash it cannot read matches nothing.
func checkPassword(encoded, password string) bool {
	p, salt, key, err := parseHash(encoded)
	if err != nil {
		return false
	}
	hashSlots <- struct{}{}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	<-hashSlots
	return subtle.ConstantTimeCompare(got, key) == 1
}
