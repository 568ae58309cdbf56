package main

// Browser tests of the SDK itself (web/sdk/bridge.js), in headless
// Chromium against the embedded default: the page imports /sdk/bridge.js
// and drives it as an app would. Every REST answer and /api/ws message
// they cause is checked against the protocol (protocol_check_test.go).

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/voicebridge/bridge/emulator"
)

// sdkPage opens the bridge's origin in a tab and imports the SDK into
// window.T: {sdk, bridges, calls, seen} for the test's expressions.
func sdkPage(t *testing.T, tab context.Context, base, name string) *page {
	t.Helper()
	p := &page{t: t, ctx: tab, name: name}
	p.do("open the bridge's origin", 15*time.Second, chromedp.Navigate(base+"/"), chromedp.WaitReady(css("body")))
	v := eval[float64](p, `(async () => {
		const sdk = await import('/sdk/bridge.js');
		window.T = { sdk, bridges: {}, calls: {}, seen: [], errors: [] };
		return sdk.protocolVersion;
	})()`)
	if v != 1 {
		t.Fatalf("the SDK says protocol version %v, want 1", v)
	}
	return p
}

// sdkJSON evaluates an async JavaScript body and decodes what it returns.
func sdkJSON[T any](p *page, body string) T {
	p.t.Helper()
	raw := eval[string](p, `(async () => { const r = await (async () => {`+body+`})(); return JSON.stringify(r === undefined ? null : r); })()`)
	var out T
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		p.t.Fatalf("%s: %v: %s", p.name, err, raw)
	}
	return out
}

// TestSDKAuthFailure: a refused token makes connect reject with code
// unauthorized, the socket stops retrying, and REST answers 401
// invalid_token as an ApiError.
func TestSDKAuthFailure(t *testing.T) {
	checkLeaks(t)
	st := startBrowserApp(t)
	p := sdkPage(t, startBrowser(t), st.base, "sdk")
	type result struct {
		ConnectErr, Reason, State, RestName, RestCode string
		RestStatus                                    int
	}
	r := sdkJSON[result](p, `
		const b = new T.sdk.Bridge({ token: 'not-a-token' });
		let reason = null;
		b.addEventListener('unauthorized', (e) => { reason = e.detail.reason; });
		let connectErr = '';
		try { await b.connect(); } catch (e) { connectErr = e.code; }
		const out = { connectErr, reason, state: b.state };
		try { await b.listRooms(); } catch (e) { Object.assign(out, { restName: e.name, restStatus: e.status, restCode: e.code }); }
		return out;`)
	if r.ConnectErr != "unauthorized" || !strings.Contains(r.Reason, "JWS") || r.State != "closed" {
		t.Errorf("socket with a bad token: %+v; want connect to fail unauthorized, the reason naming the token's shape, state closed", r)
	}
	if r.RestName != "ApiError" || r.RestStatus != http.StatusUnauthorized || r.RestCode != "invalid_token" {
		t.Errorf("REST with a bad token: %+v; want ApiError 401 invalid_token", r)
	}
	if n := st.hub.Clients(); n != 0 {
		t.Errorf("%d hub clients after a refused token, want 0", n)
	}
}

// TestSDKRoomEvents: one user creates and ends a room through the SDK;
// another user's Bridge sees room.created and room.deleted, once each, and
// the room in its list between the two.
func TestSDKRoomEvents(t *testing.T) {
	checkLeaks(t)
	st := startBrowserApp(t)
	p := sdkPage(t, startBrowser(t), st.base, "sdk")
	eval[bool](p, `(async () => {
		const token = (name) => async () => (await T.sdk.devToken(name)).token;
		const a = new T.sdk.Bridge({ token: token('alice') });
		const b = new T.sdk.Bridge({ token: token('bob') });
		T.bridges = { a, b };
		for (const ev of ['room.created', 'room.deleted']) {
			b.addEventListener(ev, (e) => T.seen.push({ ev, name: e.detail.name, channelId: e.detail.channelId, userLimit: e.detail.userLimit }));
		}
		await Promise.all([a.connect(), b.connect()]);
		T.room = await a.createRoom('sdk standup', { userLimit: 3 });
		return true;
	})()`)
	p.waitJS("room.created seen", 10*time.Second, `T.seen.some((s) => s.ev === 'room.created' && s.channelId === T.room.channelId)`)
	listed := eval[bool](p, `(async () => (await T.bridges.b.listRooms()).some((r) => r.channelId === T.room.channelId && r.name === 'sdk standup' && r.userLimit === 3))()`)
	if !listed {
		t.Error("the created room is not in the other user's list")
	}
	eval[bool](p, `(async () => { await T.bridges.a.endRoom(T.room.channelId); return true; })()`)
	p.waitJS("room.deleted seen", 10*time.Second, `T.seen.some((s) => s.ev === 'room.deleted' && s.channelId === T.room.channelId)`)
	type seen struct {
		Ev, Name, ChannelID string
		UserLimit           int
	}
	got := sdkJSON[[]seen](p, `return T.seen.filter((s) => s.channelId === T.room.channelId);`)
	if len(got) != 2 || got[0].Ev != "room.created" || got[1].Ev != "room.deleted" || got[0].Name != "sdk standup" || got[0].UserLimit != 3 {
		t.Errorf("events about the room: %+v; want room.created then room.deleted, once each", got)
	}
	if n := eval[float64](p, `(async () => (await T.bridges.b.listRooms()).filter((r) => r.channelId === T.room.channelId).length)()`); n != 0 {
		t.Error("the ended room is still listed")
	}
}

// joinLobby joins the Lobby through the SDK with the default microphone
// and no camera, and waits for the call to connect.
func joinLobby(p *page, lobby string) {
	p.t.Helper()
	eval[bool](p, `(async () => {
		const b = new T.sdk.Bridge({ token: async () => (await T.sdk.devToken('carol')).token });
		T.bridges.c = b;
		b.addEventListener('ready', () => { T.readies = (T.readies || 0) + 1; });
		await b.connect();
		const call = await b.join(`+jsString(lobby)+`, { microphone: '', camera: 'none' });
		T.calls.c = call;
		call.addEventListener('ended', (e) => { T.ended = e.detail; });
		return true;
	})()`)
	p.waitJS("call connected", 20*time.Second, `T.calls.c.state === 'connected'`)
}

// sdkEnergy is the audio energy received so far from a participant's stream.
func sdkEnergy(p *page, participantID string) float64 {
	p.t.Helper()
	return eval[float64](p, `(async () => {
		const call = T.calls.c; const s = await call.stats();
		const who = call.list().find((x) => x.id === `+jsString(participantID)+`);
		const st = s && who && who.stream && s.inbound.find((x) => x.kind === 'audio' && x.streamId === who.stream.id);
		return st ? st.totalAudioEnergy : 0;
	})()`)
}

// waitHeard waits until the participant's audio energy grows past what it
// is now: the talker is heard (the SDK plays the stream).
func waitHeard(p *page, participantID, what string) {
	p.t.Helper()
	before := sdkEnergy(p, participantID)
	p.waitJS(what, 20*time.Second, `(async () => {
		const call = T.calls.c; const s = await call.stats();
		const who = call.list().find((x) => x.id === `+jsString(participantID)+`);
		const st = s && who && who.stream && s.inbound.find((x) => x.kind === 'audio' && x.streamId === who.stream.id);
		return !!st && st.totalAudioEnergy > `+fmt.Sprint(before)+`;
	})()`)
}

// TestSDKJoinHearMuteVolumeAndRestartICE joins the Lobby through the SDK:
// the talking Discord member is listed by name and kind, shown speaking and
// heard; mute reaches another hub client as a mute event; a volume is
// applied to the SDK's player; a network change restarts ICE (new
// credentials on both sides) and the talker is heard again.
func TestSDKJoinHearMuteVolumeAndRestartICE(t *testing.T) {
	checkLeaks(t)
	st := startBrowserApp(t)
	watcher := st.dialHub(t, st.devToken(t, "watcher"))
	p := sdkPage(t, startBrowser(t), st.base, "sdk")
	joinLobby(p, st.demo.Lobby.ID)

	ada := "discord-" + emulator.DemoTalkerID
	p.waitJS("Ada listed as a speaking Discord member", 20*time.Second,
		`T.calls.c.list().some((x) => x.id === `+jsString(ada)+` && x.kind === 'discord' && x.name.startsWith('Ada') && x.speaking && !!x.stream)`)
	waitHeard(p, ada, "Ada heard")

	// Mute: the local track stops, and others are told.
	eval[bool](p, `(async () => { T.calls.c.setMuted(true); return true; })()`)
	if on := eval[bool](p, `T.calls.c.local.getAudioTracks().every((t) => !t.enabled)`); !on {
		t.Error("the microphone track is still enabled after setMuted(true)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mutedEvent := func() bool {
		watcher.mu.Lock()
		defer watcher.mu.Unlock()
		for _, e := range watcher.events {
			var pl struct {
				Participant struct {
					Name  string `json:"name"`
					Muted bool   `json:"muted"`
				} `json:"participant"`
			}
			if e.Event == "mute" && json.Unmarshal(e.Payload, &pl) == nil && pl.Participant.Name == "carol" && pl.Participant.Muted {
				return true
			}
		}
		return false
	}
	if err := watcher.waitFor(ctx, mutedEvent); err != nil {
		t.Errorf("no mute event for carol: %v (events %v)", err, watcher.eventNames())
	}

	// Volume: the SDK plays Ada at the volume set.
	vol := eval[float64](p, `(async () => {
		const call = T.calls.c; call.setVolume(`+jsString(ada)+`, 0.25);
		const who = call.list().find((x) => x.id === `+jsString(ada)+`);
		return call.players.get(who.stream.id).volume;
	})()`)
	if vol != 0.25 {
		t.Errorf("Ada's player volume is %v after setVolume 0.25", vol)
	}

	// A network change: ICE restarts with new credentials on both sides.
	ufrags := `(() => { const pc = T.calls.c.pc; const u = (d) => (d && d.sdp.match(/a=ice-ufrag:(\S+)/) || [])[1] || '';
		return u(pc.remoteDescription) + ' ' + u(pc.localDescription); })()`
	before := eval[string](p, ufrags)
	eval[bool](p, `(async () => { window.dispatchEvent(new Event('online')); return true; })()`)
	p.waitJS("new ICE credentials on both sides", 20*time.Second, `(() => {
		const [r, l] = `+ufrags+`.split(' '); const [r0, l0] = `+jsString(before)+`.split(' ');
		return r !== r0 && l !== l0 && T.calls.c.pc.connectionState === 'connected'; })()`)
	if trace := eval[string](p, `T.calls.c.trace.filter((l) => l.includes('restart')).join('\n')`); !strings.Contains(trace, "out restart-ice") {
		t.Errorf("no restart-ice sent on the network change; trace:\n%s", trace)
	}
	waitHeard(p, ada, "Ada heard after the ICE restart")
	eval[bool](p, `(async () => { T.bridges.c.disconnect(); return true; })()`)
}

// startAppAt runs the embedded default for the browser on addr; stop shuts
// it down (also at cleanup, if the test did not).
func startAppAt(t *testing.T, addr string) (ta *testApp, stop func()) {
	t.Helper()
	cfg, err := loadConfig(nil, envFrom(map[string]string{"LISTEN_ADDR": addr, "ICE_UDP_PORT": "0", "LOG_LEVEL": "warn"}))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := newTunedApp(context.Background(), cfg, log, tuning{media: loopbackMedia})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}
	t.Cleanup(stop)
	return &testApp{app: a, base: "http://" + a.Addr()}, stop
}

// TestSDKReconnectsAfterBridgeRestart: the bridge stops under a call and
// starts again on the same address. The SDK's socket comes back by itself
// (a fresh token from its token function), the call tries its room again
// and is told it is gone (the new emulator made new rooms), and joining the
// new Lobby hears the talker again.
func TestSDKReconnectsAfterBridgeRestart(t *testing.T) {
	checkLeaks(t)
	first, stopFirst := startAppAt(t, "127.0.0.1:0")
	addr := first.Addr()
	p := sdkPage(t, startBrowser(t), first.base, "sdk")
	joinLobby(p, first.demo.Lobby.ID)
	ada := "discord-" + emulator.DemoTalkerID
	p.waitJS("Ada's stream", 20*time.Second, `T.calls.c.list().some((x) => x.id === `+jsString(ada)+` && !!x.stream)`)
	waitHeard(p, ada, "Ada heard")

	stopFirst()
	p.waitJS("the SDK notices", 10*time.Second, `T.bridges.c.state === 'retrying'`)
	second, _ := startAppAt(t, addr)
	p.waitJS("the socket is back", 30*time.Second, `T.bridges.c.state === 'open' && T.readies === 2`)
	p.waitJS("the old room is gone", 15*time.Second, `!!T.ended`)
	if code := eval[string](p, `T.ended.code`); code != "unknown_room" {
		t.Errorf("the call of the old room ended with %q, want unknown_room", code)
	}
	eval[bool](p, `(async () => {
		T.calls.c = await T.bridges.c.join(`+jsString(second.demo.Lobby.ID)+`, { microphone: '', camera: 'none' });
		return true;
	})()`)
	p.waitJS("call in the new Lobby connected", 20*time.Second, `T.calls.c.state === 'connected'`)
	p.waitJS("Ada's stream again", 20*time.Second, `T.calls.c.list().some((x) => x.id === `+jsString(ada)+` && !!x.stream)`)
	waitHeard(p, ada, "Ada heard after the restart")
	eval[bool](p, `(async () => { T.bridges.c.disconnect(); return true; })()`)
}

// TestExampleEmbedsCallFromAnotherOrigin serves web/examples from a second
// origin, as an app would, with that origin in ALLOWED_ORIGINS. The app's
// backend (this test) gets a token and picks the room; the page imports
// the SDK from the bridge, joins the Lobby and hears the talker.
func TestExampleEmbedsCallFromAnotherOrigin(t *testing.T) {
	checkLeaks(t)
	files := http.FileServer(http.Dir(filepath.Join("..", "..", "web", "examples")))
	appSrv := httptest.NewServer(files)
	defer appSrv.Close()
	var tune tuning
	tune.media = loopbackMedia
	st := startTestApp(t, tune, map[string]string{"ALLOWED_ORIGINS": appSrv.URL})
	token := st.devToken(t, "dora")

	p := &page{t: t, ctx: startBrowser(t), name: "example"}
	frag := "#bridge=" + st.base + "&room=" + st.demo.Lobby.ID + "&token=" + token
	p.do("open the example", 15*time.Second, chromedp.Navigate(appSrv.URL+"/embed.html"+frag), chromedp.WaitReady(css("body")))
	p.waitJS("the example's call connected", 25*time.Second, `!!window.example && window.example.call && window.example.call.state === 'connected'`)
	ada := "discord-" + emulator.DemoTalkerID
	p.waitJS("Ada shown in the example", 20*time.Second,
		`[...document.querySelectorAll('[data-participant]')].some((li) => li.dataset.participant === `+jsString(ada)+`)`)
	p.waitJS("Ada heard in the example", 20*time.Second, `(async () => {
		const call = window.example.call; const s = await call.stats();
		const who = call.list().find((x) => x.id === `+jsString(ada)+`);
		const st = s && who && who.stream && s.inbound.find((x) => x.kind === 'audio' && x.streamId === who.stream.id);
		return !!st && st.totalAudioEnergy > 0;
	})()`)
	if origin := eval[string](p, `location.origin`); origin == st.base {
		t.Fatalf("the example ran on the bridge's origin %s", origin)
	}

	// Without the origin in ALLOWED_ORIGINS the bridge refuses the socket.
	other := startBrowserApp(t)
	q := &page{t: t, ctx: newTab(t, p.ctx), name: "refused"}
	q.do("open the example against a bridge that does not allow it", 15*time.Second,
		chromedp.Navigate(appSrv.URL+"/embed.html#bridge="+other.base+"&room="+other.demo.Lobby.ID+"&token="+other.devToken(t, "eve")),
		chromedp.WaitReady(css("body")))
	q.waitJS("the example says it cannot connect", 15*time.Second, `!!window.example && window.example.bridge.state === 'retrying'`)
	if n := other.hub.Clients(); n != 0 {
		t.Errorf("%d hub clients on the bridge that does not allow the origin", n)
	}
	eval[bool](p, `(async () => { window.example.bridge.disconnect(); return true; })()`)
	eval[bool](q, `(async () => { window.example.bridge.disconnect(); return true; })()`)
}
