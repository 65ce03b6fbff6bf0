package broker

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rujukan/rujukan/broker/client"
)

// writeCerts writes a CA and a server certificate for 127.0.0.1 into dir.
func writeCerts(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rujukan test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(srvKey)
	ca, cert, key = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	return ca, cert, key
}

func TestTLS(t *testing.T) {
	n := newTestNet(t, "iom", "shelter")
	cfg := n.config(t)
	ca, cert, key := writeCerts(t, t.TempDir())
	cfg.TLSCert, cfg.TLSKey = cert, key
	s := mustStart(t, cfg)
	url := s.ClientURL()

	c := mustConnect(t, url, n.Agencies["iom"], client.WithTLS(ca, "", ""))
	if err := c.Publish(context.Background(), "shelter", "m1", []byte("over TLS")); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Connect(context.Background(), url, "iom", n.Agencies["iom"].Seed, client.NoRetryOnFailedConnect()); err == nil {
		t.Fatal("plaintext client connected to a TLS broker")
	}
	// A client that does not trust the broker's CA refuses it.
	other, _, _ := writeCerts(t, t.TempDir())
	if _, err := client.Connect(context.Background(), url, "iom", n.Agencies["iom"].Seed,
		client.NoRetryOnFailedConnect(), client.WithTLS(other, "", "")); err == nil {
		t.Fatal("client accepted a broker certificate from an untrusted CA")
	}
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func TestInsecurePlaintextWarnsAtEveryStart(t *testing.T) {
	n := newTestNet(t, "iom")
	cfg := n.config(t)
	cfg.Listen = "0.0.0.0:-1"
	if _, err := New(cfg); !errors.Is(err, ErrPlaintext) {
		t.Fatalf("non-loopback plaintext listener: %v", err)
	}
	cfg.InsecurePlaintext = true
	if _, err := New(cfg); err != nil {
		t.Fatalf("--insecure-plaintext given: %v", err)
	}
	cfg.Listen = "127.0.0.1:-1" // tests listen on loopback only
	var logs logBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	for range 2 {
		s := mustStart(t, cfg)
		s.Close()
	}
	if got := strings.Count(logs.b.String(), "WITHOUT TLS"); got != 2 {
		t.Fatalf("%d warnings in 2 starts:\n%s", got, logs.b.String())
	}
}
