package voice_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/emulator/voiceemu"
	"github.com/voicebridge/bridge/gateway"
	"github.com/voicebridge/bridge/voice"
)

// categoryID is the room category of the emulated guild; channelID and
// channel2ID are voice channels under it.
const (
	categoryID = "500000000000000005"
	channel2ID = "200000000000000006"
)

// mainGateway is the bot's main gateway in the voice tests: the Discord
// emulator, with the voice emulator (or another VoiceBackend) allocating
// voice servers, and the bridge's own gateway client, presented as the
// voice client's Signaler. It answers op 4 as Discord does: a repeated
// join of the same channel gets only a VOICE_STATE_UPDATE.
type mainGateway struct {
	emu *discordemu.Server
	gw  *gateway.Client
	// user is the bot user this gateway is for.
	user string
}

func newMainGateway(t *testing.T, backend discordemu.VoiceBackend, user string) *mainGateway {
	t.Helper()
	emu, err := discordemu.Start(discordemu.Options{
		BotUserID: user, GuildID: guildID, CategoryID: categoryID,
		VoiceChannels: []string{channelID, channel2ID}, Voice: backend,
		IdentifyInterval: time.Nanosecond, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emu.Close)
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	gw, err := gateway.New(gateway.Options{
		Token: emu.Options().Token, GuildID: guildID, CategoryID: categoryID,
		APIBase: emu.URL() + "/api/v10", HTTPClient: hc, Logger: testLogger(t),
		BackoffMin: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		InvalidSessionWait: [2]time.Duration{10 * time.Millisecond, 20 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gw.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := gw.Close(ctx); err != nil {
			t.Errorf("gateway Close: %v", err)
		}
	})
	if err := gw.WaitReady(ctx); err != nil {
		t.Fatalf("gateway WaitReady: %v", err)
	}
	return &mainGateway{emu: emu, gw: gw, user: user}
}

func (g *mainGateway) UpdateVoiceState(ctx context.Context, guildID, channelID string, selfMute, selfDeaf bool) error {
	return g.gw.UpdateVoiceState(ctx, guildID, channelID, selfMute, selfDeaf)
}

// SubscribeVoice relays the gateway client's updates as the voice
// client's type (the two packages do not share one).
func (g *mainGateway) SubscribeVoice(guildID string) (<-chan voice.VoiceUpdate, func()) {
	in, unsub := g.gw.SubscribeVoice(guildID)
	out := make(chan voice.VoiceUpdate, cap(in))
	done := make(chan struct{})
	go func() {
		defer close(out)
		for {
			select {
			case u, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- voice.VoiceUpdate(u):
				case <-done:
					return
				}
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return out, func() { once.Do(func() { close(done); unsub() }) }
}

// voiceStateUpdates lists the op 4 payloads the bot sent, in order: the
// channel of each ("" for a leave).
func (g *mainGateway) voiceStateUpdates(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, f := range g.emu.Sent() {
		if f.Op != 4 {
			continue
		}
		var d struct {
			ChannelID *string `json:"channel_id"`
		}
		if err := json.Unmarshal(f.Data, &d); err != nil {
			t.Fatalf("op 4 payload %s: %v", f.Data, err)
		}
		ch := ""
		if d.ChannelID != nil {
			ch = *d.ChannelID
		}
		out = append(out, ch)
	}
	return out
}

// counts is how many op 4 joins and leaves the bot sent.
func (g *mainGateway) counts(t *testing.T) (joins, leaves int) {
	for _, ch := range g.voiceStateUpdates(t) {
		if ch == "" {
			leaves++
		} else {
			joins++
		}
	}
	return joins, leaves
}

// move moves the bot to another voice server as Discord does: with null,
// a VOICE_SERVER_UPDATE with a null endpoint (the server is being
// reallocated); otherwise a new allocation, which closes the voice
// connection with 4014 and is announced by a VOICE_SERVER_UPDATE.
func (g *mainGateway) move(t *testing.T, null bool) {
	t.Helper()
	if null {
		g.emu.SendVoiceServerUpdate(guildID, nil, "")
		return
	}
	if err := g.emu.MoveVoiceServer(); err != nil {
		t.Fatal(err)
	}
}

// kick disconnects the bot from voice as a moderator would: a
// VOICE_STATE_UPDATE with a null channel, and the voice server closes
// with 4014.
func (g *mainGateway) kick(t *testing.T) {
	t.Helper()
	if err := g.emu.SetVoiceState(g.user, ""); err != nil {
		t.Fatal(err)
	}
}

var _ discordemu.VoiceBackend = (*voiceemu.Server)(nil)
