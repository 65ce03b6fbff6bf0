package crypto

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"
)

// A server certificate from the CA is accepted by a client that trusts
// only the CA, for the issued name, and refused for another name.
func TestCAIssuesServerCertificates(t *testing.T) {
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue("broker", []string{"broker", "127.0.0.1"}, false, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	for _, tc := range []struct {
		name, server string
		ok           bool
	}{{"issued name", "broker", true}, {"other name", "other", false}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(),
				&tls.Config{RootCAs: pool, ServerName: tc.server})
			if (err == nil) != tc.ok {
				t.Fatalf("dial as %s: %v", tc.server, err)
			}
			if c != nil {
				c.Close()
			}
		})
	}
	if _, _, err := ca.Issue("x", nil, false, time.Hour); err == nil {
		t.Error("a server certificate without hosts was issued")
	}
}
