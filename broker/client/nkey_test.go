package client

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/rujukan/rujukan/crypto"
)

func TestLoadNKeySeed(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := crypto.WritePrivateFile(p, []byte(content), true); err != nil {
			t.Fatal(err)
		}
		return p
	}
	user, _ := nkeys.CreateUser()
	userSeed, _ := user.Seed()
	userPub, _ := user.PublicKey()
	account, _ := nkeys.CreateAccount()
	accountSeed, _ := account.Seed()

	t.Run("user seed", func(t *testing.T) {
		seed, err := LoadNKeySeed(write("u.nk", string(userSeed)+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		kp, _ := nkeys.FromSeed(seed)
		if pub, _ := kp.PublicKey(); pub != userPub {
			t.Fatalf("public key %s, want %s", pub, userPub)
		}
	})
	for _, tc := range []struct{ name, content string }{
		{"account seed", string(accountSeed)},
		{"garbage", "SUXXXX"},
		{"public key", userPub},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := write(strings.ReplaceAll(tc.name, " ", "-")+".nk", tc.content)
			if _, err := LoadNKeySeed(p); !errors.Is(err, crypto.ErrKeyMalformed) {
				t.Fatalf("error %v, want ErrKeyMalformed", err)
			}
		})
	}
	t.Run("readable by others", func(t *testing.T) {
		p := write("open.nk", string(userSeed))
		if err := os.Chmod(p, 0o640); err != nil {
			t.Fatal(err)
		}
		_, err := LoadNKeySeed(p)
		if !errors.Is(err, crypto.ErrKeyFilePermissions) || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("error %v, want ErrKeyFilePermissions with the fix", err)
		}
	})
	t.Run("symbolic link", func(t *testing.T) {
		target := write("target.nk", string(userSeed))
		link := filepath.Join(dir, "link.nk")
		if err := os.Symlink(target, link); err != nil {
			t.Skip(err)
		}
		if _, err := LoadNKeySeed(link); err == nil {
			t.Fatal("followed a symbolic link")
		}
	})
}
