package broker

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/rujukan/rujukan/broker/client"
	"github.com/rujukan/rujukan/crypto"
)

// testAgency is an agency with real keys.
type testAgency struct {
	ID   string
	Seed []byte // nkey user seed
	Pub  string // nkey user public key
	net  *testNet
}

// testNet is a network directory under a real authority key.
type testNet struct {
	AuthPub  ed25519.PublicKey
	AuthPriv ed25519.PrivateKey
	Dir      crypto.Directory
	Agencies map[string]*testAgency
}

// agencyKeys returns a fresh age recipient and signing key: the broker
// never uses them, but the directory requires every key to belong to one
// agency.
func agencyKeys(t testing.TB) (string, string) {
	id, err := crypto.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return id.Recipient(), base64.StdEncoding.EncodeToString(pub)
}

func newTestNet(t testing.TB, ids ...string) *testNet {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNet{AuthPub: pub, AuthPriv: priv, Agencies: map[string]*testAgency{}}
	n.Dir = crypto.Directory{Version: 1, Network: "test", IssuedAt: time.Now().UTC().Truncate(time.Second)}
	for _, id := range ids {
		n.add(t, id)
	}
	return n
}

// add appends a new active agency with fresh keys.
func (n *testNet) add(t testing.TB, id string) *testAgency {
	t.Helper()
	rec, sig := agencyKeys(t)
	nk, err := NewNATSKey()
	if err != nil {
		t.Fatal(err)
	}
	a := &testAgency{ID: id, Seed: nk.Seed, Pub: nk.Public, net: n}
	n.Agencies[id] = a
	n.Dir.Agencies = append(n.Dir.Agencies, crypto.Agency{
		ID: id, Kind: "shelter", Name: "Agency " + id, Status: crypto.StatusActive,
		Keys: []crypto.PublicKey{
			crypto.NewPublicKey(crypto.UseEncrypt, rec),
			crypto.NewPublicKey(crypto.UseSign, sig),
			crypto.NewPublicKey(crypto.UseNATS, nk.Public),
		},
	})
	return a
}

// revoke marks an agency revoked.
func (n *testNet) revoke(id string) {
	for i := range n.Dir.Agencies {
		if n.Dir.Agencies[i].ID == id {
			n.Dir.Agencies[i].Status = crypto.StatusRevoked
		}
	}
}

// sign signs the directory as it is now.
func (n *testNet) sign(t testing.TB) []byte {
	t.Helper()
	b, err := crypto.SignDirectory(&n.Dir, n.AuthPriv)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("RUJUKAN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testConfig returns a config for a single node on a random loopback port.
func (n *testNet) config(t testing.TB) Config {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:-1"
	cfg.DataDir = t.TempDir()
	cfg.Directory = n.sign(t)
	cfg.Authority = n.AuthPub
	cfg.Logger = testLogger(t)
	return cfg
}

// mustStart starts a broker and stops it when the test ends.
func mustStart(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// mustConnect connects a gateway client as agency a.
func mustConnect(t testing.TB, url string, a *testAgency, opts ...client.Option) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, url, a.ID, a.Seed, append([]client.Option{client.NoRetryOnFailedConnect()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if a.net != nil {
		c.SetSenders(a.net.ids())
	}
	return c
}

// ids returns the id of every agency in the directory, as a gateway
// passes them to client.SetSenders.
func (n *testNet) ids() []string {
	var ids []string
	for _, a := range n.Dir.Agencies {
		ids = append(ids, a.ID)
	}
	return ids
}
