package media

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the TURN REST convention's HMAC is HMAC-SHA1
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/turn/v5"
	"github.com/pion/webrtc/v4"
	"golang.org/x/time/rate"
)

// TURN defaults.
const (
	defaultTURNCredentialTTL   = 6 * time.Hour
	defaultTURNUserBitrate     = 5_000_000 // bit/s each way
	defaultTURNUserAllocations = 10
	turnRealm                  = "voicebridge"
)

// TURNOptions configures the embedded TURN server (RFC 8656) for browsers
// on networks that reach neither media port directly.
type TURNOptions struct {
	// UDPListen and TCPListen are where clients reach the server
	// ("0.0.0.0:3478"); TLSListen, with TLSConfig, serves turns:. At least
	// one is required.
	UDPListen, TCPListen, TLSListen string
	TLSConfig                       *tls.Config
	// RelayIP is the address relays are given out at (the server's public
	// address); RelayBind is where relay sockets are opened, default
	// 0.0.0.0 (behind 1:1 NAT they differ).
	RelayIP   net.IP
	RelayBind string
	// Host names the server in the turn: URLs handed to browsers (the
	// certificate's name for turns:); default RelayIP.
	Host string
	// Secret is the shared secret of the TURN REST credentials; required.
	Secret []byte
	// CredentialTTL is how long a handed-out credential is valid; default
	// 6 h.
	CredentialTTL time.Duration
	// UserBitrate bounds each user's relayed traffic, in bit/s each way
	// (packets beyond it are dropped); default 5 Mbit/s.
	UserBitrate int
	// UserAllocations bounds each user's simultaneous relays; default 10.
	UserAllocations int
	// PeerAllowed says which peers a relay may send to; the bridge allows
	// only its own addresses, so the server relays media to the bridge and
	// is no open relay. Nil allows every peer.
	PeerAllowed func(net.IP) bool
	// Now is the clock credentials are issued and checked by; default
	// time.Now.
	Now func() time.Time
	// Logger receives the server's logs; default discards.
	Logger *slog.Logger
}

// TURNServer is the embedded TURN server: it authenticates time-limited
// credentials made per user (draft-uberti-behave-turn-rest-00 §2.2: the
// username is "expiry:user", the password base64(HMAC-SHA1(secret,
// username))) and bounds each user's relays and bandwidth.
type TURNServer struct {
	opts TURNOptions
	log  *slog.Logger
	srv  *turn.Server
	urls []string

	mu    sync.Mutex
	users map[string]*turnUser
}

// turnUser is one user's share of the relay: a byte budget per direction
// and the count of open relays.
type turnUser struct {
	in, out *rate.Limiter
	allocs  int
}

// StartTURN opens the listeners and starts serving.
func StartTURN(opts TURNOptions) (_ *TURNServer, err error) {
	if len(opts.Secret) == 0 {
		return nil, fmt.Errorf("%w: TURN Secret is required", ErrInvalidOptions)
	}
	if opts.RelayIP == nil {
		return nil, fmt.Errorf("%w: TURN RelayIP is required", ErrInvalidOptions)
	}
	if opts.UDPListen == "" && opts.TCPListen == "" && opts.TLSListen == "" {
		return nil, fmt.Errorf("%w: TURN needs a UDP, TCP or TLS listen address", ErrInvalidOptions)
	}
	if opts.TLSListen != "" && opts.TLSConfig == nil {
		return nil, fmt.Errorf("%w: TURN TLSListen needs TLSConfig", ErrInvalidOptions)
	}
	if opts.RelayBind == "" {
		opts.RelayBind = "0.0.0.0"
	}
	if opts.Host == "" {
		opts.Host = opts.RelayIP.String()
	}
	if opts.CredentialTTL <= 0 {
		opts.CredentialTTL = defaultTURNCredentialTTL
	}
	if opts.UserBitrate <= 0 {
		opts.UserBitrate = defaultTURNUserBitrate
	}
	if opts.UserAllocations <= 0 {
		opts.UserAllocations = defaultTURNUserAllocations
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &TURNServer{opts: opts, log: opts.Logger.With("component", "media"), users: make(map[string]*turnUser)}

	var closers []func() error
	defer func() {
		if err != nil {
			for _, c := range closers {
				_ = c()
			}
		}
	}()
	gen := &turnRelays{s: s, base: &turn.RelayAddressGeneratorStatic{RelayAddress: opts.RelayIP, Address: opts.RelayBind}}
	permit := func(_ net.Addr, peer net.IP) bool {
		return opts.PeerAllowed == nil || opts.PeerAllowed(peer)
	}
	cfg := turn.ServerConfig{
		Realm:        turnRealm,
		AuthHandler:  s.authenticate,
		QuotaHandler: s.quota,
	}
	if opts.UDPListen != "" {
		pc, err := net.ListenPacket("udp", opts.UDPListen)
		if err != nil {
			return nil, fmt.Errorf("%w: TURN UDP %q: %w", ErrInvalidOptions, opts.UDPListen, err)
		}
		closers = append(closers, pc.Close)
		cfg.PacketConnConfigs = append(cfg.PacketConnConfigs, turn.PacketConnConfig{PacketConn: pc, RelayAddressGenerator: gen, PermissionHandler: permit})
		s.urls = append(s.urls, s.url("turn", pc.LocalAddr(), "udp"))
	}
	if opts.TCPListen != "" {
		ln, err := net.Listen("tcp", opts.TCPListen)
		if err != nil {
			return nil, fmt.Errorf("%w: TURN TCP %q: %w", ErrInvalidOptions, opts.TCPListen, err)
		}
		closers = append(closers, ln.Close)
		cfg.ListenerConfigs = append(cfg.ListenerConfigs, turn.ListenerConfig{Listener: ln, RelayAddressGenerator: gen, PermissionHandler: permit})
		s.urls = append(s.urls, s.url("turn", ln.Addr(), "tcp"))
	}
	if opts.TLSListen != "" {
		ln, err := tls.Listen("tcp", opts.TLSListen, opts.TLSConfig)
		if err != nil {
			return nil, fmt.Errorf("%w: TURN TLS %q: %w", ErrInvalidOptions, opts.TLSListen, err)
		}
		closers = append(closers, ln.Close)
		cfg.ListenerConfigs = append(cfg.ListenerConfigs, turn.ListenerConfig{Listener: ln, RelayAddressGenerator: gen, PermissionHandler: permit})
		s.urls = append(s.urls, s.url("turns", ln.Addr(), "tcp"))
	}
	if s.srv, err = turn.NewServer(cfg); err != nil {
		return nil, fmt.Errorf("TURN server: %w", err)
	}
	s.log.Info("TURN server listening", "urls", strings.Join(s.urls, " "))
	return s, nil
}

// url is a turn:/turns: URI (RFC 7065) for the listener at addr.
func (s *TURNServer) url(scheme string, addr net.Addr, transport string) string {
	_, port, _ := net.SplitHostPort(addr.String())
	return scheme + ":" + net.JoinHostPort(s.opts.Host, port) + "?transport=" + transport
}

// URLs are the server's turn: and turns: URIs.
func (s *TURNServer) URLs() []string { return append([]string(nil), s.urls...) }

// ICEServer makes a credential for userID, valid for CredentialTTL, as
// the ICE server entry a browser gets.
func (s *TURNServer) ICEServer(userID string) webrtc.ICEServer {
	expiry := s.opts.Now().Add(s.opts.CredentialTTL).Unix()
	username := strconv.FormatInt(expiry, 10) + ":" + userID
	return webrtc.ICEServer{URLs: s.URLs(), Username: username, Credential: s.password(username)}
}

func (s *TURNServer) password(username string) string {
	mac := hmac.New(sha1.New, s.opts.Secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// authenticate checks a TURN REST username: its expiry not passed, and
// the user it names. The key is the long-term credential key (RFC 8489
// §9.2.2) of the password made from the username, so a username changed to
// another user's id no longer matches the password.
func (s *TURNServer) authenticate(ra *turn.RequestAttributes) (string, []byte, bool) {
	expiry, user, ok := parseTURNUsername(ra.Username)
	if !ok {
		s.log.Debug("TURN username refused: not expiry:user", "username", ra.Username)
		return "", nil, false
	}
	if !s.opts.Now().Before(time.Unix(expiry, 0)) {
		s.log.Debug("TURN credential refused: expired", "user_id", user)
		return "", nil, false
	}
	return user, turn.GenerateAuthKey(ra.Username, ra.Realm, s.password(ra.Username)), true
}

func parseTURNUsername(username string) (expiry int64, user string, ok bool) {
	ts, user, found := strings.Cut(username, ":")
	if !found || user == "" {
		return 0, "", false
	}
	expiry, err := strconv.ParseInt(ts, 10, 64)
	return expiry, user, err == nil
}

// quota refuses a new relay (486 Allocation Quota Reached) to a user who
// holds UserAllocations already; pion passes the user authenticate
// returned.
func (s *TURNServer) quota(user, _ string, _ net.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[user]
	return u == nil || u.allocs < s.opts.UserAllocations
}

// share returns the user's budget, counting one more relay.
func (s *TURNServer) share(user string) *turnUser {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[user]
	if u == nil {
		bytesPerSec := rate.Limit(s.opts.UserBitrate / 8)
		burst := max(s.opts.UserBitrate/8/4, 64<<10) // a quarter second, at least 64 KiB
		u = &turnUser{in: rate.NewLimiter(bytesPerSec, burst), out: rate.NewLimiter(bytesPerSec, burst)}
		s.users[user] = u
	}
	u.allocs++
	return u
}

// release counts one relay of the user gone.
func (s *TURNServer) release(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[user]; u != nil {
		if u.allocs--; u.allocs <= 0 {
			delete(s.users, user)
		}
	}
}

// Close stops the server and closes every relay.
func (s *TURNServer) Close() error {
	return s.srv.Close()
}

// turnRelays opens relay sockets through base and bounds each with its
// user's budget. Relays over TCP (RFC 6062) are not offered: browsers
// relay over UDP allocations, whatever their transport to the server.
type turnRelays struct {
	s    *TURNServer
	base *turn.RelayAddressGeneratorStatic
}

// errTCPRelay refuses RFC 6062 TCP allocations.
var errTCPRelay = errors.New("TCP relays are not offered")

func (g *turnRelays) Validate() error { return g.base.Validate() }

func (g *turnRelays) AllocatePacketConn(conf turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	pc, addr, err := g.base.AllocatePacketConn(conf)
	if err != nil {
		return nil, nil, err
	}
	return &boundedRelay{PacketConn: pc, s: g.s, user: conf.UserID, share: g.s.share(conf.UserID)}, addr, nil
}

func (g *turnRelays) AllocateListener(turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return nil, nil, errTCPRelay
}

func (g *turnRelays) AllocateConn(turn.AllocateConnConfig) (net.Conn, error) {
	return nil, errTCPRelay
}

// boundedRelay is one relay socket: datagrams beyond the user's budget are
// dropped, in either direction, as a congested link would.
type boundedRelay struct {
	net.PacketConn
	s     *TURNServer
	user  string
	share *turnUser
	once  sync.Once
}

func (r *boundedRelay) WriteTo(p []byte, addr net.Addr) (int, error) {
	if !r.share.out.AllowN(r.s.opts.Now(), len(p)) {
		return len(p), nil
	}
	return r.PacketConn.WriteTo(p, addr)
}

func (r *boundedRelay) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := r.PacketConn.ReadFrom(p)
		if err != nil || r.share.in.AllowN(r.s.opts.Now(), n) {
			return n, addr, err
		}
	}
}

func (r *boundedRelay) Close() error {
	r.once.Do(func() { r.s.release(r.user) })
	return r.PacketConn.Close()
}
