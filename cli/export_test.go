package cli

import (
	"context"
	"os/exec"
)

// SetSelfCommand replaces how the program starts itself again (the test
// binary is not the rujukan program), for the package's TestMain.
func SetSelfCommand(f func(ctx context.Context, args ...string) (*exec.Cmd, error)) { selfCommand = f }
