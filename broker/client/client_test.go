package client

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

func TestParseSubject(t *testing.T) {
	cases := []struct {
		name, subject, to, from string
		ok                      bool
	}{
		{"plain", "rujukan.msg.shelter.iom", "shelter", "iom", true},
		{"slugs with dashes", "rujukan.msg.dinsos-ntb.uptd-ppa-1", "dinsos-ntb", "uptd-ppa-1", true},
		{"wrong prefix", "rujukan.rcpt.shelter.iom", "", "", false},
		{"missing sender", "rujukan.msg.shelter", "", "", false},
		{"empty sender", "rujukan.msg.shelter.", "", "", false},
		{"extra token", "rujukan.msg.shelter.iom.x", "", "", false},
		{"wildcard", "rujukan.msg.shelter.*", "", "", false},
		{"upper case", "rujukan.msg.Shelter.iom", "", "", false},
		{"empty", "", "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			to, from, err := ParseSubject(tc.subject)
			if tc.ok != (err == nil) || to != tc.to || from != tc.from {
				t.Fatalf("ParseSubject(%q) = %q, %q, %v", tc.subject, to, from, err)
			}
			if err != nil && !errors.Is(err, ErrBadSubject) {
				t.Fatalf("error %v is not ErrBadSubject", err)
			}
			if err == nil && Subject(to, from) != tc.subject {
				t.Fatalf("Subject does not invert ParseSubject")
			}
		})
	}
}

func FuzzParseSubject(f *testing.F) {
	for _, s := range []string{"rujukan.msg.shelter.iom", "rujukan.msg.a.b.c", "rujukan.msg..", "", "rujukan.msg.x-1.y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		to, from, err := ParseSubject(s)
		if err != nil {
			return
		}
		if !ValidID(to) || !ValidID(from) || Subject(to, from) != s {
			t.Fatalf("accepted %q as %q, %q", s, to, from)
		}
		if strings.ContainsAny(to+from, ".*> \t") {
			t.Fatalf("token with a subject metacharacter: %q %q", to, from)
		}
	})
}

func TestConnectRefusesBadInput(t *testing.T) {
	kp, _ := nkeys.CreateAccount()
	accountSeed, _ := kp.Seed()
	user, _ := nkeys.CreateUser()
	userSeed, _ := user.Seed()
	cases := []struct {
		name string
		id   string
		seed []byte
		is   error
	}{
		{"bad agency id", "IOM.x", userSeed, ErrInvalidAgency},
		{"garbage seed", "iom", []byte("SUnot-a-seed"), nil},
		{"account seed", "iom", accountSeed, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Connect(context.Background(), "nats://127.0.0.1:1", tc.id, tc.seed, NoRetryOnFailedConnect())
			if err == nil {
				t.Fatal("connected")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("error %v is not %v", err, tc.is)
			}
			if strings.Contains(err.Error(), string(tc.seed)) {
				t.Fatal("error message leaks the seed")
			}
		})
	}
}

func TestConnectUnreachable(t *testing.T) {
	user, _ := nkeys.CreateUser()
	seed, _ := user.Seed()
	_, err := Connect(context.Background(), "nats://127.0.0.1:1", "iom", seed, NoRetryOnFailedConnect())
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("want ErrUnavailable, got %v", err)
	}
	// Without NoRetryOnFailedConnect the client keeps trying in the
	// background and reports that it is not connected.
	c, err := Connect(context.Background(), "nats://127.0.0.1:1", "iom", seed)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Connected() {
		t.Fatal("connected to nothing")
	}
	if err := c.Publish(context.Background(), "shelter", "m1", []byte("x")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("publish while disconnected: %v", err)
	}
	if _, err := c.Fetch(context.Background(), 1); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("fetch while disconnected: %v", err)
	}
	if err := c.Publish(context.Background(), "Bad.Id", "m1", nil); !errors.Is(err, ErrInvalidAgency) {
		t.Fatalf("bad recipient: %v", err)
	}
	if err := c.Publish(context.Background(), "shelter", "", nil); !errors.Is(err, ErrInvalidMsgID) {
		t.Fatalf("empty msg id: %v", err)
	}
	if err := c.Publish(context.Background(), "shelter", "m", make([]byte, MaxMessageSize)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize: %v", err)
	}
}
