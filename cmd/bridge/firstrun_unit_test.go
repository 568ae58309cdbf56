package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/voicebridge/bridge/hub"
	"github.com/voicebridge/bridge/media"
)

// TestMediaBindsWhereHTTPDoes: the media ports follow LISTEN_ADDR's host,
// and loopback candidates are offered exactly when browser and bridge
// share the machine.
func TestMediaBindsWhereHTTPDoes(t *testing.T) {
	for _, c := range []struct {
		env      map[string]string
		host     string
		loopback bool
	}{
		{map[string]string{}, "", true}, // the embedded default
		{map[string]string{"LISTEN_ADDR": "127.0.0.1:8080"}, "127.0.0.1", true},
		{map[string]string{"DISCORD_BOT_TOKEN": "t", "DISCORD_GUILD_ID": "1", "ROOM_CATEGORY_ID": "2", "DEV_AUTH": "1"}, "", false},
		{map[string]string{"DISCORD_BOT_TOKEN": "t", "DISCORD_GUILD_ID": "1", "ROOM_CATEGORY_ID": "2", "DEV_AUTH": "1", "LISTEN_ADDR": "10.1.2.3:80"}, "10.1.2.3", false},
		{map[string]string{"DISCORD_BOT_TOKEN": "t", "DISCORD_GUILD_ID": "1", "ROOM_CATEGORY_ID": "2", "DEV_AUTH": "1", "ICE_PUBLIC_IP": "127.0.0.1"}, "", true},
		{map[string]string{"DISCORD_BOT_TOKEN": "t", "DISCORD_GUILD_ID": "1", "ROOM_CATEGORY_ID": "2", "DEV_AUTH": "1", "LISTEN_ADDR": "[::1]:8080"}, "::1", true},
	} {
		cfg, err := loadConfig(nil, envFrom(c.env))
		if err != nil {
			t.Fatalf("%v: %v", c.env, err)
		}
		if got := mediaHost(cfg); got != c.host {
			t.Errorf("%v: media binds on %q, want %q", c.env, got, c.host)
		}
		if got := sameMachine(cfg); got != c.loopback {
			t.Errorf("%v: loopback candidates %v, want %v", c.env, got, c.loopback)
		}
	}
}

// TestQuietHandler: below warn, the emulator's records come out at debug;
// warnings stay warnings.
func TestQuietHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(quietHandler{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})})
	log.Info("member added")
	log.Warn("member lost")
	if strings.Contains(buf.String(), "member added") || !strings.Contains(buf.String(), "level=WARN msg=\"member lost\"") {
		t.Errorf("at info level the quiet logger wrote:\n%s", buf.String())
	}
	buf.Reset()
	log = slog.New(quietHandler{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})}).With("component", "voiceemu")
	log.Info("member added")
	if !strings.Contains(buf.String(), `level=DEBUG msg="member added" component=voiceemu`) {
		t.Errorf("at debug level the quiet logger wrote:\n%s", buf.String())
	}
}

// TestPresence follows browsers in and out of calls from media's events;
// Discord participants and other events pass by.
func TestPresence(t *testing.T) {
	p := newPresence()
	browser := func(id, name string) media.Participant {
		return media.Participant{ID: id, UserID: "dev-" + name, Name: name, Kind: "browser"}
	}
	p.observe(media.EventParticipantJoined, media.ParticipantEvent{RoomID: "r1", Participant: browser("p2", "zoe")})
	p.observe(media.EventParticipantJoined, media.ParticipantEvent{RoomID: "r1", Participant: browser("p1", "ada")})
	p.observe(media.EventParticipantJoined, media.ParticipantEvent{RoomID: "r1", Participant: media.Participant{ID: "discord-1", Kind: "discord"}})
	p.observe(media.EventMute, media.ParticipantEvent{RoomID: "r2", Participant: browser("p3", "bob")})
	p.observe("voice.joined", map[string]string{"channelId": "r1"})
	want := []hub.Participant{{ID: "p1", UserID: "dev-ada", Name: "ada"}, {ID: "p2", UserID: "dev-zoe", Name: "zoe"}}
	if got := p.in("r1"); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("r1: %+v, want %+v", got, want)
	}
	if got := p.in("r2"); len(got) != 0 {
		t.Errorf("r2: %+v, want nobody (a mute event is not a join)", got)
	}
	p.observe(media.EventParticipantLeft, media.ParticipantEvent{RoomID: "r1", Participant: browser("p2", "zoe")})
	if got := p.in("r1"); len(got) != 1 || got[0] != want[0] {
		t.Errorf("after zoe left r1: %+v", got)
	}
	p.roomEnded("r1")
	if got := p.in("r1"); len(got) != 0 {
		t.Errorf("after r1 ended: %+v", got)
	}
}
