package main

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func envFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigEmbeddedDefault(t *testing.T) {
	c, err := loadConfig(nil, envFrom(nil))
	if err != nil {
		t.Fatalf("empty environment must run the embedded default: %v", err)
	}
	if !c.Embedded || !c.DevAuth {
		t.Fatalf("Embedded=%v DevAuth=%v, want both true without a token", c.Embedded, c.DevAuth)
	}
	if c.ListenAddr != ":8080" || c.ICEUDPPort != 8443 || c.RoomGrace != 30*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestConfigFlagOverridesEnv(t *testing.T) {
	c, err := loadConfig([]string{"-listen-addr", "127.0.0.1:9999", "-log-level", "debug"},
		envFrom(map[string]string{"LISTEN_ADDR": ":7000", "LOG_LEVEL": "warn"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenAddr != "127.0.0.1:9999" || c.LogLevel != "debug" {
		t.Fatalf("flags must override env: %+v", c)
	}
}

func TestConfigProductionNeedsAuthAndIDs(t *testing.T) {
	prod := map[string]string{
		"DISCORD_BOT_TOKEN": "abc.def.ghi",
		"DISCORD_GUILD_ID":  "123456789012345678",
		"ROOM_CATEGORY_ID":  "223456789012345678",
		"JWKS_URL":          "https://idp.example.com/jwks.json",
		"JWT_ISSUER":        "https://idp.example.com/",
		"JWT_AUDIENCE":      "bridge",
	}
	c, err := loadConfig(nil, envFrom(prod))
	if err != nil {
		t.Fatalf("complete production config refused: %v", err)
	}
	if c.Embedded || c.DevAuth {
		t.Fatalf("with a token: Embedded=%v DevAuth=%v, want false", c.Embedded, c.DevAuth)
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range prod {
			m[a] = b
		}
		m[k] = v
		return m
	}
	withAll := func(extra map[string]string) map[string]string {
		m := with("LOG_LEVEL", "info")
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	cases := []struct {
		env  map[string]string
		want []string // each must appear in the error
	}{
		{with("DISCORD_GUILD_ID", ""), []string{"DISCORD_GUILD_ID", "required", "Copy Server ID"}},
		{with("DISCORD_GUILD_ID", "guild"), []string{"DISCORD_GUILD_ID", `"guild" is not a Discord id`}},
		{with("ROOM_CATEGORY_ID", ""), []string{"ROOM_CATEGORY_ID", "required"}},
		{with("JWKS_URL", ""), []string{"JWKS_URL", "required", "DEV_AUTH=1"}},
		{with("JWKS_URL", "ftp://x"), []string{"JWKS_URL", "not an http(s) URL"}},
		{with("JWT_ISSUER", ""), []string{"JWT_ISSUER", "required with JWKS_URL"}},
		{with("JWT_AUDIENCE", ""), []string{"JWT_AUDIENCE", "required with JWKS_URL"}},
		{with("DISCORD_BOT_TOKEN", "Bot abc"), []string{"DISCORD_BOT_TOKEN", "bare token"}},
		{with("HUB_HMAC_SECRET", "short"), []string{"HUB_HMAC_SECRET", "shorter than 32", "openssl rand"}},
		{with("LISTEN_ADDR", "8080"), []string{"LISTEN_ADDR", "not host:port"}},
		{with("LOG_LEVEL", "loud"), []string{"LOG_LEVEL", "debug, info, warn or error"}},
		{with("LOG_FORMAT", "xml"), []string{"LOG_FORMAT", "text or json"}},
		{with("ICE_UDP_PORT", "70000"), []string{"ICE_UDP_PORT", "not a port"}},
		{with("ICE_PUBLIC_IP", "example.com"), []string{"ICE_PUBLIC_IP", "not an IP"}},
		{with("ALLOWED_ORIGINS", "example.com"), []string{"ALLOWED_ORIGINS", "not an origin"}},
		{with("ROOM_GRACE_PERIOD", "soon"), []string{"ROOM_GRACE_PERIOD", "not a duration"}},
		{with("ROOM_GRACE_PERIOD", "0"), []string{"ROOM_GRACE_PERIOD", "0 is not supported", "1s"}},
		{with("ROOM_GRACE_PERIOD", "0s"), []string{"ROOM_GRACE_PERIOD", "0 is not supported"}},
		{with("DEV_AUTH", "yes"), []string{"DEV_AUTH", "not 1 or 0"}},
		{with("MIX", "maybe"), []string{"MIX", "not on or off"}},
		{with("MIX_BITRATE", "1000"), []string{"MIX_BITRATE", "6000 to 510000"}},
		{with("MIX_MAX_SPEAKERS", "0"), []string{"MIX_MAX_SPEAKERS", "not a positive number"}},
		{with("MIX_JITTER_MAX", "2s"), []string{"MIX_JITTER_MAX", "up to 1s"}},
		{with("MIX_JITTER_MIN", "300ms"), []string{"MIX_JITTER_MIN", "more than MIX_JITTER_MAX"}},
		{with("ICE_SERVERS", "turn:turn.example.com:3478"), []string{"ICE_SERVERS", "needs user:password@"}},
		{with("ICE_SERVERS", "stun:u:p@stun.example.com"), []string{"ICE_SERVERS", "only TURN servers take credentials"}},
		{with("ICE_SERVERS", "http://stun.example.com"), []string{"ICE_SERVERS", "not stun, stuns, turn or turns"}},
		{with("ICE_TCP_PORT", "-1"), []string{"ICE_TCP_PORT", "not a port", "or off"}},
		{with("TLS_CERT_FILE", "cert.pem"), []string{"TLS_CERT_FILE", "needs TLS_KEY_FILE"}},
		{with("TLS_DOMAIN", "10.0.0.1"), []string{"TLS_DOMAIN", "not a DNS name"}},
		{withAll(map[string]string{"TLS_DOMAIN": "a.example.com", "TLS_CERT_FILE": "c", "TLS_KEY_FILE": "k"}), []string{"TLS_DOMAIN", "choose one"}},
		{with("ACME_DIRECTORY_URL", "http://ca.example.com/dir"), []string{"ACME_DIRECTORY_URL", "not an https URL"}},
		{with("HTTP_REDIRECT_ADDR", "80"), []string{"HTTP_REDIRECT_ADDR", "not host:port"}},
		{with("TRUSTED_PROXIES", "proxy.local"), []string{"TRUSTED_PROXIES", "not an IP address or CIDR"}},
		{with("TURN_PORT", "3478"), []string{"TURN_RELAY_IP", "required with TURN_PORT"}},
		{withAll(map[string]string{"TURN_PORT": "3478", "TURN_RELAY_IP": "192.0.2.1", "TURN_TLS_PORT": "5349"}), []string{"TURN_TLS_PORT", "needs a certificate"}},
		{with("TURN_SECRET", "short"), []string{"TURN_SECRET", "shorter than 32"}},
		{with("TURN_CREDENTIAL_TTL", "1ms"), []string{"TURN_CREDENTIAL_TTL", "a second or more"}},
		{with("TURN_USER_KBPS", "10"), []string{"TURN_USER_KBPS", "64 kbit/s"}},
		{with("OPERATOR_TOKEN", "short"), []string{"OPERATOR_TOKEN", "shorter than 32", "openssl rand"}},
		{with("ROOMS_PER_USER", "0"), []string{"ROOMS_PER_USER", "not a positive number"}},
		{with("SOCKETS_PER_USER", "many"), []string{"SOCKETS_PER_USER", "not a positive number"}},
		{with("MAX_CONNS_PER_IP", "-1"), []string{"MAX_CONNS_PER_IP", "not a positive number"}},
		{with("MAX_CONNS", "x"), []string{"MAX_CONNS", "not a positive number"}},
		{with("JWKS_TIMEOUT", "0s"), []string{"JWKS_TIMEOUT", "not a positive duration"}},
		{with("ADMIN_CLAIM", " "), []string{"ADMIN_CLAIM", "is empty"}},
	}
	for _, tc := range cases {
		_, err := loadConfig(nil, envFrom(tc.env))
		if err == nil {
			t.Errorf("%v: accepted, want an error", tc.want)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not mention %q", err, w)
			}
		}
		if strings.Count(err.Error(), "\n") != 0 {
			t.Errorf("one problem must give one line, got %q", err)
		}
	}

	devOK := with("JWKS_URL", "")
	devOK["DEV_AUTH"] = "1"
	if c, err := loadConfig(nil, envFrom(devOK)); err != nil || !c.DevAuth {
		t.Fatalf("DEV_AUTH=1 with a token must be accepted and on: %v", err)
	}
}

func TestConfigICEServers(t *testing.T) {
	c, err := loadConfig(nil, envFrom(map[string]string{
		"ICE_SERVERS": "stun:stun.example.com:3478, turn:alice:s3cret@turn.example.com:3478?transport=tcp",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ICEServers) != 2 {
		t.Fatalf("got %d servers: %+v", len(c.ICEServers), c.ICEServers)
	}
	if c.ICEServers[0].URLs[0] != "stun:stun.example.com:3478" || c.ICEServers[0].Username != "" {
		t.Fatalf("stun entry %+v", c.ICEServers[0])
	}
	turn := c.ICEServers[1]
	if turn.URLs[0] != "turn:turn.example.com:3478?transport=tcp" || turn.Username != "alice" || turn.Credential != "s3cret" {
		t.Fatalf("turn entry %+v", turn)
	}
}

func TestRunStopsOnBadConfigWithOneLine(t *testing.T) {
	var out, errOut strings.Builder
	code := run(nil, envFrom(map[string]string{"DISCORD_BOT_TOKEN": "t", "DISCORD_GUILD_ID": "1",
		"ROOM_CATEGORY_ID": "2", "JWKS_URL": "https://x/jwks", "JWT_ISSUER": "i", "JWT_AUDIENCE": "a",
		"LOG_LEVEL": "chatty"}), &out, &errOut)
	if code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "LOG_LEVEL") {
		t.Fatalf("want one line naming LOG_LEVEL, got %q", errOut.String())
	}
}

func TestEnvExampleIsCurrent(t *testing.T) {
	b, err := os.ReadFile("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != envExample() {
		t.Fatal(".env.example is stale: regenerate with go run ./cmd/bridge -print-env-example > .env.example")
	}
	for _, s := range settings {
		if !strings.Contains(string(b), s.env+"=") {
			t.Errorf(".env.example lacks %s", s.env)
		}
	}
}

func TestConfigBotTokens(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte("t3\nt4, t5\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"DISCORD_BOT_TOKENS":      "t1, t2",
		"DISCORD_BOT_TOKENS_FILE": file,
		"DISCORD_GUILD_ID":        "123456789012345678",
		"ROOM_CATEGORY_ID":        "223456789012345678",
		"DEV_AUTH":                "1",
	}
	c, err := loadConfig(nil, envFrom(env))
	if err != nil {
		t.Fatal(err)
	}
	if c.Embedded || c.BotToken != "t1" || strings.Join(c.BotTokens, " ") != "t1 t2 t3 t4 t5" {
		t.Fatalf("Embedded=%v BotToken=%q BotTokens=%q", c.Embedded, c.BotToken, c.BotTokens)
	}
	env["DISCORD_BOT_TOKEN"] = "t4"
	_, err = loadConfig(nil, envFrom(env))
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Var != "DISCORD_BOT_TOKENS_FILE" || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("a token given twice: %v", err)
	}
	env["DISCORD_BOT_TOKEN"] = ""
	env["DISCORD_BOT_TOKENS_FILE"] = filepath.Join(t.TempDir(), "missing")
	if _, err := loadConfig(nil, envFrom(env)); err == nil || !strings.Contains(err.Error(), "DISCORD_BOT_TOKENS_FILE") {
		t.Fatalf("a missing tokens file: %v", err)
	}
}

func TestConfigShards(t *testing.T) {
	env := map[string]string{"DISCORD_SHARDS": "16"}
	c, err := loadConfig(nil, envFrom(env))
	if err != nil || c.Shards != 16 {
		t.Fatalf("DISCORD_SHARDS=16: %v, Shards %d", err, c.Shards)
	}
	for _, bad := range []string{"0", "-2", "many"} {
		env["DISCORD_SHARDS"] = bad
		var ce *ConfigError
		if _, err := loadConfig(nil, envFrom(env)); !errors.As(err, &ce) || ce.Var != "DISCORD_SHARDS" {
			t.Fatalf("DISCORD_SHARDS=%s: %v", bad, err)
		}
	}
}

// DISCORD_GUILDS adds guild:category pairs after DISCORD_GUILD_ID's, or
// stands alone; a malformed pair or a server listed twice names the
// variable.
func TestConfigGuilds(t *testing.T) {
	prod := map[string]string{
		"DISCORD_BOT_TOKEN": "abc.def.ghi",
		"DISCORD_GUILD_ID":  "123456789012345678",
		"ROOM_CATEGORY_ID":  "223456789012345678",
		"DISCORD_GUILDS":    " 323456789012345678:423456789012345678, 523456789012345678:623456789012345678 ",
		"JWKS_URL":          "https://idp.example.com/jwks.json",
		"JWT_ISSUER":        "https://idp.example.com/",
		"JWT_AUDIENCE":      "bridge",
	}
	c, err := loadConfig(nil, envFrom(prod))
	if err != nil {
		t.Fatal(err)
	}
	want := []GuildConfig{{"123456789012345678", "223456789012345678"}, {"323456789012345678", "423456789012345678"}, {"523456789012345678", "623456789012345678"}}
	if !slices.Equal(c.Guilds, want) || c.GuildID != "123456789012345678" {
		t.Fatalf("Guilds %v (GuildID %s), want %v", c.Guilds, c.GuildID, want)
	}
	alone := maps.Clone(prod)
	delete(alone, "DISCORD_GUILD_ID")
	delete(alone, "ROOM_CATEGORY_ID")
	if c, err := loadConfig(nil, envFrom(alone)); err != nil || len(c.Guilds) != 2 || c.GuildID != "" {
		t.Fatalf("DISCORD_GUILDS alone: %v, Guilds %v, GuildID %q (no default guild)", err, c.Guilds, c.GuildID)
	}
	for _, bad := range []string{"323456789012345678", "x:1", "1:2:3", "323456789012345678:423456789012345678,323456789012345678:5", "123456789012345678:9"} {
		env := maps.Clone(prod)
		env["DISCORD_GUILDS"] = bad
		var ce *ConfigError
		if _, err := loadConfig(nil, envFrom(env)); !errors.As(err, &ce) || ce.Var != "DISCORD_GUILDS" {
			t.Errorf("DISCORD_GUILDS=%s: %v, want a DISCORD_GUILDS error", bad, err)
		}
	}
	none := maps.Clone(alone)
	delete(none, "DISCORD_GUILDS")
	var ce *ConfigError
	if _, err := loadConfig(nil, envFrom(none)); !errors.As(err, &ce) || ce.Var != "DISCORD_GUILD_ID" {
		t.Errorf("no server at all: %v, want DISCORD_GUILD_ID required", err)
	}
}
