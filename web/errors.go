package web

import "errors"

// Sentinel errors. The handler answers with their text; they are exported
// so that callers serving the UI themselves can recognise them.
var (
	// ErrNotFound reports a path that is not one of the embedded files.
	ErrNotFound = errors.New("web: no such file in the embedded UI")
	// ErrMethodNotAllowed reports a method other than GET or HEAD.
	ErrMethodNotAllowed = errors.New("web: the UI is read-only; use GET or HEAD")
)
