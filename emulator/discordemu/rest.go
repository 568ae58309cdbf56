package discordemu

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// JSON error codes (developers/topics/opcodes-and-status-codes.mdx "JSON
// Error Codes").
const (
	codeGeneral            = 0
	codeUnknownChannel     = 10003
	codeUnknownGuild       = 10004
	codeMaxChannels        = 30013
	codeMissingAccess      = 50001
	codeMissingPermissions = 50013
	codeInvalidFormBody    = 50035
	codeInvalidAPIVersion  = 50041
	codeInvalidJSON        = 50109
)

const maxRequestBody = 1 << 20

// apiRequest is one REST request after routing.
type apiRequest struct {
	method string
	params map[string]string
	body   []byte
	// bot is the calling bot; nil on routes without auth.
	bot *botState
}

// apiResponse is a REST answer: status and a JSON-encodable body.
type apiResponse struct {
	status int
	body   any
}

func apiError(status, code int, message string) apiResponse {
	return apiResponse{status: status, body: map[string]any{"message": message, "code": code}}
}

// route is one REST endpoint. Handlers run with Server.mu held.
type route struct {
	method  string
	pattern string
	auth    bool
	// channelBucket routes are limited to Options.ChannelRateLimit per
	// second; others to limitDefault.
	channelBucket bool
	handle        func(s *Server, req *apiRequest) apiResponse
}

// routes are the endpoints the emulator serves, patterns as in Discord's
// docs (developers/events/gateway.mdx "Get Gateway", "Get Gateway Bot";
// developers/resources/user.mdx, guild.mdx, channel.mdx).
var routes = []route{
	{"GET", "/gateway", false, false, (*Server).restGetGateway},
	{"GET", "/gateway/bot", true, false, (*Server).restGetGatewayBot},
	{"GET", "/users/@me", true, false, (*Server).restGetMe},
	{"GET", "/guilds/{guild.id}", true, false, (*Server).restGetGuild},
	{"GET", "/guilds/{guild.id}/channels", true, false, (*Server).restGetGuildChannels},
	{"POST", "/guilds/{guild.id}/channels", true, true, (*Server).restCreateGuildChannel},
	{"GET", "/channels/{channel.id}", true, false, (*Server).restGetChannel},
	{"DELETE", "/channels/{channel.id}", true, true, (*Server).restDeleteChannel},
}

// match reports whether path fits pattern, and its {params}.
func match(pattern, path string) (map[string]string, bool) {
	ps := strings.Split(strings.Trim(pattern, "/"), "/")
	xs := strings.Split(strings.Trim(path, "/"), "/")
	if len(ps) != len(xs) {
		return nil, false
	}
	params := map[string]string{}
	for i, p := range ps {
		if strings.HasPrefix(p, "{") {
			if xs[i] == "" {
				return nil, false
			}
			params[p] = xs[i]
			continue
		}
		if p != xs[i] {
			return nil, false
		}
	}
	return params, true
}

// majorParam is the top-level resource that splits a route's buckets
// (rate-limits.mdx: guild and channel ids).
func majorParam(params map[string]string) string {
	if id, ok := params["{guild.id}"]; ok {
		return "guild:" + id
	}
	if id, ok := params["{channel.id}"]; ok {
		return "channel:" + id
	}
	return ""
}

// serveAPI answers REST under /api/v9 and /api/v10.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	if err != nil {
		http.Error(w, "reading request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	full := r.URL.Path
	header := http.Header{}
	var resp apiResponse

	s.mu.Lock()
	version, path := splitVersion(full)
	switch {
	case version != "9" && version != "10":
		resp = apiError(http.StatusBadRequest, codeInvalidAPIVersion, "Invalid API version")
		copyHeader(header, s.limiter.peek(now, "unrouted", "", limitDefault))
	case len(body) > maxRequestBody:
		resp = apiError(http.StatusRequestEntityTooLarge, codeGeneral, "413: Request Entity Too Large")
		copyHeader(header, s.limiter.peek(now, "unrouted", "", limitDefault))
	default:
		resp = s.routeLocked(now, r, path, body, header)
	}
	encoded, err := json.Marshal(resp.body)
	if err != nil {
		resp = apiError(http.StatusInternalServerError, codeGeneral, "500: Internal Server Error")
		encoded, _ = json.Marshal(resp.body)
	}
	s.stats.RESTRequests++
	switch resp.status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests:
		s.stats.InvalidRequests++
	}
	s.rest = append(s.rest, RESTCall{Method: r.Method, Path: full, Status: resp.status, Body: body, At: now, Response: encoded})
	s.notifyLocked()
	s.mu.Unlock()

	for k, v := range header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Date", now.UTC().Format(http.TimeFormat))
	w.WriteHeader(resp.status)
	if _, err := w.Write(encoded); err != nil {
		s.log.Debug("REST answer not written", "path", full, "err", err)
	}
}

func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = v
	}
}

// splitVersion splits "/api/v10/users/@me" into "10" and "/users/@me".
func splitVersion(p string) (string, string) {
	rest, ok := strings.CutPrefix(p, "/api/v")
	if !ok {
		return "", p
	}
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return rest, "/"
	}
	return rest[:i], rest[i:]
}

// routeLocked finds the route, checks authorization and rate limits, then
// runs the handler.
func (s *Server) routeLocked(now time.Time, r *http.Request, path string, body []byte, header http.Header) apiResponse {
	var rt *route
	var params map[string]string
	pathMatched := false
	for i := range routes {
		p, ok := match(routes[i].pattern, path)
		if !ok {
			continue
		}
		pathMatched = true
		if routes[i].method == r.Method {
			rt, params = &routes[i], p
			break
		}
	}
	if rt == nil {
		copyHeader(header, s.limiter.peek(now, "unrouted", "", limitDefault))
		if pathMatched {
			return apiError(http.StatusMethodNotAllowed, codeGeneral, "405: Method Not Allowed")
		}
		return apiError(http.StatusNotFound, codeGeneral, "404: Not Found")
	}
	routeKey := rt.method + " " + rt.pattern
	major := majorParam(params)
	lim := limitDefault
	if rt.channelBucket {
		lim = routeLimit{limit: s.opts.ChannelRateLimit, window: time.Second}
	}
	caller := s.botByTokenLocked(strings.TrimPrefix(r.Header.Get("Authorization"), "Bot "))
	if rt.auth && (caller == nil || !strings.HasPrefix(r.Header.Get("Authorization"), "Bot ")) {
		copyHeader(header, s.limiter.peek(now, routeKey, major, lim))
		return apiError(http.StatusUnauthorized, codeGeneral, "401: Unauthorized")
	}
	limiter := s.limiter // the primary bot's, and unauthenticated routes
	if caller != nil && caller.limiter != nil {
		limiter = caller.limiter // each bot its own buckets and global limit
	}
	lr := limiter.take(now, r.Method, path, routeKey, major, lim)
	copyHeader(header, lr.header)
	if !lr.ok {
		s.log.Info("REST rate limited", "method", r.Method, "path", path, "retry_after", lr.retryAfter, "global", lr.global)
		return apiResponse{status: http.StatusTooManyRequests, body: map[string]any{
			"message":     "You are being rate limited.",
			"retry_after": retryAfterSeconds(lr.retryAfter),
			"global":      lr.global,
		}}
	}
	return rt.handle(s, &apiRequest{method: r.Method, params: params, body: body, bot: caller})
}

func (s *Server) restGetGateway(*apiRequest) apiResponse {
	return apiResponse{status: http.StatusOK, body: map[string]any{"url": s.GatewayURL()}}
}

// restGetGatewayBot is Get Gateway Bot with a session start limit of 1000
// identifies a day, the recommended shards (Options.Shards) and
// Options.MaxConcurrency.
func (s *Server) restGetGatewayBot(req *apiRequest) apiResponse {
	remaining := 1000 - s.stats.Identifies
	if remaining < 0 {
		remaining = 0
	}
	return apiResponse{status: http.StatusOK, body: map[string]any{
		"url":    s.GatewayURL(),
		"shards": s.shardsNeededLocked(req.bot),
		"session_start_limit": map[string]any{
			"total":           1000,
			"remaining":       remaining,
			"reset_after":     (24 * time.Hour).Milliseconds(),
			"max_concurrency": s.opts.MaxConcurrency,
		},
	}}
}

func (s *Server) restGetMe(req *apiRequest) apiResponse {
	u := userJSON(s.guild.members[req.bot.userID])
	u["verified"] = true
	u["mfa_enabled"] = false
	u["email"] = nil
	return apiResponse{status: http.StatusOK, body: u}
}

// guildOr404 is the request's guild when the bot is in it: an unknown
// guild is 404 Unknown Guild, one the bot is not in 403 Missing Access.
func (s *Server) guildOr404(req *apiRequest) (*guildState, apiResponse, bool) {
	g := s.guildLocked(req.params["{guild.id}"])
	if g == nil {
		return nil, apiError(http.StatusNotFound, codeUnknownGuild, "Unknown Guild"), false
	}
	if !g.hasBot(req.bot.userID) {
		return nil, apiError(http.StatusForbidden, codeMissingAccess, "Missing Access"), false
	}
	return g, apiResponse{}, true
}

// channelOr404 is the request's channel and its guild, as guildOr404.
func (s *Server) channelOr404(req *apiRequest) (*guildState, *channel, apiResponse, bool) {
	g, c := s.channelGuildLocked(req.params["{channel.id}"])
	if c == nil {
		return nil, nil, apiError(http.StatusNotFound, codeUnknownChannel, "Unknown Channel"), false
	}
	if !g.hasBot(req.bot.userID) {
		return nil, nil, apiError(http.StatusForbidden, codeMissingAccess, "Missing Access"), false
	}
	return g, c, apiResponse{}, true
}

func (s *Server) restGetGuild(req *apiRequest) apiResponse {
	g, resp, ok := s.guildOr404(req)
	if !ok {
		return resp
	}
	return apiResponse{status: http.StatusOK, body: g.guildJSON()}
}

func (s *Server) restGetGuildChannels(req *apiRequest) apiResponse {
	g, resp, ok := s.guildOr404(req)
	if !ok {
		return resp
	}
	out := make([]any, 0, len(g.channelOrder))
	for _, c := range g.orderedChannels() {
		out = append(out, g.channelJSON(c))
	}
	return apiResponse{status: http.StatusOK, body: out}
}

// restCreateGuildChannel is Create Guild Channel (guild.mdx): needs
// MANAGE_CHANNELS, validates the JSON params, fires CHANNEL_CREATE and
// answers 201 with the channel.
func (s *Server) restCreateGuildChannel(req *apiRequest) apiResponse {
	g, resp, ok := s.guildOr404(req)
	if !ok {
		return resp
	}
	if !g.manageChannels {
		return apiError(http.StatusForbidden, codeMissingPermissions, "Missing Permissions")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(req.body, &fields); err != nil || fields == nil {
		return apiError(http.StatusBadRequest, codeInvalidJSON, "The request body contains invalid JSON.")
	}
	spec, ferrs := decodeChannelSpec(fields)
	if len(ferrs) > 0 {
		return formErrorResponse(ferrs)
	}
	c, err := s.createChannelLocked(g, spec)
	var fe *formError
	switch {
	case errors.As(err, &fe):
		return formErrorResponse(fe.fields)
	case errors.Is(err, ErrMaxChannels):
		return apiError(http.StatusBadRequest, codeMaxChannels, "Maximum number of guild channels reached (500)")
	case err != nil:
		return apiError(http.StatusInternalServerError, codeGeneral, "500: Internal Server Error")
	}
	return apiResponse{status: http.StatusCreated, body: g.channelJSON(c)}
}

func (s *Server) restGetChannel(req *apiRequest) apiResponse {
	g, c, resp, ok := s.channelOr404(req)
	if !ok {
		return resp
	}
	return apiResponse{status: http.StatusOK, body: g.channelJSON(c)}
}

// restDeleteChannel is Delete/Close Channel (channel.mdx): needs
// MANAGE_CHANNELS, fires CHANNEL_DELETE and answers 200 with the deleted
// channel.
func (s *Server) restDeleteChannel(req *apiRequest) apiResponse {
	id := req.params["{channel.id}"]
	g, c, resp, ok := s.channelOr404(req)
	if !ok {
		return resp
	}
	if !g.manageChannels {
		return apiError(http.StatusForbidden, codeMissingPermissions, "Missing Permissions")
	}
	payload := g.channelJSON(c)
	if _, err := s.deleteChannelLocked(id); err != nil {
		return apiError(http.StatusNotFound, codeUnknownChannel, "Unknown Channel")
	}
	return apiResponse{status: http.StatusOK, body: payload}
}

// formErrorResponse is the 50035 answer (developers/reference "Error
// Messages"): {"message", "code", "errors": {field: {"_errors": [...]}}}.
func formErrorResponse(ferrs []fieldError) apiResponse {
	errs := map[string]any{}
	for _, fe := range ferrs {
		entry, _ := errs[fe.field].(map[string]any)
		if entry == nil {
			entry = map[string]any{"_errors": []any{}}
			errs[fe.field] = entry
		}
		entry["_errors"] = append(entry["_errors"].([]any), map[string]any{"code": fe.code, "message": fe.message})
	}
	return apiResponse{status: http.StatusBadRequest, body: map[string]any{
		"message": "Invalid Form Body",
		"code":    codeInvalidFormBody,
		"errors":  errs,
	}}
}

// decodeChannelSpec reads Create Guild Channel's JSON params; unknown
// params are ignored as Discord does.
func decodeChannelSpec(fields map[string]json.RawMessage) (channelSpec, []fieldError) {
	var spec channelSpec
	var errs []fieldError
	str := func(name string) *string {
		raw, ok := fields[name]
		if !ok || isNull(raw) {
			return nil
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			errs = append(errs, fieldError{name, "BASE_TYPE_STRING", fmt.Sprintf("Could not interpret %s as string.", raw)})
			return nil
		}
		return &v
	}
	num := func(name string) *int {
		raw, ok := fields[name]
		if !ok || isNull(raw) {
			return nil
		}
		var v int
		if err := json.Unmarshal(raw, &v); err != nil {
			errs = append(errs, fieldError{name, "NUMBER_TYPE_COERCE", fmt.Sprintf("Value %s is not int.", raw)})
			return nil
		}
		return &v
	}
	spec.name = str("name")
	if raw, ok := fields["name"]; !ok || isNull(raw) {
		errs = append(errs, fieldError{"name", "BASE_TYPE_REQUIRED", "This field is required"})
	}
	spec.typ = num("type")
	spec.bitrate = num("bitrate")
	spec.userLimit = num("user_limit")
	spec.position = num("position")
	spec.rateLimitPerUser = num("rate_limit_per_user")
	spec.topic = str("topic")
	if p := str("parent_id"); p != nil {
		if !isSnowflake(*p) {
			errs = append(errs, fieldError{"parent_id", "SNOWFLAKE_TYPE", fmt.Sprintf("Value %q is not snowflake.", *p)})
		} else {
			spec.parentID = p
		}
	}
	if raw, ok := fields["nsfw"]; ok && !isNull(raw) {
		var v bool
		if err := json.Unmarshal(raw, &v); err != nil {
			errs = append(errs, fieldError{"nsfw", "BASE_TYPE_BOOLEAN", "Must be either true or false."})
		} else {
			spec.nsfw = &v
		}
	}
	return spec, errs
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }
