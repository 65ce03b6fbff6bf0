// Package clitest lets a test binary run as the rujukan program, so tests
// can start (and SIGKILL) real broker and gateway processes without a
// separate build: TestMain calls Main, and Command starts the binary again
// with the arguments of a rujukan command.
package clitest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"

	"github.com/rujukan/rujukan/cli"
	"github.com/rujukan/rujukan/testport"
)

// Env, when set, makes the test binary run as the rujukan program with the
// JSON-encoded arguments it holds.
const Env = "RUJUKAN_E2E_MAIN"

// Main runs the rujukan program when Env is set, and the tests otherwise.
// It does not return.
func Main(m *testing.M) {
	raw := os.Getenv(Env)
	if raw == "" {
		os.Exit(m.Run())
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		fmt.Fprintln(os.Stderr, "bad", Env, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Main(ctx, cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}, args)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rujukan:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Command is this test binary run as `rujukan args...` (it runs no test).
func Command(args ...string) *exec.Cmd {
	raw, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), Env+"="+string(raw))
	return cmd
}

// FreePort is a TCP port on the loopback address that was free a moment
// ago, for a process the test starts (see testport).
func FreePort(t testing.TB) int {
	t.Helper()
	return testport.Free(t)
}
