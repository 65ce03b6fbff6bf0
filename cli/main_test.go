package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
)

// mainEnv, when set, makes the test binary run as the rujukan program with
// the JSON-encoded arguments it holds: commands that start the program
// again (the bench's load generator) start the test binary so.
const mainEnv = "RUJUKAN_CLI_TEST_MAIN"

func TestMain(m *testing.M) {
	if raw := os.Getenv(mainEnv); raw != "" {
		var args []string
		if err := json.Unmarshal([]byte(raw), &args); err != nil {
			fmt.Fprintln(os.Stderr, "bad", mainEnv, err)
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := Main(ctx, Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}, args)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "rujukan:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	selfCommand = func(ctx context.Context, args ...string) (*exec.Cmd, error) {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		raw, err := json.Marshal(args)
		if err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
		cmd.Env = []string{mainEnv + "=" + string(raw)}
		return cmd, nil
	}
	os.Exit(m.Run())
}
