package cli_test

import (
	"context"
	"os/exec"
	"testing"

	"github.com/rujukan/rujukan/cli"
	"github.com/rujukan/rujukan/cli/clitest"
)

// TestMain runs the test binary as the rujukan program when a command
// starts the program again (the bench's load generator).
func TestMain(m *testing.M) {
	cli.SetSelfCommand(func(ctx context.Context, args ...string) (*exec.Cmd, error) {
		c := clitest.Command(args...)
		cmd := exec.CommandContext(ctx, c.Path, c.Args[1:]...)
		cmd.Env = c.Env
		return cmd, nil
	})
	clitest.Main(m)
}
