package main

import (
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/voicebridge/bridge/media"
)

// loadReach reads and checks the settings of HTTPS, reverse proxies,
// ICE-TCP and the embedded TURN server into c.
func loadReach(c *Config, get func(string) string, bad func(v, problem, fix string)) {
	port := func(name string, allowOff bool) (int, bool) {
		v := get(name)
		if allowOff && (v == "" || strings.EqualFold(v, "off")) {
			return -1, true
		}
		p, err := strconv.Atoi(v)
		if err != nil || p < 0 || p > 65535 {
			bad(name, fmt.Sprintf("%q is not a port", v), "use a number from 1 to 65535 (0 picks a free port), or off")
			return 0, false
		}
		return p, true
	}
	c.ICETCPPort, _ = port("ICE_TCP_PORT", true)

	c.TLSCertFile, c.TLSKeyFile = get("TLS_CERT_FILE"), get("TLS_KEY_FILE")
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		bad("TLS_CERT_FILE", "needs TLS_KEY_FILE with it (and the other way round)", "set both to the PEM files of the certificate and its key")
	}
	for _, d := range strings.Split(get("TLS_DOMAIN"), ",") {
		if d = strings.ToLower(strings.TrimSpace(d)); d == "" {
			continue
		}
		if strings.ContainsAny(d, ":/ ") || !strings.Contains(d, ".") || net.ParseIP(d) != nil {
			bad("TLS_DOMAIN", fmt.Sprintf("%q is not a DNS name", d), "give the public hostname browsers open, e.g. bridge.example.com (ACME CAs do not issue for IP addresses)")
			continue
		}
		c.TLSDomains = append(c.TLSDomains, d)
	}
	if len(c.TLSDomains) > 0 && c.TLSCertFile != "" {
		bad("TLS_DOMAIN", "is set together with TLS_CERT_FILE", "choose one: automatic certificates (TLS_DOMAIN) or your own files (TLS_CERT_FILE, TLS_KEY_FILE)")
	}
	c.ACMEDirectoryURL, c.ACMEEmail = get("ACME_DIRECTORY_URL"), get("ACME_EMAIL")
	c.ACMECacheDir, c.ACMECARoots = get("ACME_CACHE_DIR"), get("ACME_CA_ROOTS")
	if u, err := url.Parse(c.ACMEDirectoryURL); err != nil || u.Scheme != "https" || u.Host == "" {
		bad("ACME_DIRECTORY_URL", fmt.Sprintf("%q is not an https URL", c.ACMEDirectoryURL), "leave it unset for Let's Encrypt, or give your CA's directory URL")
	}
	if len(c.TLSDomains) > 0 && c.ACMECacheDir == "" {
		bad("ACME_CACHE_DIR", "is empty", "give a directory that survives restarts; without it every start asks the CA again and hits its rate limits")
	}
	c.RedirectAddr = get("HTTP_REDIRECT_ADDR")
	if strings.EqualFold(c.RedirectAddr, "off") {
		c.RedirectAddr = ""
	} else if _, _, err := net.SplitHostPort(c.RedirectAddr); err != nil {
		bad("HTTP_REDIRECT_ADDR", fmt.Sprintf("%q is not host:port", c.RedirectAddr), "use :80, or off")
	}
	for _, p := range strings.Split(get("TRUSTED_PROXIES"), ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(p)
		if err != nil {
			a, aerr := netip.ParseAddr(p)
			if aerr != nil {
				bad("TRUSTED_PROXIES", fmt.Sprintf("%q is not an IP address or CIDR", p), "list the proxies' addresses, e.g. 127.0.0.1,10.0.0.0/8")
				continue
			}
			prefix = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		c.TrustedProxies = append(c.TrustedProxies, prefix.Masked())
	}

	if p, ok := port("TURN_PORT", true); ok && p >= 0 {
		c.TURNPort = p
		if p == 0 {
			bad("TURN_PORT", "is 0", "give the port browsers reach the TURN server at, e.g. 3478")
		}
	}
	if p, ok := port("TURN_TLS_PORT", true); ok && p > 0 {
		c.TURNTLSPort = p
		switch {
		case c.TURNPort == 0:
			bad("TURN_TLS_PORT", "is set without TURN_PORT", "set TURN_PORT to turn the embedded TURN server on")
		case c.TLSCertFile == "" && len(c.TLSDomains) == 0:
			bad("TURN_TLS_PORT", "needs a certificate", "set TLS_DOMAIN or TLS_CERT_FILE and TLS_KEY_FILE")
		}
	}
	c.TURNRelayIP = get("TURN_RELAY_IP")
	if c.TURNRelayIP != "" && net.ParseIP(c.TURNRelayIP) == nil {
		bad("TURN_RELAY_IP", fmt.Sprintf("%q is not an IP address", c.TURNRelayIP), "give the public IPv4 or IPv6 address of this server")
	}
	if c.TURNRelayIP == "" && net.ParseIP(c.ICEPublicIP) != nil {
		c.TURNRelayIP = c.ICEPublicIP
	}
	if c.TURNPort > 0 && c.TURNRelayIP == "" {
		bad("TURN_RELAY_IP", "is required with TURN_PORT (or ICE_PUBLIC_IP)", "give the public IP address browsers reach this server at")
	}
	c.TURNSecret = get("TURN_SECRET")
	if c.TURNSecret != "" && len(c.TURNSecret) < 32 {
		bad("TURN_SECRET", fmt.Sprintf("is %d bytes, shorter than 32", len(c.TURNSecret)), "generate one with: openssl rand -hex 32")
	}
	if d, err := time.ParseDuration(get("TURN_CREDENTIAL_TTL")); err != nil || d < time.Second {
		bad("TURN_CREDENTIAL_TTL", fmt.Sprintf("%q is not a duration of a second or more", get("TURN_CREDENTIAL_TTL")), "use a Go duration longer than your calls, such as 6h")
	} else {
		c.TURNCredentialTTL = d
	}
	if k, err := strconv.Atoi(get("TURN_USER_KBPS")); err != nil || k < 64 {
		bad("TURN_USER_KBPS", fmt.Sprintf("%q is not a rate of 64 kbit/s or more", get("TURN_USER_KBPS")), "give kbit/s, e.g. 5000 for audio and video")
	} else {
		c.TURNUserKbps = k
	}
}

// startTURN starts the embedded TURN server when TURN_PORT is set: UDP and
// TCP on that port, TLS on TURN_TLS_PORT with the HTTPS certificate.
func startTURN(cfg *Config, tlsConf *tls.Config, log *slog.Logger, tune func(*media.TURNOptions)) (*media.TURNServer, error) {
	if cfg.TURNPort == 0 {
		return nil, nil
	}
	secret := []byte(cfg.TURNSecret)
	if len(secret) == 0 {
		// Credentials come from this process only, so a fresh secret per
		// start is enough; a restart invalidates the old ones.
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, fmt.Errorf("TURN secret: %w", err)
		}
	}
	port := strconv.Itoa(cfg.TURNPort)
	o := media.TURNOptions{
		UDPListen:     net.JoinHostPort("", port),
		TCPListen:     net.JoinHostPort("", port),
		RelayIP:       net.ParseIP(cfg.TURNRelayIP),
		Secret:        secret,
		CredentialTTL: cfg.TURNCredentialTTL,
		UserBitrate:   cfg.TURNUserKbps * 1000,
		PeerAllowed:   ownAddresses(cfg),
		Logger:        log,
	}
	if len(cfg.TLSDomains) > 0 {
		o.Host = cfg.TLSDomains[0]
	}
	if cfg.TURNTLSPort > 0 {
		o.TLSListen = net.JoinHostPort("", strconv.Itoa(cfg.TURNTLSPort))
		o.TLSConfig = &tls.Config{GetCertificate: tlsConf.GetCertificate}
	}
	if tune != nil {
		tune(&o)
	}
	t, err := media.StartTURN(o)
	if err != nil {
		return nil, fmt.Errorf("TURN_PORT: %w", err)
	}
	return t, nil
}

// ownAddresses allows a TURN relay to send only to this machine's own
// addresses (and ICE_PUBLIC_IP): the bridge's media, not the internet.
func ownAddresses(cfg *Config) func(net.IP) bool {
	own := map[string]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				own[n.IP.String()] = true
			}
		}
	}
	for _, ip := range []string{cfg.ICEPublicIP, cfg.TURNRelayIP} {
		if p := net.ParseIP(ip); p != nil {
			own[p.String()] = true
		}
	}
	return func(ip net.IP) bool { return own[ip.String()] }
}

// turnICEServers is the TURN entry, with a fresh credential, of a browser.
func (a *app) turnICEServers(userID string) []webrtc.ICEServer {
	if a.turn == nil {
		return nil
	}
	return []webrtc.ICEServer{a.turn.ICEServer(userID)}
}
