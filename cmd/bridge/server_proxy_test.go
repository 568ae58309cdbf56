package main

import (
	"log/slog"
	"net/netip"
	"testing"
)

// Behind a trusted reverse proxy every user arrives from the proxy's
// address: the per-address cap does not apply to it, the total cap does;
// any other address stays capped.
func TestConnLimiterExemptsTrustedProxiesFromPerAddressCap(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.1.2.3/32")}
	l := newConnLimiter(nil, 2, 5, proxies, slog.New(slog.DiscardHandler))
	for i := range 5 {
		if !l.admit("10.1.2.3") {
			t.Fatalf("connection %d from the trusted proxy refused under the total cap", i+1)
		}
	}
	if l.admit("10.1.2.3") {
		t.Fatal("the trusted proxy's 6th connection admitted past the total cap of 5")
	}
	l2 := newConnLimiter(nil, 2, 5, proxies, slog.New(slog.DiscardHandler))
	for i := range 2 {
		if !l2.admit("192.0.2.7") {
			t.Fatalf("connection %d from an ordinary address refused under its cap", i+1)
		}
	}
	if l2.admit("192.0.2.7") {
		t.Fatal("an ordinary address admitted past the per-address cap of 2")
	}
}
