package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rujukan/rujukan/crypto"
	"github.com/rujukan/rujukan/policy"
)

// mustDevNetwork writes the development network (authority, the keys of
// iom, dinsos, police and shelter, and the signed network.json) under data.
func mustDevNetwork(t *testing.T, data string) {
	t.Helper()
	if err := InitDevNetwork(data); err != nil {
		t.Fatal(err)
	}
}

// devVerifier returns a verifier for agency id's gateway, of the given
// kind, built from its jwks.json.
func devVerifier(t *testing.T, data, id, kind string) *policy.Verifier {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, "agencies", id, crypto.JWKSFile))
	if err != nil {
		t.Fatal(err)
	}
	ks, err := policy.ParseJWKS(b)
	if err != nil {
		t.Fatal(err)
	}
	v, err := policy.NewVerifier(policy.VerifierConfig{
		Agency:  id,
		Kind:    kind,
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
	mustDevNetwork(t, data)
	v := devVerifier(t, data, "shelter", policy.KindShelter)
	vPolice := devVerifier(t, data, "police", policy.KindPolice)

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
	t.Run("default scopes of the police", func(t *testing.T) {
		out, _, err := runCLI(t, "token", "--data", data, "--agency", "police", "--sub", "p-1")
		if err != nil {
			t.Fatal(err)
		}
		p, err := vPolice.Verify(strings.TrimSpace(out))
		if err != nil {
			t.Fatal(err)
		}
		if p.HasScope(policy.ScopeConsentOverride) || !p.HasScope(policy.ScopeStatementRequest) {
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
		want []string
	}{
		{"missing sub", []string{"--agency", "shelter"}, []string{"--sub"}},
		{"bad agency", []string{"--agency", "../shelter", "--sub", "x"}, []string{"not an agency id"}},
		{"agency not in the directory", []string{"--agency", "nope", "--sub", "x"}, []string{`agency "nope" is not in the network directory`, "network.json"}},
		{"agency not in the directory, with scopes", []string{"--agency", "nope", "--sub", "x", "--scope", "audit:read"}, []string{`agency "nope" is not in the network directory`}},
		{"unknown scope", []string{"--agency", "shelter", "--sub", "x", "--scope", "referral:delete"}, []string{"unknown scope"}},
		{"police with consent:override", []string{"--agency", "police", "--sub", "x", "--scope", "referral:send consent:override"}, []string{`scope "consent:override"`, `agency "police"`, "kind police"}},
		{"police with statement:respond", []string{"--agency", "police", "--sub", "x", "--scope", "statement:respond"}, []string{`scope "statement:respond"`}},
		{"shelter with statement:request", []string{"--agency", "shelter", "--sub", "x", "--scope", "statement:request"}, []string{`scope "statement:request"`, "kind shelter"}},
		{"zero ttl", []string{"--agency", "shelter", "--sub", "x", "--ttl", "0s"}, []string{"--ttl"}},
		{"huge ttl", []string{"--agency", "shelter", "--sub", "x", "--ttl", "10000h"}, []string{"--ttl"}},
		{"stray argument", []string{"--agency", "shelter", "--sub", "x", "extra"}, []string{"unexpected argument"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := runCLI(t, append([]string{"token", "--data", data}, tc.args...)...)
			if err == nil {
				t.Fatalf("no error, want one mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("got %v, want an error mentioning %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q is not one line", err)
			}
			if out != "" {
				t.Fatalf("printed %q on error", out)
			}
		})
	}
}

// The directory is found where rujukan dev and rujukan provision put it,
// and only when its signature verifies.
func TestTokenDirectory(t *testing.T) {
	move := func(t *testing.T, data, dirTo, authTo string) {
		t.Helper()
		auth, err := os.ReadFile(filepath.Join(data, "authority", "authority.pub"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(dirTo), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(data, "network.json"), dirTo); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(authTo, auth, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("provisioned broker folder", func(t *testing.T) {
		data := t.TempDir()
		mustDevNetwork(t, data)
		move(t, data, filepath.Join(data, "broker", "network.json"), filepath.Join(data, "broker", "authority.pub"))
		if _, err := MintDevToken(TokenConfig{Data: data, Agency: "iom", Subject: "x", TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("provisioned agency folder", func(t *testing.T) {
		data := t.TempDir()
		mustDevNetwork(t, data)
		ad := filepath.Join(data, "agencies", "iom")
		move(t, data, filepath.Join(ad, "network.json"), filepath.Join(ad, "authority.pub"))
		if _, err := MintDevToken(TokenConfig{Data: data, Agency: "iom", Subject: "x", TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
		_, err := MintDevToken(TokenConfig{Data: data, Agency: "nope", Subject: "x", TTL: time.Hour})
		if err == nil || !strings.Contains(err.Error(), "no network directory") {
			t.Fatalf("got %v, want no network directory", err)
		}
	})
	t.Run("no directory", func(t *testing.T) {
		data := t.TempDir()
		_, err := MintDevToken(TokenConfig{Data: data, Agency: "iom", Subject: "x", TTL: time.Hour})
		if err == nil || !strings.Contains(err.Error(), "no network directory") || !strings.Contains(err.Error(), data) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("got %v, want one line saying there is no network directory under %s", err, data)
		}
	})
	t.Run("directory signed by another authority", func(t *testing.T) {
		data := t.TempDir()
		mustDevNetwork(t, data)
		other, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, "authority", "authority.pub"), []byte(base64.StdEncoding.EncodeToString(other)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := MintDevToken(TokenConfig{Data: data, Agency: "iom", Subject: "x", TTL: time.Hour}); err == nil {
			t.Fatal("minted with a directory the authority did not sign")
		}
	})
	t.Run("revoked agency", func(t *testing.T) {
		data := t.TempDir()
		mustDevNetwork(t, data)
		authKey, err := crypto.LoadEd25519PrivateKey(filepath.Join(data, "authority", "authority.pem"))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(data, "network.json")
		d, err := crypto.LoadDirectory(path, authKey.Public().(ed25519.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Revoke("iom", ""); err != nil {
			t.Fatal(err)
		}
		signed, err := crypto.SignDirectory(d, authKey)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, signed, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = MintDevToken(TokenConfig{Data: data, Agency: "iom", Subject: "x", TTL: time.Hour})
		if err == nil || !strings.Contains(err.Error(), `agency "iom" is revoked`) {
			t.Fatalf("got %v, want a refusal of the revoked agency", err)
		}
		if _, err := MintDevToken(TokenConfig{Data: data, Agency: "shelter", Subject: "x", TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("agency in the directory without its key here", func(t *testing.T) {
		data := t.TempDir()
		mustDevNetwork(t, data)
		if err := os.Remove(filepath.Join(data, "agencies", "iom", crypto.JWTIssuerKeyFile)); err != nil {
			t.Fatal(err)
		}
		_, err := MintDevToken(TokenConfig{Data: data, Agency: "iom", Subject: "x", TTL: time.Hour})
		if err == nil || !strings.Contains(err.Error(), crypto.JWTIssuerKeyFile) {
			t.Fatalf("got %v, want an error naming %s", err, crypto.JWTIssuerKeyFile)
		}
	})
}

func TestTokenRefusesReadableKey(t *testing.T) {
	data := t.TempDir()
	mustDevNetwork(t, data)
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
