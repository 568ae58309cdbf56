package session

import "errors"

// ErrInvalid means an update lacked an identifier State needs (a channel
// or user id); the wrapped text names the missing field. The update is
// ignored.
var ErrInvalid = errors.New("session: invalid update")
