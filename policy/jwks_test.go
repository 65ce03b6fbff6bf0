package policy

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
)

func TestParseJWKS(t *testing.T) {
	is := mustIssuer(t, "iss", 1)
	x := b64(is.ed.Public().(ed25519.PublicKey))
	ecb, _ := is.ec.PublicKey.Bytes()
	ecx, ecy := b64(ecb[1:33]), b64(ecb[33:])
	n := b64(is.rsa.N.Bytes())
	okp := func(extra string) string {
		return `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `","kid":"k1"` + extra + `}]}`
	}
	small := b64(new(big.Int).Lsh(big.NewInt(1), 1023).Bytes())
	tests := []struct {
		name string
		in   string
		alg  string
	}{
		{"Ed25519", okp(`,"alg":"EdDSA","use":"sig"`), AlgEdDSA},
		{"Ed25519 without alg", okp(``), AlgEdDSA},
		{"Ed25519 with key_ops verify", okp(`,"key_ops":["verify"]`), AlgEdDSA},
		{"unknown member ignored", okp(`,"x5t":"abc"`), AlgEdDSA},
		{"P-256", `{"keys":[{"kty":"EC","crv":"P-256","x":"` + ecx + `","y":"` + ecy + `","kid":"k1","alg":"ES256"}]}`, AlgES256},
		{"RSA", `{"keys":[{"kty":"RSA","n":"` + n + `","e":"AQAB","kid":"k1","alg":"RS256"}]}`, AlgRS256},
		{"empty", ``, ""},
		{"no keys", `{"keys":[]}`, ""},
		{"not JSON", `keys`, ""},
		{"trailing data", okp(``) + `{}`, ""},
		{"kid missing", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `"}]}`, ""},
		{"kid twice", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `","kid":"a"},{"kty":"OKP","crv":"Ed25519","x":"` + x + `","kid":"a"}]}`, ""},
		{"alg mismatch", okp(`,"alg":"ES256"`), ""},
		{"alg HS256", okp(`,"alg":"HS256"`), ""},
		{"use enc", okp(`,"use":"enc"`), ""},
		{"key_ops sign", okp(`,"key_ops":["sign"]`), ""},
		{"private key", okp(`,"d":"AAAA"`), ""},
		{"symmetric key", `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"k1"}]}`, ""},
		{"X25519", `{"keys":[{"kty":"OKP","crv":"X25519","x":"` + x + `","kid":"k1"}]}`, ""},
		{"short x", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"k1"}]}`, ""},
		{"padded x", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `=","kid":"k1"}]}`, ""},
		{"P-384", `{"keys":[{"kty":"EC","crv":"P-384","x":"` + ecx + `","y":"` + ecy + `","kid":"k1"}]}`, ""},
		{"point off the curve", `{"keys":[{"kty":"EC","crv":"P-256","x":"` + ecx + `","y":"` + ecx + `","kid":"k1"}]}`, ""},
		{"RSA 1024", `{"keys":[{"kty":"RSA","n":"` + small + `","e":"AQAB","kid":"k1"}]}`, ""},
		{"RSA e=1", `{"keys":[{"kty":"RSA","n":"` + n + `","e":"AQ","kid":"k1"}]}`, ""},
		{"RSA even e", `{"keys":[{"kty":"RSA","n":"` + n + `","e":"AQAA","kid":"k1"}]}`, ""},
		{"RSA leading zero", `{"keys":[{"kty":"RSA","n":"` + b64(append([]byte{0}, is.rsa.N.Bytes()...)) + `","e":"AQAB","kid":"k1"}]}`, ""},
		{"too many keys", `{"keys":[` + strings.Repeat(`{},`, MaxJWKSKeys) + `{}]}`, ""},
		{"too large", okp(``) + strings.Repeat(" ", MaxJWKSSize), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ks, err := ParseJWKS([]byte(tc.in))
			if tc.alg == "" {
				if !errors.Is(err, ErrJWKSMalformed) {
					t.Fatalf("got %v, want ErrJWKSMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			k, ok := ks.Key("k1")
			if !ok || k.Algorithm != tc.alg {
				t.Fatalf("key k1 = %+v, %v; want alg %s", k, ok, tc.alg)
			}
			if fmt.Sprint(ks.IDs()) != "[k1]" {
				t.Errorf("IDs = %v", ks.IDs())
			}
		})
	}
}
