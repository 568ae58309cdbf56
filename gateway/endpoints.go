package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// gatewayBot is GET /gateway/bot (Gateway, Get Gateway Bot).
type gatewayBot struct {
	URL               string `json:"url"`
	Shards            int    `json:"shards"`
	SessionStartLimit struct {
		Total          int   `json:"total"`
		Remaining      int   `json:"remaining"`
		ResetAfter     int64 `json:"reset_after"`
		MaxConcurrency int   `json:"max_concurrency"`
	} `json:"session_start_limit"`
}

// getGatewayBot is GET /gateway/bot. A 401 is fatal (wraps
// ErrFatalClose): retrying a bad token only earns an IP ban.
func getGatewayBot(ctx context.Context, hc *http.Client, apiBase, token string) (gatewayBot, error) {
	rctx, cancel := context.WithTimeout(ctx, restTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, apiBase+"/gateway/bot", nil)
	if err != nil {
		return gatewayBot{}, fmt.Errorf("%w: %v", ErrUpstream, err)
	}
	req.Header.Set("Authorization", "Bot "+token)
	req.Header.Set("User-Agent", userAgent)
	resp, err := hc.Do(req)
	if err != nil {
		return gatewayBot{}, fmt.Errorf("%w: GET /gateway/bot: %v", ErrUpstream, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return gatewayBot{}, fmt.Errorf("%w: GET /gateway/bot: %v", ErrUpstream, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return gatewayBot{}, fmt.Errorf("%w: GET /gateway/bot answered 401: %w", ErrFatalClose, ErrUnauthorized)
	case resp.StatusCode != http.StatusOK:
		return gatewayBot{}, fmt.Errorf("%w: GET /gateway/bot answered %s", ErrUpstream, resp.Status)
	}
	var gb gatewayBot
	if err := json.Unmarshal(body, &gb); err != nil {
		return gatewayBot{}, fmt.Errorf("%w: GET /gateway/bot: %v", ErrUpstream, err)
	}
	if _, err := gatewayURL(gb.URL); err != nil {
		return gatewayBot{}, fmt.Errorf("%w: GET /gateway/bot: %w", ErrUpstream, err)
	}
	return gb, nil
}

// Recommended is what GET /gateway/bot says of a bot's sharding.
type Recommended struct {
	// Shards is the shard count Discord recommends, at least 1.
	Shards int
	// MaxConcurrency is how many shards may identify per 5 s, at least 1.
	MaxConcurrency int
}

// RecommendedShards asks GET /gateway/bot (Gateway, "Get Gateway Bot")
// how many shards the bot of token should run, so that a caller can plan
// one client per shard before connecting. hc nil uses a client with a
// 20 s timeout; apiBase "" is Discord's.
func RecommendedShards(ctx context.Context, hc *http.Client, apiBase, token string) (Recommended, error) {
	if hc == nil {
		hc = &http.Client{Timeout: restTimeout}
	}
	if apiBase == "" {
		apiBase = "https://discord.com/api/v10"
	}
	gb, err := getGatewayBot(ctx, hc, strings.TrimRight(apiBase, "/"), strings.TrimPrefix(strings.TrimSpace(token), "Bot "))
	if err != nil {
		return Recommended{}, err
	}
	return Recommended{Shards: max(1, gb.Shards), MaxConcurrency: max(1, gb.SessionStartLimit.MaxConcurrency)}, nil
}

// fetchGateway asks for the gateway URL and the identify limits. A 401 is
// fatal: retrying a bad token only earns an IP ban.
func (c *Client) fetchGateway(ctx context.Context) (gatewayInfo, error) {
	gb, err := getGatewayBot(ctx, c.opts.HTTPClient, c.opts.APIBase, c.token)
	if err != nil {
		return gatewayInfo{}, err
	}
	info := gatewayInfo{url: gb.URL, identifyInterval: c.opts.IdentifyInterval, shards: max(1, c.opts.Shards),
		maxConcurrency: max(1, gb.SessionStartLimit.MaxConcurrency)}
	if c.opts.Shards == 0 {
		info.shards = max(1, gb.Shards)
	}
	if info.identifyInterval == 0 {
		info.identifyInterval = identifyWindow / time.Duration(max(1, gb.SessionStartLimit.MaxConcurrency))
	}
	if ssl := gb.SessionStartLimit; ssl.Total > 0 && ssl.Remaining == 0 {
		wait := time.Duration(ssl.ResetAfter) * time.Millisecond
		c.log.Warn("daily identify limit used up; waiting for the reset", "wait", wait)
		c.setState(StateReconnecting, fmt.Errorf("gateway: daily identify limit used up, resets in %v", wait))
		if err := sleepCtx(ctx, wait); err != nil {
			return gatewayInfo{}, err
		}
	}
	return info, nil
}

// gatewayURL adds the version and encoding to a gateway URL (Gateway,
// Connecting); a Resume uses the same parameters as the first connection.
func gatewayURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return "", fmt.Errorf("%w: gateway URL %q is not a ws:// or wss:// URL", ErrBadPayload, raw)
	}
	q := u.Query()
	q.Set("v", "10")
	q.Set("encoding", "json")
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func redactQuery(s string) string {
	if i := strings.IndexByte(s, '?'); i >= 0 {
		return s[:i]
	}
	return s
}

func parseAPIBase(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: APIBase %q must be an http(s) URL such as https://discord.com/api/v10", ErrOptions, raw)
	}
	return u, nil
}

// ShardOf is the shard that carries a guild's events among shards:
// (guild_id >> 22) % shards (Gateway, "Sharding"). A malformed id or a
// count below 2 gives shard 0.
func ShardOf(guildID string, shards int) int {
	id, err := strconv.ParseUint(guildID, 10, 64)
	if err != nil || shards < 2 {
		return 0
	}
	return int((id >> 22) % uint64(shards))
}
