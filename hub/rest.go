package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

const (
	// maxRoomNameRunes is Discord's channel name limit (Channel resource,
	// "name": 1-100 characters).
	maxRoomNameRunes = 100
	// maxUserLimit is Discord's voice channel user_limit maximum
	// (Channel resource, "user_limit": 0 is unlimited, at most 99).
	maxUserLimit = 99
	// roomsTimeout bounds one Rooms call.
	roomsTimeout = 15 * time.Second
	// codeInvalidBody names a body that failed validation.
	codeInvalidBody = "invalid_body"
)

// apiError is the body of every error answer:
// {"error":{"code":...,"field":...,"message":...}}.
type apiError struct {
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, e apiError) {
	writeJSON(w, status, struct {
		Error apiError `json:"error"`
	}{e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"cannot encode the answer"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// requireAuth checks "Authorization: Bearer <token>" (RFC 6750 §2.1)
// before fn runs; a refusal is 401 with WWW-Authenticate (RFC 6750 §3).
func (h *Hub) requireAuth(fn func(http.ResponseWriter, *http.Request, Claims)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="bridge"`)
			writeError(w, http.StatusUnauthorized, apiError{Code: "unauthorized", Message: "send Authorization: Bearer <token>"})
			return
		}
		claims, err := h.opts.Auth.Verify(r.Context(), strings.TrimSpace(token))
		if err != nil {
			// The detail may quote the token: logs only.
			h.log.Debug("token refused", "path", r.URL.Path, "err", err)
			w.Header().Set("WWW-Authenticate", `Bearer realm="bridge", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, apiError{Code: "invalid_token", Message: PublicReason(err)})
			return
		}
		if len(h.allowedGuilds(claims)) == 0 {
			h.log.Info("token not allowed any served guild", "path", r.URL.Path, "user_id", claims.Subject)
			writeError(w, http.StatusForbidden, apiError{Code: "forbidden", Message: h.errNoGuildAllowed()})
			return
		}
		fn(w, r, claims)
	}
}

// errGuildNotAllowed says why a token may not use the bridge's guild.
func errGuildNotAllowed(guildID string) string {
	return fmt.Sprintf("your token does not allow the Discord server %s: its guilds claim must list it", guildID)
}

// decodeBody reads one JSON object of at most MaxBody bytes into v,
// refusing unknown fields. On failure it has answered (400 or 413).
func (h *Hub) decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body := http.MaxBytesReader(w, r.Body, h.opts.MaxBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		// Exactly one value: anything but whitespace after it is an error.
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON object")
			if terr != nil {
				err = terr
			}
		}
	}
	if err == nil {
		return true
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, http.StatusRequestEntityTooLarge, apiError{Code: "body_too_large", Message: fmt.Sprintf("body is larger than %d bytes", tooBig.Limit)})
		return false
	}
	if isTimeout(err) {
		writeBodyTimeout(w)
		return false
	}
	writeError(w, http.StatusBadRequest, bodyError(err))
	return false
}

// isTimeout: the read deadline the server sets on a request's body
// passed.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// writeBodyTimeout answers a body that did not arrive in time; the
// connection closes.
func writeBodyTimeout(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	writeError(w, http.StatusRequestTimeout, apiError{Code: "body_timeout", Message: "the request body did not arrive in time"})
}

// bodyError turns a JSON decoding error into an answer naming the field.
func bodyError(err error) apiError {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return apiError{Code: codeInvalidBody, Message: "body must be a JSON object"}
		}
		return apiError{Code: codeInvalidBody, Field: field, Message: fmt.Sprintf("%s must be %s, not %s", field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)}
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		return apiError{Code: codeInvalidBody, Message: "body is not valid JSON: " + err.Error()}
	case errors.Is(err, io.EOF):
		return apiError{Code: codeInvalidBody, Message: "body is empty; send a JSON object"}
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		f, _ = strconv.Unquote(f)
		return apiError{Code: codeInvalidBody, Field: f, Message: fmt.Sprintf("unknown field %q", f)}
	}
	return apiError{Code: codeInvalidBody, Message: "body is not valid JSON: " + err.Error()}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int", "int64":
		return "an integer"
	case "struct":
		return "an object"
	}
	return "a " + goKind
}

// createRoomRequest is the body of POST /api/create-room.
type createRoomRequest struct {
	Name      *string `json:"name"`
	UserLimit *int    `json:"userLimit"`
	// GuildID picks the guild; it may be left out when the token allows
	// one served guild.
	GuildID *string `json:"guildId"`
}

// guildFor picks the guild a request names (guildId "" or absent: the
// one guild the token allows), or says why it cannot: 400 for a guild
// left out among several or one the bridge does not serve, 403 for one
// the token does not allow.
func (h *Hub) guildFor(claims Claims, requested string) (string, int, *apiError) {
	allowed := h.allowedGuilds(claims)
	if requested == "" {
		if len(allowed) == 1 {
			return allowed[0], 0, nil
		}
		return "", http.StatusBadRequest, &apiError{Code: codeInvalidBody, Field: "guildId",
			Message: "guildId is required: your token allows several Discord servers (" + strings.Join(allowed, ", ") + ")"}
	}
	switch {
	case !slices.Contains(h.opts.Guilds, requested):
		return "", http.StatusBadRequest, &apiError{Code: codeInvalidBody, Field: "guildId",
			Message: "guildId " + requested + " is not a Discord server this bridge serves (" + strings.Join(h.opts.Guilds, ", ") + ")"}
	case !slices.Contains(allowed, requested):
		return "", http.StatusForbidden, &apiError{Code: "forbidden", Message: errGuildNotAllowed(requested)}
	}
	return requested, 0, nil
}

// validate trims the name and checks both fields against Discord's limits.
func (req createRoomRequest) validate() (name string, userLimit int, e *apiError) {
	bad := func(field, msg string) (string, int, *apiError) {
		return "", 0, &apiError{Code: codeInvalidBody, Field: field, Message: msg}
	}
	if req.Name == nil {
		return bad("name", "name is required")
	}
	name = strings.TrimSpace(*req.Name)
	switch {
	case name == "":
		return bad("name", "name must not be empty")
	case !utf8.ValidString(name):
		return bad("name", "name must be valid UTF-8")
	case utf8.RuneCountInString(name) > maxRoomNameRunes:
		return bad("name", fmt.Sprintf("name must be at most %d characters", maxRoomNameRunes))
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return bad("name", "name must not contain control characters")
	}
	if req.UserLimit != nil {
		userLimit = *req.UserLimit
		if userLimit < 0 || userLimit > maxUserLimit {
			return bad("userLimit", fmt.Sprintf("userLimit must be an integer from 0 (no limit) to %d", maxUserLimit))
		}
	}
	return name, userLimit, nil
}

func (h *Hub) serveCreateRoom(w http.ResponseWriter, r *http.Request, claims Claims) {
	var req createRoomRequest
	if !h.decodeBody(w, r, &req) {
		return
	}
	name, limit, verr := req.validate()
	if verr != nil {
		writeError(w, http.StatusBadRequest, *verr)
		return
	}
	requested := ""
	if req.GuildID != nil {
		requested = *req.GuildID
	}
	guildID, status, gerr := h.guildFor(claims, requested)
	if gerr != nil {
		writeError(w, status, *gerr)
		return
	}
	at := h.now()
	ok, retry := h.access.reserveRoom(claims.Subject, h.opts.RoomsPerHour, at)
	if !ok {
		secs := int((retry + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeError(w, http.StatusTooManyRequests, apiError{Code: "room_limit",
			Message: fmt.Sprintf("you may create at most %d rooms per hour; retry in %d s", h.opts.RoomsPerHour, secs)})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), roomsTimeout)
	defer cancel()
	room, err := h.opts.Rooms.CreateRoom(ctx, guildID, name, limit)
	if err != nil {
		h.access.unreserveRoom(claims.Subject, at)
		h.roomsError(w, "create room", claims, err)
		return
	}
	h.access.setCreator(room.ChannelID, claims.Subject)
	h.log.Info("room created", "channel_id", room.ChannelID, "name", room.Name, "user_id", claims.Subject)
	room.Members, room.Participants = nil, nil
	room.CanEnd = true
	writeJSON(w, http.StatusCreated, room)
}

// mayEnd: a room's creator, or an admin.
func (h *Hub) mayEnd(claims Claims, channelID string) bool {
	c := h.access.creator(channelID)
	return (c != "" && c == claims.Subject) || h.IsAdmin(claims)
}

func (h *Hub) serveEndRoom(w http.ResponseWriter, r *http.Request, claims Claims) {
	id := r.PathValue("channelId")
	if !isSnowflake(id) {
		writeError(w, http.StatusBadRequest, apiError{Code: "invalid_path", Field: "channelId", Message: "channelId must be a Discord id (decimal digits)"})
		return
	}
	if g := h.opts.Rooms.RoomGuild(id); g != "" && !slices.Contains(h.allowedGuilds(claims), g) {
		writeError(w, http.StatusForbidden, apiError{Code: "forbidden", Message: errGuildNotAllowed(g)})
		return
	}
	if !h.mayEnd(claims, id) {
		writeError(w, http.StatusForbidden, apiError{Code: "not_room_owner",
			Message: "only the room's creator or a user with the admin role may end it"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), roomsTimeout)
	defer cancel()
	if err := h.opts.Rooms.EndRoom(ctx, id); err != nil {
		h.roomsError(w, "end room", claims, err)
		return
	}
	h.access.roomEnded(id)
	h.log.Info("room ended", "channel_id", id, "user_id", claims.Subject)
	w.WriteHeader(http.StatusNoContent)
}

// roomsResponse is the answer of GET /api/rooms.
type roomsResponse struct {
	Rooms []Room `json:"rooms"`
}

// serveListRooms lists the rooms of the guilds the token allows, or with
// ?guildId= of that one guild (403 when the token does not allow it).
func (h *Hub) serveListRooms(w http.ResponseWriter, r *http.Request, claims Claims) {
	allowed := h.allowedGuilds(claims)
	if g := r.URL.Query().Get("guildId"); g != "" {
		if _, status, gerr := h.guildFor(claims, g); gerr != nil {
			if gerr.Field == "guildId" {
				gerr.Code = "invalid_query"
			}
			writeError(w, status, *gerr)
			return
		}
		allowed = []string{g}
	}
	ctx, cancel := context.WithTimeout(r.Context(), roomsTimeout)
	defer cancel()
	all, err := h.opts.Rooms.ListRooms(ctx)
	if err != nil {
		h.roomsError(w, "list rooms", claims, err)
		return
	}
	rooms := []Room{}
	for _, room := range all {
		if slices.Contains(allowed, room.GuildID) {
			room.CanEnd = h.mayEnd(claims, room.ChannelID)
			rooms = append(rooms, room)
		}
	}
	writeJSON(w, http.StatusOK, roomsResponse{Rooms: rooms})
}

// isSnowflake: Discord ids are decimal uint64 (Reference, "Snowflakes").
func isSnowflake(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

// roomsError maps a Rooms error onto an answer; unknown errors are 502
// with a generic message and the cause goes to the log only.
func (h *Hub) roomsError(w http.ResponseWriter, op string, claims Claims, err error) {
	switch {
	case errors.Is(err, ErrNotRoom):
		writeError(w, http.StatusNotFound, apiError{Code: "not_a_room", Message: "that channel is not a room of this bridge"})
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, apiError{Code: "not_found", Message: "no such channel"})
	case errors.Is(err, ErrForbidden):
		h.log.Warn(op+": bot lacks permission", "err", err)
		writeError(w, http.StatusForbidden, apiError{Code: "bot_forbidden", Message: "the bot lacks permission in Discord: give its role Manage Channels on the room category"})
	case errors.Is(err, ErrRateLimited):
		wait := time.Second
		var ra RetryAfterError
		if errors.As(err, &ra) && ra.RetryAfter() > 0 {
			wait = ra.RetryAfter()
		}
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeError(w, http.StatusTooManyRequests, apiError{Code: "rate_limited", Message: fmt.Sprintf("Discord is rate limiting the bot; retry in %d s", secs)})
	default:
		h.log.Error(op+" failed", "user_id", claims.Subject, "err", err)
		writeError(w, http.StatusBadGateway, apiError{Code: "upstream_error", Message: "Discord request failed; try again later"})
	}
}
