package cli

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
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
	// Data/agencies/<Agency>/jwt-issuer.pem.
	Data    string
	Agency  string
	Subject string
	// Scopes to grant. Empty means every scope of the agency's kind, read
	// from Data/agencies/<Agency>/agency.json.
	Scopes []string
	TTL    time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// MintDevToken mints a token for cfg.Agency's gateway (audience the agency,
// issuer policy.DevIssuer(agency)) signed with the agency's development
// issuer key.
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
	dir := filepath.Join(cfg.Data, "agencies", cfg.Agency)
	scopes := cfg.Scopes
	if len(scopes) == 0 {
		a, err := crypto.ReadAgencyFile(filepath.Join(dir, crypto.AgencyFile))
		if err != nil {
			return "", fmt.Errorf("token: no --scope given and the agency kind is unknown: %w", err)
		}
		scopes = policy.ScopesForKind(a.Kind)
	}
	for _, s := range scopes {
		if !slices.Contains(policy.AllScopes, s) {
			return "", fmt.Errorf("token: unknown scope %q (known: %s)", s, strings.Join(policy.AllScopes, " "))
		}
	}
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
