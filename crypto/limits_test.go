package crypto

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
)

func TestLimitsDefaultsAndOverrides(t *testing.T) {
	n := MustNet(t)
	if got := n.dir.LimitsOf("police"); got != DefaultLimits() {
		t.Fatalf("a directory without limits: police gets %+v, want the defaults %+v", got, DefaultLimits())
	}
	d := n.dir.clone()
	d.Version++
	d.Limits = &Limits{InboxMaxBytes: 512 << 20, MaxConnections: 4}
	police, _ := d.Agency("police")
	police.Limits = &Limits{InboxMaxBytes: 2 << 30, SenderMaxMessages: 500, FilesMaxBytes: 8 << 30, FilesSenderMaxBytes: 1 << 30}
	n.resign(t, d)

	got := n.dir.LimitsOf("police")
	want := DefaultLimits()
	want.InboxMaxBytes, want.MaxConnections, want.SenderMaxMessages = 2<<30, 4, 500
	want.FilesMaxBytes, want.FilesSenderMaxBytes = 8<<30, 1<<30
	if got != want {
		t.Fatalf("police limits %+v, want %+v", got, want)
	}
	got = n.dir.LimitsOf("shelter")
	want = DefaultLimits()
	want.InboxMaxBytes, want.MaxConnections = 512<<20, 4
	if got != want {
		t.Fatalf("shelter limits %+v, want the network's %+v", got, want)
	}
	if got := n.dir.LimitsOf("nobody"); got != n.dir.NetworkLimits() {
		t.Fatalf("unknown agency limits %+v, want the network's", got)
	}
}

// TestLimitsSurviveSigning checks the limits travel inside the signature:
// they are part of the signed bytes, and editing them breaks it.
func TestLimitsSurviveSigning(t *testing.T) {
	n := MustNet(t)
	d := n.dir.clone()
	d.Limits = &Limits{SenderMaxMessages: 1234}
	signed, err := SignDirectory(d, n.authority)
	if err != nil {
		t.Fatal(err)
	}
	pub := n.authority.Public().(ed25519.PublicKey)
	back, err := ParseDirectory(signed, pub)
	if err != nil {
		t.Fatal(err)
	}
	if back.NetworkLimits().SenderMaxMessages != 1234 {
		t.Fatalf("limits after a round trip: %+v", back.NetworkLimits())
	}
	edited := bytes.Replace(signed, []byte(`1234`), []byte(`9999`), 1)
	if _, err := ParseDirectory(edited, pub); !errors.Is(err, ErrDirectorySignature) {
		t.Fatalf("edited limits: error %v, want %v", err, ErrDirectorySignature)
	}
}

func TestLimitsRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		network *Limits
		police  *Limits
		want    string
	}{
		{"negative inbox bytes", &Limits{InboxMaxBytes: -1}, nil, "limits.inbox_max_bytes is -1: a limit cannot be negative"},
		{"negative agency messages", nil, &Limits{InboxMaxMessages: -5}, "agency police: limits.inbox_max_messages is -5"},
		{"inbox smaller than one envelope", &Limits{InboxMaxBytes: 1000}, nil, "limits.inbox_max_bytes is 1000: it must be between"},
		{"absurd inbox", &Limits{InboxMaxBytes: 1 << 50}, nil, "inbox_max_bytes"},
		{"absurd connections", nil, &Limits{MaxConnections: 1 << 40}, "max_connections"},
		{"negative subscriptions", &Limits{MaxSubscriptions: -1}, nil, "max_subscriptions"},
		{"sender share above the inbox", &Limits{InboxMaxBytes: 64 << 20}, nil, "sender_max_bytes 268435456 is more than inbox_max_bytes 67108864"},
		{"file queue smaller than a few chunks", &Limits{FilesMaxBytes: FileChunkSize}, nil, "limits.files_max_bytes is 524288: it must be between"},
		{"negative files share", nil, &Limits{FilesSenderMaxBytes: -1}, "agency police: limits.files_sender_max_bytes is -1"},
		{"absurd file queue", &Limits{FilesMaxBytes: 1 << 50}, nil, "files_max_bytes"},
		{"files share above the file queue", &Limits{FilesMaxBytes: 1 << 30}, nil, "files_sender_max_bytes 2147483648 is more than files_max_bytes 1073741824"},
		{"agency sender share above its inbox", nil, &Limits{SenderMaxMessages: 200_000}, "agency police: limits: sender_max_messages 200000 is more than inbox_max_messages 100000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := MustNet(t)
			d := n.dir.clone()
			d.Limits = tc.network
			police, _ := d.Agency("police")
			police.Limits = tc.police
			_, err := SignDirectory(d, n.authority)
			if !errors.Is(err, ErrDirectoryMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %v naming %q", err, ErrDirectoryMalformed, tc.want)
			}
		})
	}
}

// TestLimitsUnknownFieldRefused checks a misspelt limit is an error, not a
// limit silently left at its default.
func TestLimitsUnknownFieldRefused(t *testing.T) {
	n := MustNet(t)
	b := mustJSON(t, n.dir)
	b = bytes.Replace(b, []byte(`"version":`), []byte(`"limits":{"inbox_max_byte":5},"version":`), 1)
	if _, err := ParseDraft(b); !errors.Is(err, ErrDirectoryMalformed) || !strings.Contains(err.Error(), "inbox_max_byte") {
		t.Fatalf("error %v, want a malformed directory naming the field", err)
	}
}

// TestAgencyEntryCannotSetLimits: the public entry an agency hands the
// authority cannot carry limits of its own choosing into the directory.
func TestAgencyEntryCannotSetLimits(t *testing.T) {
	n := MustNet(t)
	a := *n.agency(t, "police")
	a.Limits = &Limits{InboxMaxBytes: 1 << 40, MaxConnections: 10_000}
	if _, err := ParseAgency(mustJSON(t, a)); !errors.Is(err, ErrDirectoryMalformed) || !strings.Contains(err.Error(), "cannot set its own limits") {
		t.Fatalf("entry with limits: %v", err)
	}
	a.Limits = nil
	if _, err := ParseAgency(mustJSON(t, a)); err != nil {
		t.Fatalf("entry without limits: %v", err)
	}
}
