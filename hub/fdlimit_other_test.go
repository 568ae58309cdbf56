//go:build !unix

package hub

import "testing"

// raiseFDLimit is a no-op where file descriptor limits are not rlimits.
func raiseFDLimit(testing.TB, uint64) {}

// setFDLimit is a no-op where file descriptor limits are not rlimits.
func setFDLimit(uint64) error { return nil }
