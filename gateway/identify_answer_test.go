package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/voicebridge/bridge/gateway"
)

// TestIdentifyWindowStartsAtAnswer: two shards of one bot in one
// max_concurrency bucket. The gateway answers the first identify late;
// the second is not sent before that answer, however short the window,
// since a gateway measures identifies when it reads them and a slow read
// of one must not make the next look early.
func TestIdentifyWindowStartsAtAnswer(t *testing.T) {
	var (
		mu  sync.Mutex
		log []string // "identify N" as read, "ready N" as sent
		srv *httptest.Server
	)
	note := func(s string) {
		mu.Lock()
		log = append(log, s)
		mu.Unlock()
	}
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v10/gateway/bot" {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"url": "ws" + strings.TrimPrefix(srv.URL, "http") + "/gw", "shards": 2,
				"session_start_limit": map[string]any{"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}})
			return
		}
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		send(c, map[string]any{"op": 10, "d": map[string]any{"heartbeat_interval": 60000}})
		for {
			var f struct {
				Op int
				D  struct{ Shard []int }
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if err := c.ReadJSON(&f); err != nil {
				return
			}
			if f.Op != 2 || len(f.D.Shard) != 2 {
				continue
			}
			shard := f.D.Shard[0]
			mu.Lock()
			first := len(log) == 0
			mu.Unlock()
			note(fmt.Sprintf("identify %d", shard))
			if first {
				time.Sleep(300 * time.Millisecond) // a gateway slow to answer
			}
			note(fmt.Sprintf("ready %d", shard))
			send(c, map[string]any{"op": 0, "s": 1, "t": "READY", "d": map[string]any{
				"session_id": fmt.Sprint("s", shard), "resume_gateway_url": "ws" + strings.TrimPrefix(srv.URL, "http") + "/gw",
				"user": map[string]any{"id": "1"}, "guilds": []any{}}})
		}
	}))
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()

	q := gateway.NewIdentifyQueue()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var clients []*gateway.Client
	// Guild 2<<22 is on shard 0 of 2, guild 1<<22 on shard 1.
	for _, guild := range []string{fmt.Sprint(uint64(2) << 22), fmt.Sprint(uint64(1) << 22)} {
		c, err := gateway.New(gateway.Options{
			Token: "t", GuildID: guild, CategoryID: "3", APIBase: srv.URL + "/api/v10", HTTPClient: hc,
			Shards: 2, Identify: q, IdentifyInterval: time.Millisecond, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Open(ctx); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	for _, c := range clients {
		if err := c.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clients {
		if err := c.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(log) != 4 || !strings.HasPrefix(log[0], "identify") || !strings.HasPrefix(log[1], "ready") || log[1][len("ready "):] != log[0][len("identify "):] {
		t.Fatalf("gateway saw %q, want one shard's identify answered before the other's identify", log)
	}
}
