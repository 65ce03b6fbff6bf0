package chaos

import (
	"testing"

	"github.com/rujukan/rujukan/cli/clitest"
)

// TestMain runs the test binary as the rujukan program when asked
// (clitest.Env): the broker and gateways of the test are such processes.
func TestMain(m *testing.M) { clitest.Main(m) }
