package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestShutdownLeavesVoiceAndClosesGateway: on shutdown the bridge leaves
// the voice channel it is in (op 4 with a null channel) before it closes
// the main gateway with 1000, so Discord shows the bot gone at once
// rather than minutes later.
func TestShutdownLeavesVoiceAndClosesGateway(t *testing.T) {
	checkLeaks(t)
	cfg, err := loadConfig(nil, envFrom(map[string]string{"LISTEN_ADDR": "127.0.0.1:0", "ICE_UDP_PORT": "0"}))
	if err != nil {
		t.Fatal(err)
	}
	a, err := newTunedApp(context.Background(), cfg, slog.New(slog.DiscardHandler), mediaTuning())
	if err != nil {
		t.Fatal(err)
	}
	ta := &testApp{app: a, base: "http://" + a.Addr()}
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	if err := a.gw.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	emu := a.demo.Discord
	bot := emu.Options().BotUserID
	room := newVoiceRoom(t, ctx, ta, "shutdown-room")
	b := newE2EBrowser(t, ta, "ann", browserOptions{})
	b.join(ctx, room)
	waitUntil(t, ctx, "the bot in the room's voice channel", func() bool { return emu.VoiceStates()[bot] == room })

	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := a.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, f := range emu.Sent() {
		if f.Op != 4 {
			continue
		}
		var d struct {
			ChannelID *string `json:"channel_id"`
		}
		if err := json.Unmarshal(f.Data, &d); err != nil {
			t.Fatal(err)
		}
		ch := "null"
		if d.ChannelID != nil {
			ch = *d.ChannelID
		}
		ops = append(ops, ch)
	}
	if len(ops) == 0 || ops[len(ops)-1] != "null" {
		t.Fatalf("op 4 channels sent %v: the bot did not leave voice on shutdown", ops)
	}
	if ch, in := emu.VoiceStates()[bot]; in {
		t.Fatalf("the bot is still in voice channel %s after shutdown", ch)
	}
	conns := emu.Connections()
	if last := conns[len(conns)-1]; last.CloseCode != websocket.CloseNormalClosure || last.ClosedByServer {
		t.Fatalf("last gateway connection %+v, want closed by the bot with 1000", last)
	}
}
