package cli

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

func init() {
	register(Command{
		Name:    "token",
		Summary: "mint a token with an agency's development issuer key",
		Run:     runToken,
	})
}

// MaxDevTokenTTL caps the lifetime of a development token.
const MaxDevTokenTTL = 30 * 24 * time.Hour

// TokenConfig is what `rujukan token` needs.
type TokenConfig struct {
	// Data is the data directory; the issuer key is
	// Data/agencies/<Agency>/jwt-issuer.pem, and the signed network
	// directory is found as networkDirectory describes.
	Data    string
	Agency  string
	Subject string
	// Scopes to grant: each must be one that staff of the agency's kind
	// may hold (policy.ScopesForKind). Empty means every scope of the
	// kind. The kind is read from the network directory.
	Scopes []string
	TTL    time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// MintDevToken mints a token for cfg.Agency's gateway (audience the agency,
// issuer policy.DevIssuer(agency)) signed with the agency's development
// issuer key. The agency must be an active member of the network directory,
// and every scope one that staff of its kind may hold; each refusal is one
// line.
func MintDevToken(cfg TokenConfig) (string, error) {
	if !crypto.ValidSlug(cfg.Agency) {
		return "", fmt.Errorf("token: --agency %q is not an agency id", cfg.Agency)
	}
	if cfg.Subject == "" {
		return "", errors.New("token: --sub is required")
	}
	if cfg.TTL <= 0 || cfg.TTL > MaxDevTokenTTL {
		return "", fmt.Errorf("token: --ttl %v is outside 1s to %v", cfg.TTL, MaxDevTokenTTL)
	}
	for _, s := range cfg.Scopes {
		if !slices.Contains(policy.AllScopes, s) {
			return "", fmt.Errorf("token: unknown scope %q (known: %s)", s, strings.Join(policy.AllScopes, " "))
		}
	}
	network, path, err := networkDirectory(cfg.Data, cfg.Agency)
	if err != nil {
		return "", err
	}
	a, ok := network.Agency(cfg.Agency)
	if !ok {
		return "", fmt.Errorf("token: agency %q is not in the network directory %s", cfg.Agency, path)
	}
	if a.Status != crypto.StatusActive {
		return "", fmt.Errorf("token: agency %q is %s in the network directory %s", cfg.Agency, a.Status, path)
	}
	allowed := policy.ScopesForKind(a.Kind)
	scopes := cfg.Scopes
	if len(scopes) == 0 {
		scopes = allowed
	}
	for _, s := range scopes {
		if !slices.Contains(allowed, s) {
			return "", fmt.Errorf("token: scope %q is not one that staff of agency %q (kind %s) may hold (they may hold: %s)",
				s, cfg.Agency, a.Kind, strings.Join(allowed, " "))
		}
	}
	dir := filepath.Join(cfg.Data, "agencies", cfg.Agency)
	key, err := crypto.LoadEd25519PrivateKey(filepath.Join(dir, crypto.JWTIssuerKeyFile))
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	now := time.Now
	if cfg.Now != nil {
		now = cfg.Now
	}
	t := now().Truncate(time.Second)
	tok, err := policy.MintToken(key, crypto.JWTKeyID(key.Public().(ed25519.PublicKey)), policy.TokenClaims{
		Issuer:   policy.DevIssuer(cfg.Agency),
		Subject:  cfg.Subject,
		Audience: []string{cfg.Agency},
		Scopes:   scopes,
		IssuedAt: t,
		Expiry:   t.Add(cfg.TTL),
	})
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	return tok, nil
}

// networkDirectory finds the signed network directory under data and
// verifies it with the authority public key kept beside it: the first that
// exists of data/network.json with data/authority/authority.pub (rujukan
// dev), data/broker/network.json with data/broker/authority.pub (rujukan
// provision) and data/agencies/<agency>/network.json with
// data/agencies/<agency>/authority.pub (one agency's provisioned folder).
// agency must be a valid slug. It returns the directory and its path.
func networkDirectory(data, agency string) (*crypto.Directory, string, error) {
	candidates := []struct{ dir, authority string }{
		{filepath.Join(data, "network.json"), filepath.Join(data, "authority", "authority.pub")},
		{filepath.Join(data, "broker", "network.json"), filepath.Join(data, "broker", "authority.pub")},
		{filepath.Join(data, "agencies", agency, "network.json"), filepath.Join(data, "agencies", agency, "authority.pub")},
	}
	for _, c := range candidates {
		if _, err := os.Stat(c.dir); errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, "", fmt.Errorf("token: %w", err)
		}
		pub, err := crypto.ParseAuthorityKey("@" + c.authority)
		if err != nil {
			return nil, "", fmt.Errorf("token: network directory %s: %w", c.dir, err)
		}
		d, err := crypto.LoadDirectory(c.dir, pub)
		if err != nil {
			return nil, "", fmt.Errorf("token: %w", err)
		}
		return d, c.dir, nil
	}
	return nil, "", fmt.Errorf("token: no network directory under --data %s (looked for network.json): run rujukan dev or rujukan provision first", data)
}

func runToken(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet(env, "token")
	data := fs.String("data", "./rujukan-data", "data directory written by rujukan dev")
	agency := fs.String("agency", "", "agency id whose development issuer signs the token (required)")
	sub := fs.String("sub", "", "token subject: the staff member (required)")
	scope := fs.String("scope", "", "space-separated scopes (default: every scope of the agency's kind)")
	ttl := fs.Duration("ttl", time.Hour, "token lifetime")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	tok, err := MintDevToken(TokenConfig{
		Data:    *data,
		Agency:  *agency,
		Subject: *sub,
		Scopes:  strings.Fields(*scope),
		TTL:     *ttl,
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(env.Stdout, tok)
	return err
}
