package e2e

import (
	"testing"

	"github.com/rujukan/rujukan/cli/clitest"
)

// TestMain runs the test binary as the rujukan program when asked
// (clitest.Env), so tests can run (and SIGKILL) real gateway and broker
// processes without a separate build.
func TestMain(m *testing.M) { clitest.Main(m) }
