package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/rujukan/rujukan/cli"
)

// mainEnv, when set, makes the test binary run as the rujukan program with
// the JSON-encoded arguments it holds, so tests can run (and SIGKILL) real
// gateway and broker processes without a separate build.
const mainEnv = "RUJUKAN_E2E_MAIN"

func TestMain(m *testing.M) {
	if raw := os.Getenv(mainEnv); raw != "" {
		var args []string
		if err := json.Unmarshal([]byte(raw), &args); err != nil {
			fmt.Fprintln(os.Stderr, "bad", mainEnv, err)
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
	os.Exit(m.Run())
}
