package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"
)

// Config is everything the binary reads from its environment and flags.
// It is filled only here, in cmd/, and validated once at start.
type Config struct {
	ListenAddr string

	BotToken string
	// BotTokens are every bot of the pool, BotToken first; one voice
	// connection per bot per guild, so each bot is one more room bridged
	// at once.
	BotTokens []string
	// Shards is the bots' shard count; 0 follows Discord.
	Shards int
	// GuildID and CategoryID are the one-guild form (DISCORD_GUILD_ID,
	// ROOM_CATEGORY_ID); GuildID is also the default guild of tokens
	// without a guilds claim.
	GuildID    string
	CategoryID string
	// Guilds are every served guild with its room category: GuildID's
	// first, then DISCORD_GUILDS.
	Guilds  []GuildConfig
	APIBase string

	JWKSURL     string
	JWTIssuer   string
	JWTAudience string
	// GuildsClaim names the claim listing the guilds a token allows.
	GuildsClaim string
	DevAuth     bool

	HMACSecret     string
	AllowedOrigins []string
	OperatorToken  string

	// AdminClaim and AdminRole: a token whose AdminClaim claim is
	// AdminRole, or a list holding it, may end any room.
	AdminClaim, AdminRole string
	// RoomsPerUser rooms a user may create per hour; SocketsPerUser
	// /api/ws connections a user may hold at once.
	RoomsPerUser, SocketsPerUser int
	// MaxConnsPerIP and MaxConns cap connections that have not
	// authenticated, from one address and in all.
	MaxConnsPerIP, MaxConns int
	// JWKSTimeout bounds each JWKS fetch; at start the bridge gives up
	// after it.
	JWKSTimeout time.Duration

	LogLevel  string
	LogFormat string

	ICEUDPPort  int
	ICEPublicIP string
	ICEServers  []webrtc.ICEServer
	RoomGrace   time.Duration

	// The browsers' mix toward Discord; Mix false forwards the loudest
	// browser untranscoded.
	Mix            bool
	MixBitrate     int
	MixMaxSpeakers int
	MixJitterMin   time.Duration
	MixJitterMax   time.Duration

	// ICETCPPort is the TCP port of ICE-TCP; -1 is off.
	ICETCPPort int

	// HTTPS: certificate files, or ACME for TLSDomains; RedirectAddr
	// serves plain HTTP (redirects, HTTP-01 challenges) when TLS is on.
	TLSCertFile, TLSKeyFile string
	TLSDomains              []string
	ACMEDirectoryURL        string
	ACMEEmail               string
	ACMECacheDir            string
	ACMECARoots             string
	RedirectAddr            string
	TrustedProxies          []netip.Prefix

	// Embedded TURN server; TURNPort 0 is off.
	TURNPort, TURNTLSPort int
	TURNRelayIP           string
	TURNSecret            string
	TURNCredentialTTL     time.Duration
	TURNUserKbps          int

	// Several instances (scale.go): VoiceCAFile adds voice server roots,
	// RedisURL shares the hub between instances.
	VoiceCAFile, RedisURL, InstanceID, PublicURL string

	// Embedded is true when no bot token is set: the binary runs the
	// Discord emulator in process and connects to it.
	Embedded bool
}

// GuildConfig is one served guild and the category holding its rooms.
type GuildConfig struct {
	ID, CategoryID string
}

// parseGuilds reads DISCORD_GUILDS: guild:category pairs, comma-separated.
func parseGuilds(v string, bad func(v, problem, fix string)) []GuildConfig {
	var out []GuildConfig
	for _, pair := range strings.Split(v, ",") {
		if pair = strings.TrimSpace(pair); pair == "" {
			continue
		}
		g, cat, ok := strings.Cut(pair, ":")
		g, cat = strings.TrimSpace(g), strings.TrimSpace(cat)
		_, gerr := strconv.ParseUint(g, 10, 64)
		_, cerr := strconv.ParseUint(cat, 10, 64)
		if !ok || gerr != nil || cerr != nil {
			bad("DISCORD_GUILDS", fmt.Sprintf("%q is not guild:category (two Discord ids)", pair),
				"list each server as <server id>:<room category id>, comma-separated, e.g. 1111:2222,3333:4444")
			continue
		}
		out = append(out, GuildConfig{ID: g, CategoryID: cat})
	}
	return out
}

// setting describes one configuration variable: its environment name, the
// flag that overrides it, its default and its documentation (the same text
// goes into .env.example).
type setting struct {
	env, def, help string
}

var settings = []setting{
	{"LISTEN_ADDR", ":8080", "HTTP listen address (web UI, REST API, /api/ws)"},
	{"DISCORD_BOT_TOKEN", "", "bot token; empty (and no DISCORD_BOT_TOKENS) runs the embedded Discord emulator with dev auth"},
	{"DISCORD_BOT_TOKENS", "", "comma-separated tokens of further bots (each its own Discord application), one more room bridged at once per bot"},
	{"DISCORD_SHARDS", "", "how many shards the bots' guilds are split into (a bot in many guilds must shard); empty follows GET /gateway/bot and close 4011"},
	{"DISCORD_BOT_TOKENS_FILE", "", "file of bot tokens, one a line or comma-separated, added to DISCORD_BOT_TOKENS (for secrets mounted as files)"},
	{"DISCORD_GUILD_ID", "", "id of the Discord server (guild) the bridge serves (and the guild of tokens without a guilds claim); with a token, this or DISCORD_GUILDS is required"},
	{"ROOM_CATEGORY_ID", "", "id of the category under which DISCORD_GUILD_ID's rooms are created; required with DISCORD_GUILD_ID"},
	{"DISCORD_GUILDS", "", "further Discord servers the bridge serves, as guild:category pairs, comma-separated (1111:2222,3333:4444): each with its own room category"},
	{"DISCORD_API_BASE", "https://discord.com/api/v10", "Discord REST base URL"},
	{"JWKS_URL", "", "JWKS URL of the identity provider whose JWTs the API accepts; required with a token unless DEV_AUTH=1"},
	{"JWT_ISSUER", "", "expected iss claim; required with JWKS_URL"},
	{"JWT_AUDIENCE", "", "expected aud claim; required with JWKS_URL"},
	{"JWT_GUILDS_CLAIM", "guilds", "claim listing the Discord guild ids (strings) a token allows; a token without it may use DISCORD_GUILD_ID"},
	{"JWKS_TIMEOUT", "10s", "how long one JWKS fetch may take; at start the bridge fails after it when the JWKS does not answer"},
	{"DEV_AUTH", "", "1 turns on dev auth (self-issued tokens) even with a bot token; never in production"},
	{"HUB_HMAC_SECRET", "", "secret for POST /api/internal/events signatures (at least 32 bytes); empty disables the endpoint"},
	{"ALLOWED_ORIGINS", "", "comma-separated origins allowed to open /api/ws; empty allows same-origin only"},
	{"OPERATOR_TOKEN", "", "bearer token (at least 32 bytes) that shows operators the parts' status and the process's memory on GET /readyz; empty shows only ready or not and why"},
	{"ADMIN_CLAIM", "roles", "JWT claim that carries a user's roles (a string or a list of strings)"},
	{"ADMIN_ROLE", "admin", "role in ADMIN_CLAIM that may end any room (others may end only the rooms they created)"},
	{"ROOMS_PER_USER", "10", "rooms one user may create per hour; beyond it POST /api/create-room answers 429"},
	{"SOCKETS_PER_USER", "8", "/api/ws connections one user may hold at once; beyond it the auth is refused with 4429"},
	{"MAX_CONNS_PER_IP", "64", "connections one address may hold before it authenticates (behind a reverse proxy, all come from the proxy: raise it)"},
	{"MAX_CONNS", "1024", "connections all addresses together may hold before they authenticate"},
	{"LOG_LEVEL", "info", "debug, info, warn or error"},
	{"LOG_FORMAT", "text", "text or json"},
	{"ICE_UDP_PORT", "8443", "the one UDP port all WebRTC peers use"},
	{"ICE_PUBLIC_IP", "", "public IP to advertise when the bridge sits behind a 1:1 NAT (docker run -p)"},
	{"ICE_SERVERS", "", "comma-separated STUN/TURN URLs handed to browsers, e.g. turn:user:pass@turn.example.com:3478"},
	{"ROOM_GRACE_PERIOD", "30s", "how long the bot stays in a voice channel after the last browser left"},
	{"ICE_TCP_PORT", "8443", "TCP port for WebRTC media from networks that block UDP (ICE-TCP), offered alongside ICE_UDP_PORT; 0 picks a free port, off disables"},
	{"TLS_CERT_FILE", "", "PEM certificate (with chain) for HTTPS on LISTEN_ADDR; reloaded when the file changes"},
	{"TLS_KEY_FILE", "", "PEM private key of TLS_CERT_FILE"},
	{"TLS_DOMAIN", "", "comma-separated public hostnames to get HTTPS certificates for from an ACME CA (Let's Encrypt by default); needs HTTP_REDIRECT_ADDR or LISTEN_ADDR reachable on port 80 or 443"},
	{"ACME_DIRECTORY_URL", "https://acme-v02.api.letsencrypt.org/directory", "ACME directory of the CA that issues TLS_DOMAIN certificates"},
	{"ACME_EMAIL", "", "contact address given to the ACME CA (expiry notices)"},
	{"ACME_CACHE_DIR", "acme-cache", "directory where ACME account keys and certificates are kept across restarts"},
	{"ACME_CA_ROOTS", "", "PEM file of CA roots to trust for ACME_DIRECTORY_URL (a private CA); empty uses the system roots"},
	{"HTTP_REDIRECT_ADDR", ":80", "with TLS on: plain-HTTP address that answers ACME HTTP-01 challenges and redirects the rest to HTTPS; off disables"},
	{"TRUSTED_PROXIES", "", "comma-separated IPs or CIDRs of reverse proxies whose X-Forwarded-For, -Proto and -Host are believed"},
	{"TURN_PORT", "", "port (UDP and TCP) of the embedded TURN server for networks that allow neither media port; empty keeps it off"},
	{"TURN_TLS_PORT", "", "port of TURN over TLS (turns:) with the HTTPS certificate, e.g. 5349; needs TLS_CERT_FILE or TLS_DOMAIN"},
	{"TURN_RELAY_IP", "", "address the embedded TURN server relays from and browsers reach it at; default ICE_PUBLIC_IP"},
	{"TURN_SECRET", "", "shared secret of the TURN REST credentials (at least 32 bytes); empty makes a random one at each start"},
	{"TURN_CREDENTIAL_TTL", "6h", "how long the TURN credentials handed to a browser stay valid"},
	{"TURN_USER_KBPS", "5000", "relay bandwidth of each user through the embedded TURN server, in kbit/s each way"},
	{"MIX", "on", "on mixes every browser speaking into the one stream Discord hears (decoded, mixed, encoded by the bridge); off forwards only the loudest browser, untranscoded"},
	{"MIX_BITRATE", "64000", "bitrate of the mix toward Discord, in bit/s (6000 to 510000)"},
	{"MIX_MAX_SPEAKERS", "8", "how many browsers are mixed at once, loudest first"},
	{"MIX_JITTER_MIN", "20ms", "least delay of each browser's jitter buffer in the mix, rounded up to 20 ms frames"},
	{"MIX_JITTER_MAX", "200ms", "most delay of each browser's jitter buffer in the mix; 1s at most"},
	{"VOICE_CA_FILE", "", "PEM certificates to trust for Discord's voice servers besides the system roots (the standalone emulator's, which go run ./cmd/emulator writes)"},
	{"REDIS_URL", "", "redis:// or rediss:// URL of the Redis that several bridge instances share; empty runs one instance with nothing to install"},
	{"INSTANCE_ID", "", "this instance's name among the instances sharing REDIS_URL; default the host name and port"},
	{"PUBLIC_URL", "", "URL browsers reach this instance at, announced to the other instances; default the listen address"},
}

// ConfigError names the variable at fault, what is wrong and how to fix it.
type ConfigError struct {
	Var, Problem, Fix string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("config: %s: %s; %s", e.Var, e.Problem, e.Fix)
}

// loadConfig reads the environment through getenv, lets flags in args
// override it, and validates the result.
func loadConfig(args []string, getenv func(string) string) (*Config, error) {
	fs := flag.NewFlagSet("bridge", flag.ContinueOnError)
	fs.SetOutput(new(strings.Builder))
	values := make(map[string]*string, len(settings))
	for _, s := range settings {
		v := getenv(s.env)
		if v == "" {
			v = s.def
		}
		values[s.env] = fs.String(flagName(s.env), v, s.help+" (env "+s.env+")")
	}
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("config: %w; run with -h for the list of flags", err)
	}
	get := func(name string) string { return strings.TrimSpace(*values[name]) }

	c := &Config{
		ListenAddr:    get("LISTEN_ADDR"),
		BotToken:      get("DISCORD_BOT_TOKEN"),
		GuildID:       get("DISCORD_GUILD_ID"),
		CategoryID:    get("ROOM_CATEGORY_ID"),
		APIBase:       get("DISCORD_API_BASE"),
		JWKSURL:       get("JWKS_URL"),
		JWTIssuer:     get("JWT_ISSUER"),
		JWTAudience:   get("JWT_AUDIENCE"),
		GuildsClaim:   get("JWT_GUILDS_CLAIM"),
		HMACSecret:    *values["HUB_HMAC_SECRET"],
		OperatorToken: get("OPERATOR_TOKEN"),
		AdminClaim:    get("ADMIN_CLAIM"),
		AdminRole:     get("ADMIN_ROLE"),
		LogLevel:      strings.ToLower(get("LOG_LEVEL")),
		LogFormat:     strings.ToLower(get("LOG_FORMAT")),
		ICEPublicIP:   get("ICE_PUBLIC_IP"),
	}
	var errs []error
	bad := func(v, problem, fix string) { errs = append(errs, &ConfigError{v, problem, fix}) }
	c.BotTokens = botTokens(c.BotToken, get("DISCORD_BOT_TOKENS"), get("DISCORD_BOT_TOKENS_FILE"), bad)
	if c.BotToken == "" && len(c.BotTokens) > 0 {
		c.BotToken = c.BotTokens[0]
	}
	c.Embedded = c.BotToken == ""
	c.Guilds = parseGuilds(get("DISCORD_GUILDS"), bad)
	if v := get("DISCORD_SHARDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			bad("DISCORD_SHARDS", fmt.Sprintf("%q is not a positive number", v), "give GET /gateway/bot's shards, or leave it empty to follow Discord")
		}
		c.Shards = n
	}
	for _, o := range strings.Split(get("ALLOWED_ORIGINS"), ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.AllowedOrigins = append(c.AllowedOrigins, o)
		}
	}

	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		bad("LISTEN_ADDR", fmt.Sprintf("%q is not host:port", c.ListenAddr), "use a form like :8080 or 127.0.0.1:8080")
	}
	switch dev := get("DEV_AUTH"); dev {
	case "", "0", "false":
	case "1", "true":
		c.DevAuth = true
	default:
		bad("DEV_AUTH", fmt.Sprintf("%q is not 1 or 0", dev), "set DEV_AUTH=1 to turn dev auth on, or leave it empty")
	}
	if c.Embedded {
		// The embedded default always runs dev auth against its own emulator.
		c.DevAuth = true
	} else {
		for i, t := range c.BotTokens {
			if strings.HasPrefix(strings.ToLower(t), "bot ") {
				bad("DISCORD_BOT_TOKEN", fmt.Sprintf("token %d starts with \"Bot \"", i+1), "give the bare token from the Developer Portal; the bridge adds the prefix")
			}
		}
		checkSnowflake := func(name, val, fix string) {
			if val == "" {
				bad(name, "is required when DISCORD_BOT_TOKEN is set", fix)
			} else if _, err := strconv.ParseUint(val, 10, 64); err != nil {
				bad(name, fmt.Sprintf("%q is not a Discord id (digits only)", val), fix)
			}
		}
		if c.GuildID != "" || c.CategoryID != "" || len(c.Guilds) == 0 {
			checkSnowflake("DISCORD_GUILD_ID", c.GuildID, "enable Developer Mode in Discord, right-click the server, Copy Server ID (or list servers in DISCORD_GUILDS)")
			checkSnowflake("ROOM_CATEGORY_ID", c.CategoryID, "right-click the category that should hold rooms, Copy Channel ID")
			if c.GuildID != "" && c.CategoryID != "" {
				c.Guilds = append([]GuildConfig{{ID: c.GuildID, CategoryID: c.CategoryID}}, c.Guilds...)
			}
		}
		seen := map[string]bool{}
		for _, g := range c.Guilds {
			if seen[g.ID] {
				bad("DISCORD_GUILDS", fmt.Sprintf("server %s is listed twice", g.ID), "list each server once (DISCORD_GUILD_ID counts as listed)")
			}
			seen[g.ID] = true
		}
		if u, err := url.Parse(c.APIBase); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("DISCORD_API_BASE", fmt.Sprintf("%q is not an http(s) URL", c.APIBase), "leave it unset to use https://discord.com/api/v10")
		}
		if c.JWKSURL == "" && !c.DevAuth {
			bad("JWKS_URL", "is required when DISCORD_BOT_TOKEN is set", "set it to your identity provider's JWKS URL (or DEV_AUTH=1 for local trials)")
		}
	}
	if c.JWKSURL != "" {
		if u, err := url.Parse(c.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("JWKS_URL", fmt.Sprintf("%q is not an http(s) URL", c.JWKSURL), "use the full URL, e.g. https://idp.example.com/.well-known/jwks.json")
		}
		if c.JWTIssuer == "" {
			bad("JWT_ISSUER", "is required with JWKS_URL", "set it to the iss claim your identity provider puts in tokens")
		}
		if c.JWTAudience == "" {
			bad("JWT_AUDIENCE", "is required with JWKS_URL", "set it to the aud claim tokens for the bridge carry")
		}
	}
	if c.HMACSecret != "" && len(c.HMACSecret) < 32 {
		bad("HUB_HMAC_SECRET", fmt.Sprintf("is %d bytes, shorter than 32", len(c.HMACSecret)), "generate one with: openssl rand -hex 32")
	}
	if c.OperatorToken != "" && len(c.OperatorToken) < 32 {
		bad("OPERATOR_TOKEN", fmt.Sprintf("is %d bytes, shorter than 32", len(c.OperatorToken)), "generate one with: openssl rand -hex 32")
	}
	if c.AdminClaim == "" {
		bad("ADMIN_CLAIM", "is empty", "leave it unset for the default \"roles\", or name the claim your identity provider puts roles in")
	}
	if c.AdminRole == "" {
		bad("ADMIN_ROLE", "is empty", "leave it unset for the default \"admin\", or name the role that may end any room")
	}
	for _, lim := range []struct {
		name string
		to   *int
	}{{"ROOMS_PER_USER", &c.RoomsPerUser}, {"SOCKETS_PER_USER", &c.SocketsPerUser},
		{"MAX_CONNS_PER_IP", &c.MaxConnsPerIP}, {"MAX_CONNS", &c.MaxConns}} {
		if n, err := strconv.Atoi(get(lim.name)); err != nil || n < 1 {
			bad(lim.name, fmt.Sprintf("%q is not a positive number", get(lim.name)), "use a whole number of at least 1")
		} else {
			*lim.to = n
		}
	}
	for _, o := range c.AllowedOrigins {
		if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" || u.Path != "" {
			bad("ALLOWED_ORIGINS", fmt.Sprintf("%q is not an origin", o), "list origins as scheme://host[:port], comma-separated")
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("LOG_LEVEL", fmt.Sprintf("%q is not a level", c.LogLevel), "use debug, info, warn or error")
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("LOG_FORMAT", fmt.Sprintf("%q is not a format", c.LogFormat), "use text or json")
	}
	if p, err := strconv.Atoi(get("ICE_UDP_PORT")); err != nil || p < 0 || p > 65535 {
		bad("ICE_UDP_PORT", fmt.Sprintf("%q is not a port", get("ICE_UDP_PORT")), "use a number from 1 to 65535 (0 picks a free port)")
	} else {
		c.ICEUDPPort = p
	}
	if c.ICEPublicIP != "" && net.ParseIP(c.ICEPublicIP) == nil {
		bad("ICE_PUBLIC_IP", fmt.Sprintf("%q is not an IP address", c.ICEPublicIP), "give the public IPv4 or IPv6 address browsers reach the bridge at")
	}
	for _, entry := range strings.Split(get("ICE_SERVERS"), ",") {
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		srv, err := parseICEServer(entry)
		if err != nil {
			bad("ICE_SERVERS", err.Error(), "write each server as stun:host:port or turn:user:password@host:port[?transport=udp|tcp]")
			continue
		}
		c.ICEServers = append(c.ICEServers, srv)
	}
	if d, err := time.ParseDuration(get("JWKS_TIMEOUT")); err != nil || d <= 0 {
		bad("JWKS_TIMEOUT", fmt.Sprintf("%q is not a positive duration", get("JWKS_TIMEOUT")), "use a Go duration such as 10s")
	} else {
		c.JWKSTimeout = d
	}
	if d, err := time.ParseDuration(get("ROOM_GRACE_PERIOD")); err != nil || d < 0 {
		bad("ROOM_GRACE_PERIOD", fmt.Sprintf("%q is not a duration", get("ROOM_GRACE_PERIOD")), "use a Go duration such as 30s or 2m")
	} else if d == 0 {
		// media reads a zero grace as its default (30 s): refuse it rather
		// than keep the bot in the channel longer than asked.
		bad("ROOM_GRACE_PERIOD", "0 is not supported (the bot would stay the default 30s)", "use a positive duration such as 1s to leave almost at once, or 30s")
	} else {
		c.RoomGrace = d
	}
	loadMix(c, get, bad)
	loadReach(c, get, bad)
	loadScale(c, get, bad)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// parseICEServer reads one ICE_SERVERS entry: a STUN or TURN URI
// (RFC 7064, RFC 7065) whose TURN credentials may ride in front of the
// host as user:password@, since the URI itself has no place for them.
func parseICEServer(entry string) (webrtc.ICEServer, error) {
	scheme, rest, ok := strings.Cut(entry, ":")
	switch {
	case !ok:
		return webrtc.ICEServer{}, fmt.Errorf("%q has no scheme", entry)
	case scheme != "stun" && scheme != "stuns" && scheme != "turn" && scheme != "turns":
		return webrtc.ICEServer{}, fmt.Errorf("%q: scheme %q is not stun, stuns, turn or turns", entry, scheme)
	}
	var srv webrtc.ICEServer
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		user, pass, ok := strings.Cut(rest[:at], ":")
		if !ok || user == "" || pass == "" {
			return webrtc.ICEServer{}, fmt.Errorf("%q: credentials must be user:password@", scheme+":…")
		}
		if !strings.HasPrefix(scheme, "turn") {
			return webrtc.ICEServer{}, fmt.Errorf("%q: only TURN servers take credentials", scheme+":…")
		}
		srv.Username, srv.Credential, rest = user, pass, rest[at+1:]
	} else if strings.HasPrefix(scheme, "turn") {
		return webrtc.ICEServer{}, fmt.Errorf("%q: a TURN server needs user:password@", entry)
	}
	hostport, _, _ := strings.Cut(rest, "?")
	if hostport == "" {
		return webrtc.ICEServer{}, fmt.Errorf("%q has no host", scheme+":…")
	}
	if _, err := stun.ParseURI(scheme + ":" + rest); err != nil {
		return webrtc.ICEServer{}, fmt.Errorf("%q: %v", scheme+":"+rest, err)
	}
	srv.URLs = []string{scheme + ":" + rest}
	return srv, nil
}

// flagName turns an environment variable name into its flag:
// LISTEN_ADDR becomes -listen-addr.
func flagName(env string) string {
	return strings.ReplaceAll(strings.ToLower(env), "_", "-")
}

// envExample renders .env.example from the settings table, so the file and
// the binary never disagree.
func envExample() string {
	var b strings.Builder
	b.WriteString("# Configuration of the bridge. Every variable can also be given as a flag\n")
	b.WriteString("# (LISTEN_ADDR is -listen-addr). Generated by: go run ./cmd/bridge -print-env-example\n\n")
	for _, s := range settings {
		fmt.Fprintf(&b, "# %s\n%s=%s\n\n", s.help, s.env, s.def)
	}
	return b.String()
}

// botTokens gathers the pool's tokens: DISCORD_BOT_TOKEN first, then
// DISCORD_BOT_TOKENS, then the file's. A token given twice is an error,
// since one bot cannot hold two rooms' voice connections.
func botTokens(single, list, file string, bad func(v, problem, fix string)) []string {
	var out []string
	seen := map[string]bool{}
	add := func(v, t string) {
		if t = strings.TrimSpace(t); t == "" {
			return
		}
		if seen[t] {
			bad(v, fmt.Sprintf("token %d is given twice", len(out)+1), "give each bot's token once; every bot must be its own Discord application")
			return
		}
		seen[t] = true
		out = append(out, t)
	}
	add("DISCORD_BOT_TOKEN", single)
	for _, t := range strings.Split(list, ",") {
		add("DISCORD_BOT_TOKENS", t)
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			bad("DISCORD_BOT_TOKENS_FILE", err.Error(), "name a readable file with one token a line")
			return out
		}
		for _, line := range strings.Split(string(b), "\n") {
			for _, t := range strings.Split(line, ",") {
				add("DISCORD_BOT_TOKENS_FILE", t)
			}
		}
	}
	return out
}

// loadMix reads the mix's settings.
func loadMix(c *Config, get func(string) string, bad func(v, problem, fix string)) {
	switch v := strings.ToLower(get("MIX")); v {
	case "on", "1", "true":
		c.Mix = true
	case "off", "0", "false":
	default:
		bad("MIX", fmt.Sprintf("%q is not on or off", v), "set MIX=on to mix the browsers, MIX=off to forward the loudest")
	}
	if n, err := strconv.Atoi(get("MIX_BITRATE")); err != nil || n < 6000 || n > 510000 {
		bad("MIX_BITRATE", fmt.Sprintf("%q is not a bitrate from 6000 to 510000", get("MIX_BITRATE")), "give bit/s, e.g. 64000")
	} else {
		c.MixBitrate = n
	}
	if n, err := strconv.Atoi(get("MIX_MAX_SPEAKERS")); err != nil || n < 1 {
		bad("MIX_MAX_SPEAKERS", fmt.Sprintf("%q is not a positive number", get("MIX_MAX_SPEAKERS")), "give how many browsers to mix at once, e.g. 8")
	} else {
		c.MixMaxSpeakers = n
	}
	lo, errLo := time.ParseDuration(get("MIX_JITTER_MIN"))
	if errLo != nil || lo < 0 {
		bad("MIX_JITTER_MIN", fmt.Sprintf("%q is not a duration", get("MIX_JITTER_MIN")), "use a Go duration such as 20ms")
	}
	hi, errHi := time.ParseDuration(get("MIX_JITTER_MAX"))
	if errHi != nil || hi <= 0 || hi > time.Second {
		bad("MIX_JITTER_MAX", fmt.Sprintf("%q is not a duration up to 1s", get("MIX_JITTER_MAX")), "use a Go duration such as 200ms")
	}
	if errLo == nil && errHi == nil && lo > hi {
		bad("MIX_JITTER_MIN", fmt.Sprintf("%s is more than MIX_JITTER_MAX %s", lo, hi), "make the minimum at most the maximum")
	}
	c.MixJitterMin, c.MixJitterMax = lo, hi
}
