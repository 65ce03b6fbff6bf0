package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/crypto"
)

// provisioned runs `rujukan provision` into a fresh folder with the given
// extra arguments.
func provisioned(t *testing.T, args ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "compose-data")
	var stdout, stderr bytes.Buffer
	err := Main(context.Background(), Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }},
		append([]string{"provision", "--out", out, "--agencies", "iom:iom,shelter:shelter"}, args...))
	if err != nil {
		t.Fatalf("provision: %v\n%s", err, stderr.String())
	}
	return out
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseCert(t *testing.T, raw []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(raw)
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %.60q", raw)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestProvisionGatewayHTTPS: each gateway gets a certificate from the CA in
// OUT/ca.pem for its service name, localhost, 127.0.0.1 and ::1, its key
// 0600, and a gateway.yaml that serves HTTPS with them; a TLS client that
// trusts only OUT/ca.pem reaches a server using them under each name.
func TestProvisionGatewayHTTPS(t *testing.T) {
	out := provisioned(t)
	caPEM := mustRead(t, filepath.Join(out, "ca.pem"))
	if !bytes.Equal(caPEM, mustRead(t, filepath.Join(out, "ca", "ca.pem"))) {
		t.Fatal("OUT/ca.pem is not the CA certificate of OUT/ca/ca.pem")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("OUT/ca.pem holds no certificate")
	}
	for _, id := range []string{"iom", "shelter"} {
		dir := filepath.Join(out, "agencies", id)
		cert := parseCert(t, mustRead(t, filepath.Join(dir, gatewayCertFile)))
		for _, name := range []string{id, "localhost", "127.0.0.1", "::1"} {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
				t.Errorf("%s: certificate does not verify for %s: %v", id, name, err)
			}
		}
		for _, name := range []string{"broker", "dinsos", "example.org"} {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err == nil {
				t.Errorf("%s: certificate verifies for %s too", id, name)
			}
		}
		if cert.IsCA {
			t.Errorf("%s: the gateway certificate is a CA", id)
		}
		fi, err := os.Stat(filepath.Join(dir, gatewayKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: key mode %v, want 0600", id, fi.Mode().Perm())
		}
		// gateway.yaml as the container reads it, its /keys being dir.
		raw := strings.ReplaceAll(string(mustRead(t, filepath.Join(dir, "gateway.yaml"))), "/keys/", dir+"/")
		gc, err := gateway.ParseConfig([]byte(raw), nil)
		if err != nil {
			t.Fatal(err)
		}
		if gc.HTTP.TLSCert != filepath.Join(dir, gatewayCertFile) || gc.HTTP.TLSKey != filepath.Join(dir, gatewayKeyFile) {
			t.Fatalf("%s: gateway.yaml serves http.tls_cert %q, tls_key %q", id, gc.HTTP.TLSCert, gc.HTTP.TLSKey)
		}
		pair, err := tls.LoadX509KeyPair(gc.HTTP.TLSCert, gc.HTTP.TLSKey)
		if err != nil {
			t.Fatal(err)
		}
		serveAndDial(t, pool, pair, id)
	}
}

// serveAndDial serves HTTPS on a random loopback port with pair and
// fetches from it trusting pool only, as 127.0.0.1, as localhost and, with
// the address given, as the service name.
func serveAndDial(t *testing.T, pool *x509.CertPool, pair tls.Certificate, service string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{pair}}))
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	for _, name := range []string{"127.0.0.1", "localhost", service} {
		c := &http.Client{Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: name},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, ln.Addr().String())
			},
		}}
		resp, err := c.Get("https://" + net.JoinHostPort(name, "1") + "/")
		if err != nil {
			t.Errorf("%s as %s (port %d): %v", service, name, port, err)
			continue
		}
		resp.Body.Close()
	}
	// A client that does not trust the CA is refused.
	resp, err := (&http.Client{}).Get("https://" + ln.Addr().String() + "/")
	if err == nil {
		resp.Body.Close()
		t.Errorf("%s: a client without the CA was served", service)
	}
}

// owner returns a file's uid and gid.
func owner(t *testing.T, path string) (int, int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}

// TestProvisionOwners: with --owner for the services and --user-owner for
// the person (here @PATH, the owner of a file as docker-compose.yml passes
// it), the tokens, the CA certificate, the authority and CA keys belong to
// the person, each service's folder and private keys to the service user,
// and every private key and token is 0600.
func TestProvisionOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving files to other users needs root, as the provision container has")
	}
	const svc, person = 65534, 1234
	project := t.TempDir()
	if err := os.Chown(project, person, person+1); err != nil {
		t.Fatal(err)
	}
	out := provisioned(t, "--owner", "65534:65534", "--user-owner", "@"+project)
	want := func(path string, uid, gid int, mode fs.FileMode) {
		t.Helper()
		u, g := owner(t, path)
		fi, _ := os.Lstat(path)
		if u != uid || g != gid || fi.Mode().Perm() != mode {
			t.Errorf("%s: owner %d:%d mode %v, want %d:%d %v", strings.TrimPrefix(path, out), u, g, fi.Mode().Perm(), uid, gid, mode)
		}
	}
	want(out, person, person+1, 0o755)
	want(filepath.Join(out, "ca.pem"), person, person+1, 0o644)
	want(filepath.Join(out, "agencies"), person, person+1, 0o755)
	for _, d := range []string{"tokens", "authority", "ca"} {
		want(filepath.Join(out, d), person, person+1, 0o700)
	}
	for _, f := range []string{"tokens/iom.jwt", "tokens/shelter.jwt", "authority/authority.pem", "ca/ca-key.pem"} {
		want(filepath.Join(out, f), person, person+1, 0o600)
	}
	for _, f := range []string{"authority.pub", "draft.json", "network.json"} {
		want(filepath.Join(out, "authority", f), person, person+1, 0o644)
	}
	want(filepath.Join(out, "broker"), svc, svc, 0o700)
	want(filepath.Join(out, "broker", "server-key.pem"), svc, svc, 0o600)
	want(filepath.Join(out, "broker", "network.json"), svc, svc, 0o644)
	for _, id := range []string{"iom", "shelter"} {
		want(filepath.Join(out, "agencies", id), svc, svc, 0o700)
		for _, f := range []string{gatewayKeyFile, "age.key", "signing.pem", "nats.nk", "jwt-issuer.pem"} {
			want(filepath.Join(out, "agencies", id, f), svc, svc, 0o600)
		}
		want(filepath.Join(out, "agencies", id, gatewayCertFile), svc, svc, 0o644)
	}
	// Nothing else is left with root's owner.
	filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
		if u, _ := owner(t, path); u == 0 {
			t.Errorf("%s is root's", path)
		}
		return nil
	})
}

// TestProvisionAuthorityDraft: the authority's draft and signed copy let
// the network be changed later: a revocation signed from them verifies
// and numbers the version after the one the services hold.
func TestProvisionAuthorityDraft(t *testing.T) {
	out := provisioned(t)
	a := filepath.Join(out, "authority")
	env := Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }}
	for _, args := range [][]string{
		{"directory", "revoke", "--draft", filepath.Join(a, "draft.json"), "--agency", "shelter"},
		{"directory", "sign", "--draft", filepath.Join(a, "draft.json"), "--authority-key", filepath.Join(a, "authority.pem"), "--out", filepath.Join(a, "network.json")},
	} {
		if err := Main(context.Background(), env, args); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	pub, err := crypto.ParseAuthorityKey("@" + filepath.Join(a, "authority.pub"))
	if err != nil {
		t.Fatal(err)
	}
	held, err := crypto.LoadDirectory(filepath.Join(out, "broker", "network.json"), pub)
	if err != nil {
		t.Fatal(err)
	}
	next, err := crypto.LoadDirectory(filepath.Join(a, "network.json"), pub)
	if err != nil {
		t.Fatal(err)
	}
	if next.Version <= held.Version {
		t.Fatalf("the new directory is version %d, the services hold %d", next.Version, held.Version)
	}
	if s, _ := next.Agency("shelter"); s.Status != crypto.StatusRevoked {
		t.Fatalf("shelter is %s in the new directory", s.Status)
	}
}

func TestProvisionOwnerRefused(t *testing.T) {
	for _, args := range [][]string{
		{"--owner", "65534"}, {"--owner", "-1:0"}, {"--owner", "@/"}, {"--user-owner", "a:b"},
		{"--user-owner", "@/no/such/file"},
	} {
		err := Main(context.Background(), Env{Stdout: io.Discard, Stderr: io.Discard, Getenv: func(string) string { return "" }},
			append([]string{"provision", "--out", t.TempDir()}, args...))
		if err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: %v, want an error naming %s", args, err, args[0])
		}
	}
}
