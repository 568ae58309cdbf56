package interop

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a peer's reader goroutine outlives its test.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
