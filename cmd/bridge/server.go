package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// serverLimits are the HTTP server's timeouts and sizes; the zero value
// of each field means its default. They are stated in the README.
type serverLimits struct {
	// HeaderTimeout bounds reading a request's headers. Default 5 s.
	HeaderTimeout time.Duration
	// BodyTimeout bounds reading a request's body, from the end of its
	// headers; a body trickled slower is cut off and the connection
	// closed. Default 10 s.
	BodyTimeout time.Duration
	// WriteTimeout bounds writing an answer, counted like BodyTimeout
	// from the end of the headers, so it must be the longer: a body that
	// timed out still gets its 408. Default 30 s.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends no next
	// request. Default 60 s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers. Default 16 KiB.
	MaxHeaderBytes int
}

func (l serverLimits) withDefaults() serverLimits {
	setDefault := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	setDefault(&l.HeaderTimeout, 5*time.Second)
	setDefault(&l.BodyTimeout, 10*time.Second)
	setDefault(&l.WriteTimeout, 30*time.Second)
	setDefault(&l.IdleTimeout, 60*time.Second)
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = 16 << 10
	}
	return l
}

// wrap sets each request's read and write deadlines. A WebSocket upgrade
// gets the same ones for its handshake; once upgraded, the hub sets the
// socket's deadlines itself (auth timeout, ping interval, write timeout).
func (l serverLimits) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		now := time.Now()
		_ = rc.SetReadDeadline(now.Add(l.BodyTimeout))
		_ = rc.SetWriteDeadline(now.Add(l.WriteTimeout))
		next.ServeHTTP(w, r)
	})
}

// connLimiter is the listener with caps on connections that have not
// authenticated: at most perAddr from one source address and total in all.
// A connection past a cap gets a 503 and is closed at once. A WebSocket
// that authenticates (the hub calls Authenticated on its connection)
// leaves the count: the hub's per-user socket limit bounds those.
type connLimiter struct {
	net.Listener
	perAddr, total int
	// proxies (TRUSTED_PROXIES) bring many users' connections from one
	// address: only the total cap applies to them.
	proxies []netip.Prefix
	log     *slog.Logger

	mu     sync.Mutex
	byAddr map[string]int
	n      int
	warned time.Time
}

func newConnLimiter(ln net.Listener, perAddr, total int, proxies []netip.Prefix, log *slog.Logger) *connLimiter {
	return &connLimiter{Listener: ln, perAddr: perAddr, total: total, proxies: proxies, log: log, byAddr: make(map[string]int)}
}

// perAddrCapped says whether the per-address cap applies to addr: not to a
// trusted reverse proxy.
func (l *connLimiter) perAddrCapped(addr string) bool {
	a, err := netip.ParseAddr(addr)
	return err != nil || !inPrefixes(l.proxies, a.Unmap())
}

// busyBody is what a connection past a cap reads, in a 503, before it is
// closed.
const busyBody = `{"error":{"code":"too_many_connections","message":"too many connections from your address or in all; retry in a few seconds"}}` + "\n"

var busyResponse = []byte(fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"+
	"X-Content-Type-Options: nosniff\r\nConnection: close\r\nRetry-After: 5\r\nContent-Length: %d\r\n\r\n%s", len(busyBody), busyBody))

// Accept returns the next connection within the caps; those past them
// are answered and closed here.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := sourceAddr(c.RemoteAddr())
		if l.admit(addr) {
			return &limitedConn{Conn: c, l: l, addr: addr}, nil
		}
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write(busyResponse)
		_ = c.Close()
	}
}

func (l *connLimiter) admit(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n >= l.total || (l.byAddr[addr] >= l.perAddr && l.perAddrCapped(addr)) {
		if now := time.Now(); now.Sub(l.warned) > 10*time.Second {
			l.warned = now
			l.log.Warn("refusing connections over the limit (MAX_CONNS, MAX_CONNS_PER_IP)",
				"remote", addr, "from_remote", l.byAddr[addr], "total", l.n)
		}
		return false
	}
	l.n++
	l.byAddr[addr]++
	return true
}

func (l *connLimiter) release(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n--
	if l.byAddr[addr]--; l.byAddr[addr] <= 0 {
		delete(l.byAddr, addr)
	}
}

// counts are the unauthenticated connections in all and from addr.
func (l *connLimiter) counts(addr string) (total, fromAddr int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n, l.byAddr[addr]
}

// sourceAddr is the IP of a remote address (no port).
func sourceAddr(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return strings.ToLower(host)
}

// limitedConn counts against its limiter until it closes or
// authenticates, whichever comes first.
type limitedConn struct {
	net.Conn
	l    *connLimiter
	addr string
	once sync.Once
}

// Authenticated takes the connection out of the unauthenticated count.
func (c *limitedConn) Authenticated() { c.once.Do(func() { c.l.release(c.addr) }) }

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.l.release(c.addr) })
	return c.Conn.Close()
}

// SetWriteBuffer passes SO_SNDBUF on to the TCP connection (the hub caps
// its sockets' kernel buffers).
func (c *limitedConn) SetWriteBuffer(n int) error {
	if sb, ok := c.Conn.(interface{ SetWriteBuffer(int) error }); ok {
		return sb.SetWriteBuffer(n)
	}
	return nil
}
