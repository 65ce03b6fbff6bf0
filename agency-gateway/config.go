package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	// The time zones travel in the binary: the container image has no
	// zoneinfo of its own.
	_ "time/tzdata"

	"github.com/rujukan/rujukan/crypto"
	"go.yaml.in/yaml/v3"
)

// ErrConfig is wrapped by every configuration error. The message names the
// offending field.
var ErrConfig = errors.New("config")

// Config is everything a gateway needs. Zero values take DefaultConfig's.
type Config struct {
	// Agency is this gateway's agency id in the directory.
	Agency string `yaml:"agency"`
	// Keys is the directory holding age.key, signing.pem and nats.nk.
	Keys string `yaml:"keys"`
	// Directory is the signed network directory file.
	Directory string `yaml:"directory"`
	// Authority is the pinned network authority public key (standard
	// base64), or @path to a file holding it.
	Authority string       `yaml:"authority"`
	Broker    BrokerConfig `yaml:"broker"`
	HTTP      HTTPConfig   `yaml:"http"`
	// Issuers are the trusted token issuers.
	Issuers []IssuerConfig `yaml:"issuers"`
	// TokenAlgorithms is the allowlist of token signing algorithms
	// (EdDSA, ES256, RS256); default EdDSA only.
	TokenAlgorithms []string `yaml:"token_algorithms"`
	// Data is where the gateway keeps its bbolt file.
	Data string `yaml:"data"`
	// DeliveryDeadline is how long an undelivered referral waits before it
	// is reported failed; envelopes expire then too. It should equal the
	// broker's stream MaxAge.
	DeliveryDeadline time.Duration `yaml:"delivery_deadline"`
	// ClockSkew is the allowance for the created/expires window.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// Web configures the staff web app.
	Web WebConfig `yaml:"web"`
	// Metrics configures the Prometheus listener.
	Metrics MetricsConfig `yaml:"metrics"`
	// Audit configures how the gateway treats its audit log.
	Audit AuditConfig `yaml:"audit"`
	// Attachments configures the files sent with messages.
	Attachments AttachmentsConfig `yaml:"attachments"`
}

// MetricsConfig is the Prometheus listener, separate from the API: the
// metrics count traffic per agency, which is not for whoever reaches the
// API. Keep it on a loopback address (or one only the monitoring network
// reaches).
type MetricsConfig struct {
	// Listen is host:port serving GET /metrics only; empty serves no
	// metrics.
	Listen string `yaml:"listen"`
}

// AuditConfig configures the audit log.
type AuditConfig struct {
	// AcceptBreak lets a gateway whose audit log does not verify start
	// anyway: the break is recorded as an audit event, and /readyz and
	// GET /v1/audit/verify report it while it lasts. Without it such a
	// gateway refuses to start.
	AcceptBreak bool `yaml:"accept_break"`
}

// WebConfig configures the web app staff sign in to.
type WebConfig struct {
	// TimeZone is where dates are shown: WIB, WITA, WIT or an IANA name;
	// default WIB (Asia/Jakarta).
	TimeZone string `yaml:"time_zone"`
	// TOTPRoles are the roles whose users must sign in with a second
	// factor (caseworker, consent-recorder, investigator, operator).
	TOTPRoles []string `yaml:"totp_roles"`
}

// Location returns the time zone of TimeZone.
func (w WebConfig) Location() (*time.Location, error) {
	name := w.TimeZone
	switch strings.ToUpper(name) {
	case "", "WIB":
		name = "Asia/Jakarta"
	case "WITA":
		name = "Asia/Makassar"
	case "WIT":
		name = "Asia/Jayapura"
	}
	return time.LoadLocation(name)
}

// BrokerConfig says how to reach the broker.
type BrokerConfig struct {
	// URL is the broker's nats:// or tls:// URL, or the URLs of the nodes
	// of a broker cluster separated by commas: the gateway connects to one
	// of them and, when that node goes away, to another by itself.
	URL string `yaml:"url"`
	// NKeySeed defaults to <keys>/nats.nk.
	NKeySeed string `yaml:"nkey_seed"`
	// CA, Cert and Key configure TLS to the broker.
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// HTTPConfig is the API listener.
type HTTPConfig struct {
	Listen  string `yaml:"listen"`
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// MaxBody is the request body limit in bytes.
	MaxBody int64 `yaml:"max_body"`
}

// IssuerConfig is one trusted token issuer.
type IssuerConfig struct {
	Issuer string `yaml:"issuer"`
	JWKS   string `yaml:"jwks"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Broker:           BrokerConfig{URL: "nats://127.0.0.1:4222"},
		HTTP:             HTTPConfig{Listen: "127.0.0.1:8081", MaxBody: 256 << 10},
		DeliveryDeadline: 30 * 24 * time.Hour,
		ClockSkew:        2 * time.Minute,
	}
}

// LoadConfig reads a YAML config file (unknown fields are errors), applies
// RUJUKAN_* environment overrides, fills defaults and validates.
func LoadConfig(path string, getenv func(string) string) (Config, error) {
	var raw []byte
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return DefaultConfig(), fmt.Errorf("%w: %v", ErrConfig, err)
		}
		defer f.Close()
		if raw, err = io.ReadAll(io.LimitReader(f, maxConfigSize+1)); err != nil {
			return DefaultConfig(), fmt.Errorf("%w: %v", ErrConfig, err)
		}
	}
	cfg, err := ParseConfig(raw, getenv)
	if err != nil && path != "" {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, err
}

const maxConfigSize = 1 << 20

// ParseConfig parses YAML config bytes (unknown fields are errors), applies
// RUJUKAN_* overrides, fills defaults and validates.
func ParseConfig(raw []byte, getenv func(string) string) (Config, error) {
	cfg := DefaultConfig()
	if len(raw) > maxConfigSize {
		return cfg, fmt.Errorf("%w: larger than %d bytes", ErrConfig, maxConfigSize)
	}
	if len(bytes.TrimSpace(raw)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return cfg, fmt.Errorf("%w: %s", ErrConfig, oneLine(err.Error()))
		}
	}
	if err := cfg.applyEnv(getenv); err != nil {
		return cfg, err
	}
	if cfg.Broker.NKeySeed == "" && cfg.Keys != "" {
		cfg.Broker.NKeySeed = filepath.Join(cfg.Keys, "nats.nk")
	}
	return cfg, cfg.Validate()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// applyEnv overrides fields from RUJUKAN_* variables. RUJUKAN_ISSUERS is a
// comma-separated list of issuer=jwks-file pairs.
func (c *Config) applyEnv(getenv func(string) string) error {
	if getenv == nil {
		return nil
	}
	str := map[string]*string{
		"RUJUKAN_AGENCY":           &c.Agency,
		"RUJUKAN_KEYS":             &c.Keys,
		"RUJUKAN_DIRECTORY":        &c.Directory,
		"RUJUKAN_AUTHORITY":        &c.Authority,
		"RUJUKAN_BROKER_URL":       &c.Broker.URL,
		"RUJUKAN_BROKER_NKEY_SEED": &c.Broker.NKeySeed,
		"RUJUKAN_BROKER_CA":        &c.Broker.CA,
		"RUJUKAN_BROKER_CERT":      &c.Broker.Cert,
		"RUJUKAN_BROKER_KEY":       &c.Broker.Key,
		"RUJUKAN_HTTP_LISTEN":      &c.HTTP.Listen,
		"RUJUKAN_HTTP_TLS_CERT":    &c.HTTP.TLSCert,
		"RUJUKAN_HTTP_TLS_KEY":     &c.HTTP.TLSKey,
		"RUJUKAN_DATA":             &c.Data,
		"RUJUKAN_METRICS_LISTEN":   &c.Metrics.Listen,
	}
	for name, p := range str {
		if v := getenv(name); v != "" {
			*p = v
		}
	}
	durs := map[string]*time.Duration{
		"RUJUKAN_DELIVERY_DEADLINE": &c.DeliveryDeadline,
		"RUJUKAN_CLOCK_SKEW":        &c.ClockSkew,
	}
	for name, p := range durs {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("%w: %s: %q is not a duration", ErrConfig, name, v)
			}
			*p = d
		}
	}
	if v := getenv("RUJUKAN_HTTP_MAX_BODY"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: RUJUKAN_HTTP_MAX_BODY: %q is not a number", ErrConfig, v)
		}
		c.HTTP.MaxBody = n
	}
	if v := getenv("RUJUKAN_AUDIT_ACCEPT_BREAK"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%w: RUJUKAN_AUDIT_ACCEPT_BREAK: %q is not true or false", ErrConfig, v)
		}
		c.Audit.AcceptBreak = b
	}
	if v := getenv("RUJUKAN_ISSUERS"); v != "" {
		c.Issuers = nil
		for _, pair := range strings.Split(v, ",") {
			iss, jwks, ok := strings.Cut(pair, "=")
			if !ok {
				return fmt.Errorf("%w: RUJUKAN_ISSUERS: %q is not issuer=jwks-file", ErrConfig, pair)
			}
			c.Issuers = append(c.Issuers, IssuerConfig{Issuer: iss, JWKS: jwks})
		}
	}
	return nil
}

// Validate checks every field and names the first bad one.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: field %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
	}
	if !crypto.ValidSlug(c.Agency) {
		return bad("agency", "%q is not an agency id (lowercase letters, digits and -)", c.Agency)
	}
	if c.Keys == "" {
		return bad("keys", "required: the directory holding this agency's private keys")
	}
	if c.Directory == "" {
		return bad("directory", "required: the signed network directory file")
	}
	if c.Authority == "" {
		return bad("authority", "required: the network authority public key (base64 or @file)")
	}
	if err := checkBrokerURLs(c.Broker.URL); err != nil {
		return bad("broker.url", "%v", err)
	}
	if (c.Broker.Cert == "") != (c.Broker.Key == "") {
		return bad("broker.cert", "broker.cert and broker.key go together")
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
		return bad("http.listen", "%q is not host:port", c.HTTP.Listen)
	}
	if (c.HTTP.TLSCert == "") != (c.HTTP.TLSKey == "") {
		return bad("http.tls_cert", "http.tls_cert and http.tls_key go together")
	}
	if _, err := c.Web.Location(); err != nil {
		return bad("web.time_zone", "%q is not WIB, WITA, WIT or a known time zone", c.Web.TimeZone)
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			return bad("metrics.listen", "%q is not host:port", c.Metrics.Listen)
		}
	}
	if c.HTTP.MaxBody < 1024 || c.HTTP.MaxBody > 1<<20 {
		return bad("http.max_body", "%d is outside 1024..1048576", c.HTTP.MaxBody)
	}
	if len(c.Issuers) == 0 {
		return bad("issuers", "at least one trusted issuer is required")
	}
	for i, is := range c.Issuers {
		if is.Issuer == "" {
			return bad(fmt.Sprintf("issuers[%d].issuer", i), "required")
		}
		if is.JWKS == "" {
			return bad(fmt.Sprintf("issuers[%d].jwks", i), "required: a JWKS file")
		}
	}
	if c.Data == "" {
		return bad("data", "required: the data directory")
	}
	if c.DeliveryDeadline < time.Minute || c.DeliveryDeadline > crypto.MaxLifetime {
		return bad("delivery_deadline", "%s is outside 1m..%s", c.DeliveryDeadline, crypto.MaxLifetime)
	}
	if c.ClockSkew < 0 || c.ClockSkew > 10*time.Minute {
		return bad("clock_skew", "%s is outside 0..10m", c.ClockSkew)
	}
	c.Attachments.defaults()
	return c.Attachments.validate()
}

// MaxBrokerURLs is the most broker URLs broker.url may list.
const MaxBrokerURLs = 16

// checkBrokerURLs checks broker.url: one nats:// or tls:// URL, or several
// separated by commas (the nodes of a cluster), each a bare host:port
// (credentials come from the nkey seed, never from the URL), none twice,
// all of one scheme.
func checkBrokerURLs(list string) error {
	parts := strings.Split(list, ",")
	if len(parts) > MaxBrokerURLs {
		return fmt.Errorf("lists %d URLs, at most %d", len(parts), MaxBrokerURLs)
	}
	seen := map[string]bool{}
	scheme := ""
	for _, p := range parts {
		raw := strings.TrimSpace(p)
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" || u.Opaque != "" {
			return fmt.Errorf("%q is not a nats:// or tls:// URL", raw)
		}
		if u.User != nil {
			return fmt.Errorf("%q holds credentials: the gateway logs in with its nkey seed", u.Redacted())
		}
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("%q has a path, query or fragment: give scheme://host:port", raw)
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil || host == "" {
			return fmt.Errorf("%q is not scheme://host:port", raw)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: bad port", raw)
		}
		if scheme != "" && u.Scheme != scheme {
			return fmt.Errorf("mixes %s:// and %s:// URLs: give every node the same scheme", scheme, u.Scheme)
		}
		scheme = u.Scheme
		if seen[strings.ToLower(u.Host)] {
			return fmt.Errorf("lists %s twice", u.Host)
		}
		seen[strings.ToLower(u.Host)] = true
	}
	return nil
}
