package mls

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any test (the davey interop test starts a
// reader goroutine and a node process) leaks a goroutine.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
