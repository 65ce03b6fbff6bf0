package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// mustDevAgency writes the keys of one agency under data/agencies/<id> and
// returns a verifier for its gateway built from its jwks.json.
func mustDevAgency(t *testing.T, data, id, kind string) *policy.Verifier {
	t.Helper()
	dir := filepath.Join(data, "agencies", id)
	if _, err := crypto.GenerateAgencyKeys(dir, id, kind, id); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, crypto.JWKSFile))
	if err != nil {
		t.Fatal(err)
	}
	ks, err := policy.ParseJWKS(b)
	if err != nil {
		t.Fatal(err)
	}
	v, err := policy.NewVerifier(policy.VerifierConfig{
		Agency:  id,
		Issuers: []policy.Issuer{{Name: policy.DevIssuer(id), Keys: ks}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := Main(context.Background(), Env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}, args)
	return out.String(), errOut.String(), err
}

func TestTokenCommand(t *testing.T) {
	data := t.TempDir()
	v := mustDevAgency(t, data, "shelter", "shelter")
	mustDevAgency(t, data, "police", "police")

	t.Run("explicit scopes", func(t *testing.T) {
		out, _, err := runCLI(t, "token", "--data", data, "--agency", "shelter", "--sub", "cw-1", "--scope", "referral:read audit:read", "--ttl", "10m")
		if err != nil {
			t.Fatal(err)
		}
		p, err := v.Verify(strings.TrimSpace(out))
		if err != nil {
			t.Fatal(err)
		}
		if p.Subject != "cw-1" || strings.Join(p.Scopes, " ") != "referral:read audit:read" {
			t.Fatalf("principal %+v", p)
		}
		if d := time.Until(p.Expiry); d <= 8*time.Minute || d > 10*time.Minute {
			t.Fatalf("expires in %v, want about 10m", d)
		}
	})
	t.Run("default scopes of the kind", func(t *testing.T) {
		out, _, err := runCLI(t, "token", "--data", data, "--agency", "shelter", "--sub", "cw-2")
		if err != nil {
			t.Fatal(err)
		}
		p, err := v.Verify(strings.TrimSpace(out))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(p.Scopes, " ") != strings.Join(policy.ScopesForKind("shelter"), " ") {
			t.Fatalf("scopes %v", p.Scopes)
		}
	})
	t.Run("another agency's token is refused", func(t *testing.T) {
		out, _, err := runCLI(t, "token", "--data", data, "--agency", "police", "--sub", "p-1")
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(strings.TrimSpace(out))
		if policy.ReasonOf(err) != policy.ReasonTokenIssuer {
			t.Fatalf("got %v, want %s", err, policy.ReasonTokenIssuer)
		}
	})

	bad := []struct {
		name string
		args []string
		want string
	}{
		{"missing sub", []string{"--agency", "shelter"}, "--sub"},
		{"bad agency", []string{"--agency", "../shelter", "--sub", "x"}, "not an agency id"},
		{"unknown agency", []string{"--agency", "iom", "--sub", "x", "--scope", "audit:read"}, "jwt-issuer.pem"},
		{"unknown scope", []string{"--agency", "shelter", "--sub", "x", "--scope", "referral:delete"}, "unknown scope"},
		{"zero ttl", []string{"--agency", "shelter", "--sub", "x", "--ttl", "0s"}, "--ttl"},
		{"huge ttl", []string{"--agency", "shelter", "--sub", "x", "--ttl", "10000h"}, "--ttl"},
		{"stray argument", []string{"--agency", "shelter", "--sub", "x", "extra"}, "unexpected argument"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runCLI(t, append([]string{"token", "--data", data}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
			if out != "" {
				t.Fatalf("printed %q on error", out)
			}
		})
	}
}

func TestTokenRefusesReadableKey(t *testing.T) {
	data := t.TempDir()
	mustDevAgency(t, data, "iom", "iom")
	key := filepath.Join(data, "agencies", "iom", crypto.JWTIssuerKeyFile)
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := MintDevToken(TokenConfig{Data: data, Agency: "iom", Subject: "x", TTL: time.Hour})
	if !errors.Is(err, crypto.ErrKeyFilePermissions) {
		t.Fatalf("got %v, want ErrKeyFilePermissions", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, key) || !strings.Contains(msg, "chmod 600") || strings.Contains(msg, "\n") {
		t.Fatalf("error %q does not name the file and the fix on one line", msg)
	}
}
