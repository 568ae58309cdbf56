//go:build unix

package hub

import (
	"fmt"
	"syscall"
	"testing"
)

// raiseFDLimit makes sure the process may hold need open files (each
// loopback connection is two when both ends are in one process).
func raiseFDLimit(tb testing.TB, need uint64) {
	tb.Helper()
	if err := setFDLimit(need); err != nil {
		tb.Fatal(err)
	}
}

// setFDLimit raises RLIMIT_NOFILE to need when it is lower. Raising the
// hard limit needs CAP_SYS_RESOURCE; without it the error says what to do.
func setFDLimit(need uint64) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	if rl.Cur >= need {
		return nil
	}
	have := rl.Cur
	rl.Cur = need
	if rl.Max < need {
		rl.Max = need
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("need %d open files, have %d: raise the limit (ulimit -n %d) or run with CAP_SYS_RESOURCE: %w", need, have, need, err)
	}
	return nil
}
