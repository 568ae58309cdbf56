package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/voicebridge/bridge/emulator/discordemu"
)

// roomStatus joins a room over /api/ws and returns the first room status
// message whose text contains want.
func roomStatus(t *testing.T, ctx context.Context, ta *testApp, token, roomID, want string) string {
	t.Helper()
	url := "ws" + strings.TrimPrefix(ta.base, "http") + "/api/ws"
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, url, http.Header{"Origin": {ta.base}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, m := range []map[string]string{{"type": "auth", "token": token}, {"type": "join", "roomId": roomID}} {
		if err := conn.WriteJSON(m); err != nil {
			t.Fatal(err)
		}
	}
	deadline, _ := ctx.Deadline()
	conn.SetReadDeadline(deadline)
	var seen []string
	for {
		var m struct{ Type, RoomID, Discord, Message string }
		if err := conn.ReadJSON(&m); err != nil {
			t.Fatalf("no room status with %q; saw %q: %v", want, seen, err)
		}
		if m.Type == "status" && m.RoomID == roomID {
			seen = append(seen, m.Message)
			if strings.Contains(m.Message, want) {
				return m.Message
			}
		}
	}
}

// fullRoomFor creates a room with a user limit of one over the API and
// puts a Discord member in it.
func fullRoomFor(t *testing.T, ctx context.Context, ta *testApp, token string) string {
	t.Helper()
	var room struct{ ChannelID string }
	ta.doJSON(t, http.MethodPost, "/api/create-room", token, map[string]any{"name": "full", "userLimit": 1}, http.StatusCreated, &room)
	addDiscordMember(t, ta, "450000000000000021", "Alice", room.ChannelID)
	waitUntil(t, ctx, "the bridge sees the member in the full room", func() bool {
		for _, r := range ta.gw.Rooms() {
			if r.ChannelID == room.ChannelID && len(r.Members) == 1 {
				return true
			}
		}
		return false
	})
	return room.ChannelID
}

// TestFullRoomWithoutMoveMembers: the bot's role lacks Move Members.
// /readyz reports the missing permission with the fix; joining a full
// room fails with a clear error in the room's status, and no op 4 goes
// to Discord (which would ignore it), so nothing loops on the gateway.
func TestFullRoomWithoutMoveMembers(t *testing.T) {
	tune := mediaTuning()
	tune.demo.Discord.BotPermissions = discordemu.PermViewChannel | discordemu.PermManageChannels | discordemu.PermConnect | discordemu.PermSpeak
	// The gateway's status, permissions included, is the operator's view
	// of /readyz.
	const operator = "operator-token-of-at-least-32-bytes-0123456789"
	checkLeaks(t)
	ta := startTestApp(t, tune, map[string]string{"OPERATOR_TOKEN": operator})
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	t.Cleanup(cancel)
	if err := ta.gw.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	var ready struct {
		Operator struct {
			Gateway struct {
				Permissions struct {
					Missing []string
					Fix     string
				}
			}
		}
	}
	req, _ := http.NewRequest(http.MethodGet, ta.base+"/readyz", nil)
	req.Header.Set("Authorization", "Bearer "+operator)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&ready)
	resp.Body.Close()
	if p := ready.Operator.Gateway.Permissions; err != nil || len(p.Missing) != 1 || !strings.HasPrefix(p.Missing[0], "Move Members") || !strings.Contains(p.Fix, "oauth2/authorize") {
		t.Fatalf("/readyz permissions %+v (%v), want Move Members missing with the fix", p, err)
	}

	token := ta.devToken(t, "bob")
	room := fullRoomFor(t, ctx, ta, token)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	msg := roomStatus(t, sctx, ta, token, room, "the room is full")
	if !strings.Contains(msg, "Move Members") {
		t.Fatalf("room status %q does not say what to grant", msg)
	}
	for _, f := range ta.demo.Discord.Sent() {
		if f.Op == 4 && strings.Contains(string(f.Data), room) {
			t.Fatalf("op 4 %s sent for the full room", f.Data)
		}
	}
}

// TestFullRoomWithMoveMembers: with Move Members the bot joins a full
// room.
func TestFullRoomWithMoveMembers(t *testing.T) {
	ta, ctx := startMediaE2E(t, mediaTuning())
	token := ta.devToken(t, "bob")
	room := fullRoomFor(t, ctx, ta, token)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	roomStatus(t, sctx, ta, token, room, "the bot is in the voice channel")
	bot := ta.demo.Discord.Options().BotUserID
	if got := ta.demo.Discord.VoiceStates()[bot]; got != room {
		t.Fatalf("the bot is in %q, want the full room %s", got, room)
	}
}
