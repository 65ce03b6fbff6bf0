package gateway

import (
	"errors"
	"strings"
	"testing"
)

const goodConfig = `
agency: iom
keys: /keys
directory: /keys/network.json
authority: "@/keys/authority.pub"
broker:
  url: tls://broker:4222
  ca: /keys/ca.pem
http:
  listen: 0.0.0.0:8080
issuers:
  - issuer: rujukan-dev/iom
    jwks: /keys/jwks.json
data: /data
delivery_deadline: 48h
`

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(goodConfig), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Broker.NKeySeed != "/keys/nats.nk" || cfg.HTTP.MaxBody != 256<<10 || cfg.DeliveryDeadline.Hours() != 48 {
		t.Errorf("defaults not filled: %+v", cfg)
	}
	cfg, err = ParseConfig([]byte(goodConfig), env(map[string]string{
		"RUJUKAN_HTTP_LISTEN": "127.0.0.1:9999", "RUJUKAN_ISSUERS": "a=/a.json,b=/b.json", "RUJUKAN_CLOCK_SKEW": "30s"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.Listen != "127.0.0.1:9999" || len(cfg.Issuers) != 2 || cfg.Issuers[1].JWKS != "/b.json" || cfg.ClockSkew.Seconds() != 30 {
		t.Errorf("environment not applied: %+v", cfg)
	}
}

// Each bad config fails with ErrConfig and an error naming the field.
func TestParseConfigErrors(t *testing.T) {
	cases := []struct {
		name, yaml string
		env        map[string]string
		field      string
	}{
		{"unknown field", goodConfig + "colour: red\n", nil, "colour"},
		{"not yaml", "agency: [", nil, "yaml"},
		{"bad agency", strings.Replace(goodConfig, "agency: iom", "agency: IOM!", 1), nil, "field agency"},
		{"no keys", strings.Replace(goodConfig, "keys: /keys\n", "", 1), nil, "field keys"},
		{"bad broker url", strings.Replace(goodConfig, "tls://broker:4222", "http://broker", 1), nil, "field broker.url"},
		{"cert without key", goodConfig + "", map[string]string{"RUJUKAN_BROKER_CERT": "/c.pem"}, "field broker.cert"},
		{"bad listen", strings.Replace(goodConfig, "0.0.0.0:8080", "8080", 1), nil, "field http.listen"},
		{"no issuers", strings.Replace(goodConfig, "  - issuer: rujukan-dev/iom\n    jwks: /keys/jwks.json\n", "", 1), nil, "field issuers"},
		{"issuer without jwks", strings.Replace(goodConfig, "    jwks: /keys/jwks.json\n", "", 1), nil, "field issuers[0].jwks"},
		{"no data", strings.Replace(goodConfig, "data: /data\n", "", 1), nil, "field data"},
		{"short deadline", strings.Replace(goodConfig, "48h", "1s", 1), nil, "field delivery_deadline"},
		{"deadline past the envelope lifetime", strings.Replace(goodConfig, "48h", "2400h", 1), nil, "field delivery_deadline"},
		{"bad duration variable", goodConfig, map[string]string{"RUJUKAN_CLOCK_SKEW": "soon"}, "RUJUKAN_CLOCK_SKEW"},
		{"bad issuers variable", goodConfig, map[string]string{"RUJUKAN_ISSUERS": "nojwks"}, "RUJUKAN_ISSUERS"},
		{"huge max body", goodConfig, map[string]string{"RUJUKAN_HTTP_MAX_BODY": "99999999"}, "field http.max_body"},
		{"too large", strings.Repeat("#", maxConfigSize+1), nil, "larger"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml), env(tc.env))
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("got %v, want an ErrConfig naming %q", err, tc.field)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("agency: x\nhttp: {listen: ':1'}\n"))
	f.Add([]byte("issuers: [{issuer: a, jwks: b}]\ndelivery_deadline: 1h\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		cfg, err := ParseConfig(raw, nil)
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("accepted a config that does not validate: %v", verr)
			}
		} else if !errors.Is(err, ErrConfig) {
			t.Fatalf("error without ErrConfig: %v", err)
		}
	})
}

// broker.url takes one URL or the comma-separated URLs of a cluster's
// nodes; every entry is checked and a bad one is named.
func TestBrokerURLs(t *testing.T) {
	withURL := func(u string) string { return strings.Replace(goodConfig, "tls://broker:4222", u, 1) }
	for _, good := range []string{
		"tls://broker:4222",
		"tls://broker1:4222,tls://broker2:4222,tls://broker3:4222",
		"nats://127.0.0.1:4222, nats://[::1]:4223",
		"tls://broker1:4222/",
	} {
		if _, err := ParseConfig([]byte(withURL(good)), nil); err != nil {
			t.Errorf("%q refused: %v", good, err)
		}
	}
	cfg, err := ParseConfig([]byte(goodConfig), env(map[string]string{"RUJUKAN_BROKER_URL": "tls://b1:4222,tls://b2:4222"}))
	if err != nil || cfg.Broker.URL != "tls://b1:4222,tls://b2:4222" {
		t.Errorf("RUJUKAN_BROKER_URL with two nodes: %q, %v", cfg.Broker.URL, err)
	}
	cases := []struct{ url, says string }{
		{"http://broker:4222", "not a nats:// or tls:// URL"},
		{"tls://broker1:4222,", `"" is not a nats:// or tls:// URL`},
		{"tls://broker1:4222,,tls://broker2:4222", `"" is not`},
		{"tls://broker1:4222,http://evil:80", `"http://evil:80" is not`},
		{"tls://user:secret@broker1:4222", "holds credentials"},
		{"tls://broker1:4222/x", "path, query or fragment"},
		{"tls://broker1:4222?a=b", "path, query or fragment"},
		{"tls://broker1", "not scheme://host:port"},
		{"tls://:4222", "not scheme://host:port"},
		{"tls://broker1:0", "bad port"},
		{"tls://broker1:99999", "bad port"},
		{"tls://broker1:4222,nats://broker2:4222", "mixes tls:// and nats://"},
		{"tls://broker1:4222,tls://BROKER1:4222", "lists BROKER1:4222 twice"},
		{"tls:broker1:4222", "not a nats:// or tls:// URL"},
		{strings.Repeat("tls://b:1,", MaxBrokerURLs) + "tls://c:1", "at most 16"},
	}
	for _, tc := range cases {
		_, err := ParseConfig([]byte(withURL(tc.url)), nil)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "field broker.url") || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%q: got %v, want an ErrConfig on broker.url saying %q", tc.url, err, tc.says)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: the error shows the password: %v", tc.url, err)
		}
	}
}
