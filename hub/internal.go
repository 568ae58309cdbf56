package hub

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// InternalEvents are the event names POST /api/internal/events accepts.
var internalEvents = map[string]bool{
	"room.created":     true,
	"room.deleted":     true,
	"voice.joined":     true,
	"voice.left":       true,
	"speaking.started": true,
	"speaking.stopped": true,
}

// maxReplayEntries bounds the replay cache; past it (after expiring old
// entries) internal events are refused with 503 until entries expire.
const maxReplayEntries = 100_000

// internalEvent is the body of POST /api/internal/events.
type internalEvent struct {
	Event   string          `json:"event"`
	Payload json.RawMessage `json:"payload"`
}

// parseInternalEvent checks a body: one JSON object with exactly "event"
// (an allowed name) and "payload" (a JSON object).
func parseInternalEvent(body []byte) (internalEvent, error) {
	var ev internalEvent
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		return internalEvent{}, fmt.Errorf("%w: %w", ErrBadEvent, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return internalEvent{}, fmt.Errorf("%w: trailing data after the JSON object", ErrBadEvent)
	}
	if !internalEvents[ev.Event] {
		return internalEvent{}, fmt.Errorf("%w: event %q is not one of room.created, room.deleted, voice.joined, voice.left, speaking.started, speaking.stopped", ErrBadEvent, ev.Event)
	}
	p := bytes.TrimSpace(ev.Payload)
	if len(p) == 0 || p[0] != '{' {
		return internalEvent{}, fmt.Errorf("%w: payload must be a JSON object", ErrBadEvent)
	}
	ev.Payload = p
	return ev, nil
}

// serveInternalEvent answers POST /api/internal/events: a service that
// shares HMACSecret signs "<X-Timestamp>.<body>" with HMAC-SHA256 (RFC
// 2104) into X-Signature (hex). Stale, future, forged or replayed requests
// get 401, bad bodies 400; nothing is published for either.
func (h *Hub) serveInternalEvent(w http.ResponseWriter, r *http.Request) {
	// Until the body is read, an answer also closes the connection: the
	// server would otherwise read the unread body first, at the sender's
	// pace.
	w.Header().Set("Connection", "close")
	unauthorized := func(code, msg string) {
		h.log.Warn("internal event refused", "reason", msg, "remote", r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, apiError{Code: code, Message: msg})
	}
	// Headers first: a request that cannot be authentic is refused
	// before its body is read at all.
	tsHeader := r.Header.Get("X-Timestamp")
	ts, ok := parseUnixSeconds(tsHeader)
	if !ok {
		unauthorized("bad_timestamp", "X-Timestamp must be unix seconds")
		return
	}
	now := h.now()
	window := h.opts.ReplayWindow
	if d := now.Sub(ts); d > window || d < -window {
		unauthorized("stale_timestamp", fmt.Sprintf("X-Timestamp is more than %s from the server's clock", window))
		return
	}
	sig, err := hex.DecodeString(r.Header.Get("X-Signature"))
	if err != nil || len(sig) != sha256.Size {
		unauthorized("bad_signature", "X-Signature must be a hex HMAC-SHA256")
		return
	}
	if r.ContentLength > h.opts.MaxBody {
		writeError(w, http.StatusRequestEntityTooLarge, apiError{Code: "body_too_large", Message: fmt.Sprintf("body is larger than %d bytes", h.opts.MaxBody)})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, apiError{Code: "body_too_large", Message: fmt.Sprintf("body is larger than %d bytes", tooBig.Limit)})
			return
		}
		if isTimeout(err) {
			writeBodyTimeout(w)
			return
		}
		writeError(w, http.StatusBadRequest, apiError{Code: codeInvalidBody, Message: "cannot read body"})
		return
	}
	w.Header().Del("Connection")
	mac := hmac.New(sha256.New, h.opts.HMACSecret)
	mac.Write([]byte(tsHeader))
	mac.Write([]byte{'.'})
	mac.Write(body)
	if !hmac.Equal(mac.Sum(nil), sig) {
		unauthorized("bad_signature", "signature does not match")
		return
	}
	switch h.replay.add([sha256.Size]byte(sig), ts.Add(window), now) {
	case replaySeen:
		unauthorized("replayed", "this signature was already used")
		return
	case replayFull:
		writeError(w, http.StatusServiceUnavailable, apiError{Code: "busy", Message: "too many internal events; retry shortly"})
		return
	}
	ev, err := parseInternalEvent(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, apiError{Code: codeInvalidBody, Message: err.Error()})
		return
	}
	guildID, gerr := h.internalEventGuild(ev.Payload)
	if gerr != nil {
		writeError(w, http.StatusBadRequest, apiError{Code: codeInvalidBody, Field: "payload.guildId", Message: gerr.Error()})
		return
	}
	h.PublishGuild(guildID, ev.Event, ev.Payload)
	w.WriteHeader(http.StatusAccepted)
}

// internalEventGuild is the guild an internal event's payload names
// ("guildId"): it then reaches only sockets allowed that guild. Without
// one the event reaches every socket.
func (h *Hub) internalEventGuild(payload json.RawMessage) (string, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil {
		return "", nil // parseInternalEvent has checked it is an object
	}
	raw, ok := fields["guildId"]
	if !ok {
		return "", nil
	}
	var id string
	if err := json.Unmarshal(raw, &id); err != nil || !slices.Contains(h.opts.Guilds, id) {
		return "", fmt.Errorf("payload.guildId must be one of the Discord servers this bridge serves (%s) as a string", strings.Join(h.opts.Guilds, ", "))
	}
	return id, nil
}

// parseUnixSeconds takes only plain decimal digits, so one instant has
// one spelling.
func parseUnixSeconds(s string) (time.Time, bool) {
	if s == "" || len(s) > 12 {
		return time.Time{}, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return time.Time{}, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

type replayResult int

const (
	replayNew replayResult = iota
	replaySeen
	replayFull
)

// replayCache remembers signatures until their timestamp leaves the
// acceptance window; after that the timestamp check alone refuses them.
type replayCache struct {
	window time.Duration

	mu        sync.Mutex
	seen      map[[sha256.Size]byte]time.Time // signature → forget after
	lastSweep time.Time
}

func newReplayCache(window time.Duration) *replayCache {
	return &replayCache{window: window, seen: make(map[[sha256.Size]byte]time.Time)}
}

func (c *replayCache) add(sig [sha256.Size]byte, until, now time.Time) replayResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp, ok := c.seen[sig]; ok && !now.After(exp) {
		return replaySeen
	}
	if now.Sub(c.lastSweep) >= c.window/4 || len(c.seen) >= maxReplayEntries {
		for k, exp := range c.seen {
			if now.After(exp) {
				delete(c.seen, k)
			}
		}
		c.lastSweep = now
	}
	if len(c.seen) >= maxReplayEntries {
		return replayFull
	}
	c.seen[sig] = until
	return replayNew
}

func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}
