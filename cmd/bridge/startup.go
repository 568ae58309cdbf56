package main

import (
	"fmt"
	"strings"
)

// StartError is a start-up failure after the configuration was valid:
// what failed (the variable or part), the cause, and what to do. Its text
// is one line, like a ConfigError's.
type StartError struct {
	What string
	Err  error
	Fix  string
}

func (e *StartError) Error() string {
	cause := strings.Join(strings.Fields(e.Err.Error()), " ") // one line, whatever the cause says
	return fmt.Sprintf("start: %s: %s; %s", e.What, cause, e.Fix)
}

func (e *StartError) Unwrap() error { return e.Err }
