package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/gateway"
)

// TestRoomsLongRateLimitFailsFast: a 429 whose retry_after is longer
// than a request may wait (Discord's examples show minutes) fails the room
// request with ErrRateLimited naming the wait, instead of hanging it; the
// bucket is then honoured: a later create, and a list (the same endpoint,
// so the same discordgo bucket), fail the same way without a request to
// Discord, while other buckets go on. A global 429 holds every call.
func TestRoomsLongRateLimitFailsFast(t *testing.T) {
	f := start(t, discordemu.Options{IdentifyInterval: time.Nanosecond}, gateway.Options{})
	f.open(t)
	rooms := newRooms(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	guild := f.emu.Options().GuildID
	post := "POST /api/v10/guilds/" + guild + "/channels"

	mark := len(f.emu.RESTCalls())
	f.emu.Script429(http.MethodPost, "/guilds/", 2*time.Minute, false)
	_, err := rooms.CreateRoom(ctx, "standup", 0)
	if !errors.Is(err, gateway.ErrRateLimited) || !strings.Contains(err.Error(), "wait 2m0s") || !strings.Contains(err.Error(), "try again later") {
		t.Fatalf("CreateRoom under a 2-minute limit: %v, want ErrRateLimited naming the wait", err)
	}
	if _, err := rooms.CreateRoom(ctx, "standup", 0); !errors.Is(err, gateway.ErrRateLimited) {
		t.Fatalf("second CreateRoom: %v, want ErrRateLimited", err)
	}
	if _, err := rooms.ListRooms(ctx); !errors.Is(err, gateway.ErrRateLimited) {
		t.Fatalf("ListRooms in the limited bucket: %v, want ErrRateLimited", err)
	}
	if got := calls(f.emu, mark); !slices.Equal(got, []string{post + " 429"}) {
		t.Fatalf("REST calls %v, want the one 429: the limit is honoured without asking again", got)
	}
	if err := rooms.EndRoom(ctx, "999999999999999999"); !errors.Is(err, gateway.ErrNotFound) {
		t.Fatalf("EndRoom of an unknown channel, another bucket: %v, want ErrNotFound", err)
	}

	mark = len(f.emu.RESTCalls())
	f.emu.Script429("", "/channels/", time.Minute, true)
	if err := rooms.EndRoom(ctx, "999999999999999999"); !errors.Is(err, gateway.ErrRateLimited) {
		t.Fatalf("EndRoom under a global limit: %v", err)
	}
	if err := rooms.EndRoom(ctx, "999999999999999998"); !errors.Is(err, gateway.ErrRateLimited) || !strings.Contains(err.Error(), "wait 1m0s") {
		t.Fatalf("EndRoom of another channel under a global limit: %v, want ErrRateLimited", err)
	}
	if got := calls(f.emu, mark); len(got) != 1 || !strings.HasSuffix(got[0], " 429") {
		t.Fatalf("REST calls %v, want the one global 429", got)
	}
}
