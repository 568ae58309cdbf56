package main

// Real-browser tests of the web UI: Debian's Chromium, driven headless with
// chromedp, with a fake camera and microphone (docs: browser-testing.md).
//
// The bridge under test is the embedded default started in process
// (startTestApp): the Discord emulator with its demo members (Ada talks,
// Test Pattern shows video, Echo plays back what it hears), the gateway
// client, the hub with dev auth, media with the voice client as its
// Discord leg, and the web UI.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voicebridge/bridge/emulator"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"github.com/pion/opus"
	"go.uber.org/goleak"

	"github.com/voicebridge/bridge/hub"
	"github.com/voicebridge/bridge/media"
	"github.com/voicebridge/bridge/web"
)

// chromiumPath is Debian's Chromium (apt-get install chromium).
const chromiumPath = "/usr/bin/chromium"

// screenshotDir is where the tests leave pictures of the page (gitignored).
var screenshotDir = filepath.Join("..", "..", "testoutput", "screenshots")

// ---------------------------------------------------------------- stack

// startBrowserApp runs the embedded default (startTestApp) with media kept
// on loopback and a short grace period.
func startBrowserApp(t *testing.T) *testApp {
	t.Helper()
	var tune tuning
	tune.media = func(o *media.Options) {
		o.ICEUDPListen = "127.0.0.1:0"
		o.IncludeLoopback = true
		o.IPFilter = func(ip net.IP) bool { return ip.IsLoopback() }
		o.InterfaceFilter = func(name string) bool { return name == "lo" }
		o.Grace = time.Second
	}
	return startTestApp(t, tune, nil)
}

// ---------------------------------------------------------------- browser

// startBrowser launches headless Chromium with a fake camera and
// microphone; the returned context drives its first tab.
func startBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("these tests need Debian's Chromium at %s (apt-get install -y chromium): %v", chromiumPath, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "Translate,WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.WindowSize(1280, 800),
	)
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	// The first Run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	watchTab(t, ctx)
	return ctx
}

// newTab opens another tab (its own sessionStorage) in the same browser.
func newTab(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("new tab: %v", err)
	}
	t.Cleanup(cancel)
	watchTab(t, ctx)
	return ctx
}

// page is one tab and the test that drives it.
type page struct {
	t    *testing.T
	ctx  context.Context
	name string
}

// do runs steps within timeout; on failure it reports what the page shows.
func (p *page) do(what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.fail(what, err)
	}
}

// waitJS waits until the JavaScript expression is truthy.
func (p *page) waitJS(what string, timeout time.Duration, expr string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, timeout+time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(50*time.Millisecond)))
	if err != nil {
		p.fail(what, err)
	}
}

// eval evaluates expr (awaiting a promise) into T.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.fail("evaluate "+expr, err)
	}
	return v
}

func (p *page) fail(what string, err error) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](
		`JSON.stringify(window.__bridge ? window.__bridge.state() : null) + "\n--- page text ---\n" + document.body.innerText`))
	p.screenshot("failed-" + p.name)
	p.t.Fatalf("%s: %s: %v\npage state: %s", p.name, what, err, state)
}

// screenshot writes the page as PNG to testoutput/screenshots/<name>.png.
func (p *page) screenshot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	p.writeShot(name, png)
}

func (p *page) writeShot(name string, png []byte) {
	p.t.Helper()
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(screenshotDir, name+".png"), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// checkErrors fails the test if the page recorded script errors, refused
// promises or Content-Security-Policy violations.
func (p *page) checkErrors() {
	p.t.Helper()
	for _, e := range eval[[]string](p, `window.__bridge.errors`) {
		p.t.Errorf("%s: the page ran into: %s", p.name, e)
	}
}

// checkLabels fails the test if a visible control has no accessible name
// (a label, aria-label, aria-labelledby or text).
func (p *page) checkLabels(where string) {
	p.t.Helper()
	bad := eval[[]string](p, `[...document.querySelectorAll('button, input, select, textarea, [role=button]')]
		.filter(e => e.getClientRects().length > 0 && e.type !== 'hidden')
		.filter(e => !(e.getAttribute('aria-label') || '').trim()
			&& !(e.getAttribute('aria-labelledby') || '').trim()
			&& !(e.labels && [...e.labels].some(l => l.textContent.trim()))
			&& !(['BUTTON'].includes(e.tagName) && e.textContent.trim()))
		.map(e => e.outerHTML.slice(0, 120))`)
	for _, b := range bad {
		p.t.Errorf("%s: %s: control without an accessible name: %s", p.name, where, b)
	}
}

// viewportShot writes what the screen shows (fixed bars in place) as PNG.
func (p *page) viewportShot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	p.writeShot(name, png)
}

func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

// testid selects by data-testid.
func testid(id string) chromedp.CSS { return css(`[data-testid="` + id + `"]`) }

// jsString quotes s for a JavaScript expression.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// signIn signs in with dev auth and waits for the room list.
func (p *page) signIn(base, name string) {
	p.t.Helper()
	p.do("open the page", 15*time.Second, chromedp.Navigate(base+"/"), chromedp.WaitVisible(testid("signin-name")))
	p.do("sign in as "+name, 15*time.Second,
		chromedp.SendKeys(testid("signin-name"), name),
		chromedp.Click(testid("signin-submit")),
		chromedp.WaitVisible(testid("view-rooms")))
	p.waitJS("hub socket open", 10*time.Second, `window.__bridge.hubState === 'open'`)
}

// roomSel selects a room of the list by name.
func roomSel(name string) string {
	return `[...document.querySelectorAll('[data-testid=room-item]')].find(li => li.querySelector('[data-testid=room-name]').textContent === ` + jsString(name) + `)`
}

// createRoom creates a room through the form and returns its channel id.
func (p *page) createRoom(name string, limit int) string {
	p.t.Helper()
	p.do("create room "+name, 15*time.Second,
		chromedp.SetValue(testid("create-name"), name),
		chromedp.SetValue(testid("create-limit"), fmt.Sprint(limit)),
		chromedp.Click(testid("create-submit")))
	p.waitJS("room "+name+" listed", 10*time.Second, `!!(`+roomSel(name)+`)`)
	return eval[string](p, roomSel(name)+`.dataset.roomId`)
}

// join opens the device check for the room and joins the call.
func (p *page) join(roomName string) {
	p.t.Helper()
	p.do("open "+roomName, 10*time.Second, chromedp.Evaluate[chromedp.Void](roomSel(roomName)+`.querySelector('[data-testid=room-join]').click()`))
	p.do("device check", 15*time.Second, chromedp.WaitVisible(testid("prejoin-preview")), chromedp.WaitEnabled(testid("prejoin-join")))
	p.do("join "+roomName, 10*time.Second, chromedp.Click(testid("prejoin-join")), chromedp.WaitVisible(testid("view-call")))
}

// inboundStat is one inbound-rtp summary of window.__bridge.stats().
type inboundStat struct {
	Kind             string  `json:"kind"`
	StreamID         string  `json:"streamId"`
	PacketsReceived  float64 `json:"packetsReceived"`
	TotalAudioEnergy float64 `json:"totalAudioEnergy"`
	FramesDecoded    float64 `json:"framesDecoded"`
}

// inbound reads the page's inbound stream statistics now.
func (p *page) inbound(streamID, kind string) inboundStat {
	p.t.Helper()
	var s inboundStat
	raw := eval[string](p, `(async () => {
		const st = await window.__bridge.stats();
		const s = st && st.inbound.find(x => x.streamId === `+jsString(streamID)+` && x.kind === `+jsString(kind)+`);
		return JSON.stringify(s || {});
	})()`)
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		p.t.Fatal(err)
	}
	return s
}

// inboundCond is a page expression: the stream's inbound statistics
// satisfy cond (JavaScript over s).
func inboundCond(streamID, kind, cond string) string {
	return `(() => { const st = window.__bridge.lastStats; if (!st) return false;
		const s = st.inbound.find(x => x.streamId === ` + jsString(streamID) + ` && x.kind === ` + jsString(kind) + `);
		return !!s && (` + cond + `); })()`
}

// waitGrowth waits until the stream's counter is above what it was now,
// and returns the two values.
func (p *page) waitGrowth(what, streamID, kind, field string, timeout time.Duration) (before, after float64) {
	p.t.Helper()
	p.waitJS(what+" starts", timeout, inboundCond(streamID, kind, `s.`+field+` > 0`))
	read := func() float64 {
		s := p.inbound(streamID, kind)
		switch field {
		case "packetsReceived":
			return s.PacketsReceived
		case "totalAudioEnergy":
			return s.TotalAudioEnergy
		case "framesDecoded":
			return s.FramesDecoded
		}
		p.t.Fatalf("unknown field %s", field)
		return 0
	}
	before = read()
	p.waitJS(what+" grows", timeout, inboundCond(streamID, kind, fmt.Sprintf(`s.%s > %v`, field, before)))
	return before, read()
}

// ------------------------------------------------------------------ tests

// TestBrowserCallWithDiscordMembers signs in, creates a room, joins the
// Lobby and checks that the talking member is heard and shown speaking,
// that the echo member plays the browser's microphone back, and that the
// members on the Discord side receive the browser's microphone (decoded:
// not silence).
func TestBrowserCallWithDiscordMembers(t *testing.T) {
	checkLeaks(t)
	st := startBrowserApp(t)
	// Test Pattern hears what the bot sends: the browser's microphone.
	heard := make(chan []byte, 1000)
	botID := st.demo.Discord.Options().BotUserID
	st.demo.Camera.OnOpus(func(from string, frame []byte) {
		if from == botID {
			select {
			case heard <- append([]byte(nil), frame...):
			default:
			}
		}
	})
	p := &page{t: t, ctx: startBrowser(t), name: "alice"}
	p.signIn(st.base, "alice")
	id := p.createRoom("Standup", 5)
	if id == "" {
		t.Fatal("created room has no channel id in the list")
	}
	p.waitJS("Lobby listed with its members", 10*time.Second, roomSel("Lobby")+`?.textContent.includes('Ada (talks)')`)
	p.screenshot("rooms")

	p.join("Lobby")
	joined := time.Now()
	talker := "discord-" + emulator.DemoTalkerID
	echo := "discord-" + emulator.DemoEchoID

	// (1) Within 10 s: Ada's audio arrives and is played (energy grows).
	budget := func() time.Duration { return 10*time.Second - time.Since(joined) }
	b, a := p.waitGrowth("talker packets", talker, "audio", "packetsReceived", budget())
	t.Logf("talker packets %v -> %v", b, a)
	b, a = p.waitGrowth("talker audio energy", talker, "audio", "totalAudioEnergy", budget())
	t.Logf("talker totalAudioEnergy %.3g -> %.3g", b, a)
	p.waitJS("talker tile shows speaking", budget(),
		`document.querySelector('[data-testid=tile][data-participant-id=`+jsString(talker)+`][data-speaking=true]') !== null`)
	t.Logf("talker heard and shown speaking %v after joining", time.Since(joined).Round(time.Millisecond))

	// The echo member plays back what it heard from the browser, 1 s later.
	b, a = p.waitGrowth("echo audio energy", echo, "audio", "totalAudioEnergy", 10*time.Second)
	t.Logf("echo totalAudioEnergy %.3g -> %.3g", b, a)

	// The camera member's VP8 test pattern comes through Discord's path
	// (voice emulator, our voice client, media) and is decoded.
	camera := "discord-" + emulator.DemoCameraID
	b, a = p.waitGrowth("camera member's video", camera, "video", "framesDecoded", 10*time.Second)
	t.Logf("camera member framesDecoded %v -> %v", b, a)

	// The call is end-to-end encrypted: the page shows the voice privacy
	// code, the same one the Discord members compute for the call.
	want := st.demo.Talker.PrivacyCode()
	if len(strings.ReplaceAll(want, " ", "")) != 30 {
		t.Fatalf("the talker's privacy code is %q, want 30 digits: is the Lobby's call not under DAVE?", want)
	}
	var groups []string
	for i := 0; i < len(want); i += 5 {
		groups = append(groups, want[i:min(i+5, len(want))])
	}
	shown := strings.Join(groups, " ")
	p.waitJS("privacy code shown", 10*time.Second,
		`!document.querySelector('[data-testid=privacy]').hidden && document.querySelector('[data-testid=privacy-code]').textContent === `+jsString(shown))
	t.Logf("privacy code on the page: %s", shown)
	p.screenshot("call")

	// (2) The Discord side hears the browser's fake microphone (beeps).
	dec, err := opus.NewDecoderWithOutput(48000, 1)
	if err != nil {
		t.Fatal(err)
	}
	pcm := make([]float32, 5760)
	deadline := time.After(10 * time.Second)
	var loudest float64
	frames := 0
	for loudest < 0.05 {
		select {
		case f := <-heard:
			frames++
			n, err := dec.DecodeToFloat32(f, pcm)
			if err != nil {
				t.Fatalf("decode the Opus frame Discord received: %v", err)
			}
			if r := rms(pcm[:n]); r > loudest {
				loudest = r
			}
		case <-deadline:
			t.Fatalf("Discord members heard %d frames from the bot, loudest RMS %.4f: the browser's microphone did not reach them", frames, loudest)
		}
	}
	t.Logf("Discord member heard the browser: %d frames, RMS %.3f", frames, loudest)

	// A phone-sized screen of the same call.
	p.do("phone size", 5*time.Second, chromedp.EmulateViewport(390, 844))
	p.waitJS("call fits a phone's width", 5*time.Second,
		`document.documentElement.scrollWidth <= innerWidth && [...document.querySelectorAll('[data-testid=tile], [data-testid=call-leave]')].every(e => e.getBoundingClientRect().right <= innerWidth)`)
	p.viewportShot("call-phone")

	p.do("leave", 5*time.Second, chromedp.Click(testid("call-leave")), chromedp.WaitVisible(testid("view-rooms")))
	p.checkErrors()
}

func rms(x []float32) float64 {
	if len(x) == 0 {
		return 0
	}
	var sum float64
	for _, v := range x {
		sum += float64(v) * float64(v)
	}
	return math.Sqrt(sum / float64(len(x)))
}

// TestBrowserTwoPagesSeeEachOther puts two people in one room: each
// decodes the other's video and shows their tile; when one leaves, the
// other's tile for them goes within 2 s.
func TestBrowserTwoPagesSeeEachOther(t *testing.T) {
	checkLeaks(t)
	st := startBrowserApp(t)
	browser := startBrowser(t)
	alice := &page{t: t, ctx: browser, name: "alice"}
	bob := &page{t: t, ctx: newTab(t, browser), name: "bob"}
	alice.signIn(st.base, "alice")
	bob.signIn(st.base, "bob")
	alice.createRoom("Pair", 0)
	bob.waitJS("bob sees the new room", 5*time.Second, `!!(`+roomSel("Pair")+`)`)
	alice.join("Pair")
	bob.join("Pair")

	tileOf := func(p *page, name string) string {
		return `[...document.querySelectorAll('[data-testid=tile][data-self=false]')].find(t => t.querySelector('[data-testid=tile-name]').textContent === ` + jsString(name) + `)`
	}
	for _, c := range []struct {
		p     *page
		other string
	}{{alice, "bob"}, {bob, "alice"}} {
		c.p.waitJS(c.other+"'s tile", 10*time.Second, `!!(`+tileOf(c.p, c.other)+`)`)
		stream := eval[string](c.p, tileOf(c.p, c.other)+`.dataset.streamId || ''`)
		if stream == "" {
			c.p.waitJS(c.other+"'s stream", 10*time.Second, `!!(`+tileOf(c.p, c.other)+`).dataset.streamId`)
			stream = eval[string](c.p, tileOf(c.p, c.other)+`.dataset.streamId`)
		}
		b, a := c.p.waitGrowth(c.other+"'s video", stream, "video", "framesDecoded", 10*time.Second)
		t.Logf("%s decodes %s's video: framesDecoded %v -> %v", c.p.name, c.other, b, a)
		c.p.waitJS(c.other+"'s tile shows video", 5*time.Second, tileOf(c.p, c.other)+`.dataset.video === 'true'`)
	}
	alice.screenshot("call-two-people")
	alice.checkLabels("call view")

	// Mute and camera off show on the other page.
	bob.do("bob mutes", 5*time.Second, chromedp.Click(testid("call-mute")))
	alice.waitJS("bob shown muted", 2*time.Second,
		tileOf(alice, "bob")+`.dataset.muted === 'true' && `+tileOf(alice, "bob")+`.querySelector('[data-testid=tile-tags]').textContent.includes('Muted')`)
	if pressed := eval[string](bob, `document.querySelector('[data-testid=call-mute]').getAttribute('aria-pressed')`); pressed != "true" {
		t.Errorf("bob's mute button aria-pressed = %q after muting, want true", pressed)
	}
	bob.do("bob turns the camera off", 5*time.Second, chromedp.Click(testid("call-camera")))
	alice.waitJS("bob's video hidden", 2*time.Second, tileOf(alice, "bob")+`.dataset.video === 'false'`)
	bob.do("bob turns the camera on", 5*time.Second, chromedp.Click(testid("call-camera")))
	alice.waitJS("bob's video back", 5*time.Second, tileOf(alice, "bob")+`.dataset.video === 'true'`)

	bob.do("bob leaves", 5*time.Second, chromedp.Click(testid("call-leave")))
	alice.waitJS("bob's tile gone within 2 s", 2*time.Second, `!(`+tileOf(alice, "bob")+`)`)
	alice.checkErrors()
	bob.checkErrors()
}

// TestBrowserEndRoomDisconnectsCall ends a room from one page: the other
// page's list loses it and its call ends with a clear message.
func TestBrowserEndRoomDisconnectsCall(t *testing.T) {
	checkLeaks(t)
	st := startBrowserApp(t)
	browser := startBrowser(t)
	alice := &page{t: t, ctx: browser, name: "alice"}
	bob := &page{t: t, ctx: newTab(t, browser), name: "bob"}
	alice.signIn(st.base, "alice")
	bob.signIn(st.base, "bob")
	id := alice.createRoom("Short-lived", 0)
	bob.waitJS("bob sees the new room", 5*time.Second, `!!(`+roomSel("Short-lived")+`)`)
	// Only its creator (or an admin) is offered End.
	if got := eval[bool](bob, `!!`+roomSel("Short-lived")+`.querySelector('[data-testid=room-end]')`); got {
		t.Error("bob, neither creator nor admin, is offered End on alice's room")
	}
	alice.waitJS("alice is offered End on her room", 5*time.Second, `!!`+roomSel("Short-lived")+`.querySelector('[data-testid=room-end]')`)
	bob.join("Short-lived")
	bob.waitJS("bob's call connects", 10*time.Second, `window.__bridge.state().call?.state === 'connected'`)

	alice.do("end the room", 10*time.Second,
		chromedp.Evaluate[chromedp.Void](roomSel("Short-lived")+`.querySelector('[data-testid=room-end]').click()`),
		chromedp.WaitVisible(testid("confirm-dialog")))
	alice.screenshot("confirm-end")
	alice.do("confirm", 5*time.Second, chromedp.Click(testid("confirm-ok")))
	alice.waitJS("room gone from alice's list", 5*time.Second, `!(`+roomSel("Short-lived")+`)`)

	bob.waitJS("bob's call ended with a message", 5*time.Second,
		`document.querySelector('[data-testid=call-notice-text]').textContent === 'This room was ended.' && !document.querySelector('[data-testid=call-notice]').hidden`)
	bob.waitJS("bob's tiles cleared and controls off", 2*time.Second,
		`document.querySelectorAll('[data-testid=tile]').length === 0 && document.querySelector('[data-testid=call-leave]').disabled`)
	bob.waitJS("bob's peer connection closed", 2*time.Second, `window.__bridge.pc === null`)
	if got := eval[bool](bob, `window.__bridge.state().rooms.some(r => r.channelId === `+jsString(id)+`)`); got {
		t.Error("the ended room is still in bob's room list")
	}
	bob.screenshot("room-ended")
	bob.do("back to rooms", 5*time.Second, chromedp.Click(testid("call-back")), chromedp.WaitVisible(testid("view-rooms")))
	bob.waitJS("room gone from bob's list", 2*time.Second, `!(`+roomSel("Short-lived")+`)`)
	alice.checkErrors()
	bob.checkErrors()
}

// TestBrowserSignInErrors covers the ways in that fail: a refused token
// and an invalid name, each explained in words.
func TestBrowserSignInErrors(t *testing.T) {
	checkLeaks(t)
	st := startBrowserApp(t)
	p := &page{t: t, ctx: startBrowser(t), name: "visitor"}

	p.do("open with a bad token", 15*time.Second, chromedp.Navigate(st.base+"/#token=not-a-real-token"))
	p.waitJS("sign-in error shown", 10*time.Second,
		`!document.querySelector('[data-testid=signin-error]').hidden && document.querySelector('[data-testid=signin-error]').textContent.includes('This sign-in link is not valid')`)
	if hash := eval[string](p, `location.hash`); hash != "" {
		t.Errorf("the token stayed in the address: %q", hash)
	}
	if stored := eval[bool](p, `sessionStorage.getItem('bridge.token') !== null`); stored {
		t.Error("a refused token was kept in sessionStorage")
	}
	p.screenshot("signin-refused")

	// A name the server refuses: its message is shown next to the field.
	p.do("sign in with a too long name", 10*time.Second,
		chromedp.SetValue(testid("signin-name"), strings.Repeat("x", 40)),
		chromedp.Click(testid("signin-submit")))
	p.waitJS("name error shown", 5*time.Second,
		`document.querySelector('[data-testid=signin-name-error]').textContent.includes('32')`)

	// A good sign-in, with the keyboard only, keeps the token in
	// sessionStorage only.
	p.do("sign in with the keyboard", 10*time.Second,
		chromedp.Evaluate[chromedp.Void](`document.querySelector('[data-testid=signin-name]').value = ''`),
		chromedp.SendKeys(testid("signin-name"), "carol\r"),
		chromedp.WaitVisible(testid("view-rooms")))
	p.checkLabels("rooms view")
	if local := eval[float64](p, `localStorage.length`); local != 0 {
		t.Errorf("localStorage holds %v items; the token belongs in sessionStorage only", local)
	}
	if !eval[bool](p, `(sessionStorage.getItem('bridge.token') || '').length > 20`) {
		t.Error("no token in sessionStorage after signing in")
	}

	// The create form refuses a bad user limit next to the field.
	p.do("bad user limit", 5*time.Second,
		chromedp.SetValue(testid("create-name"), "Too many"),
		chromedp.SetValue(testid("create-limit"), "150"),
		chromedp.Click(testid("create-submit")))
	p.waitJS("limit error next to the field", 5*time.Second,
		`!document.querySelector('[data-testid=create-error-userLimit]').hidden && document.querySelector('[data-testid=create-limit]').getAttribute('aria-invalid') === 'true'`)

	// A name only the server refuses (a control character inside): its 400
	// answer is shown next to the name field.
	p.do("name with a tab", 5*time.Second,
		chromedp.SetValue(testid("create-name"), "Bad\tname"),
		chromedp.SetValue(testid("create-limit"), "3"),
		chromedp.Click(testid("create-submit")))
	p.waitJS("server's name error next to the field", 5*time.Second,
		`document.querySelector('[data-testid=create-error-name]').textContent.includes('control characters') && document.querySelector('[data-testid=create-error-userLimit]').hidden`)
	p.screenshot("create-room-error")
	p.checkErrors()
}

// TestBrowserUnreachableBridge serves the page from a front server whose
// API drops every connection: the page says it cannot reach the bridge and
// retries, the Retry button tries at once, and once the front server passes
// the API through to a running bridge the page recovers.
func TestBrowserUnreachableBridge(t *testing.T) {
	checkLeaks(t)
	ta := startBrowserApp(t)
	target, err := url.Parse(ta.base)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	ui := web.Handler()
	var reachable atomic.Bool
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/") && !strings.HasPrefix(r.URL.Path, "/.well-known/") {
			ui.ServeHTTP(w, r)
			return
		}
		if reachable.Load() {
			proxy.ServeHTTP(w, r)
			return
		}
		// Drop the connection without an answer, as a dead bridge would.
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		_ = conn.Close()
	}))
	t.Cleanup(front.Close)

	p := &page{t: t, ctx: startBrowser(t), name: "visitor"}
	p.do("open the page", 15*time.Second, chromedp.Navigate(front.URL+"/"), chromedp.WaitVisible(testid("view-offline")))
	p.waitJS("retry countdown shown", 5*time.Second,
		`/^Can't reach the bridge, retrying (in \d+s|now)…$/.test(document.querySelector('[data-testid=offline-text]').textContent)`)
	p.screenshot("unreachable")
	attempt := eval[string](p, `document.querySelector('[data-testid=view-offline]').dataset.attempt`)
	p.do("retry now", 5*time.Second, chromedp.Click(testid("offline-retry")))
	p.waitJS("a new attempt was made", 5*time.Second,
		`Number(document.querySelector('[data-testid=view-offline]').dataset.attempt) > `+attempt)

	reachable.Store(true)
	p.do("retry now", 5*time.Second, chromedp.Click(testid("offline-retry")))
	p.waitJS("sign-in shown once the bridge answers", 10*time.Second,
		`!document.querySelector('[data-testid=view-signin]').hidden && !document.querySelector('[data-testid=dev-form]').hidden`)
}

// wsFront relays /api/ws between the page and the bridge so that a test
// can cut the page's socket, or close it with the hub's own close codes.
type wsFront struct {
	t       *testing.T
	backend string // ws://127.0.0.1:PORT/api/ws
	origin  string

	mu    sync.Mutex
	pairs map[*websocket.Conn]*websocket.Conn // page side -> bridge side
	wg    sync.WaitGroup
}

func (f *wsFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	pageConn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	bridgeConn, _, err := websocket.DefaultDialer.Dial(f.backend, http.Header{"Origin": {f.origin}})
	if err != nil {
		_ = pageConn.Close()
		return
	}
	f.mu.Lock()
	f.pairs[pageConn] = bridgeConn
	f.mu.Unlock()
	relay := func(from, to *websocket.Conn) {
		defer f.wg.Done()
		for {
			typ, msg, err := from.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					_ = to.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(ce.Code, ce.Text), time.Now().Add(time.Second))
				}
				_ = to.Close()
				return
			}
			if err := to.WriteMessage(typ, msg); err != nil {
				_ = from.Close()
				return
			}
		}
	}
	f.wg.Add(2)
	go relay(pageConn, bridgeConn)
	go relay(bridgeConn, pageConn)
}

// cut ends every relayed socket: with a close frame of code to the page,
// or (code 0) by dropping the connections as a network failure would.
func (f *wsFront) cut(code int, reason string) int {
	f.mu.Lock()
	pairs := f.pairs
	f.pairs = make(map[*websocket.Conn]*websocket.Conn)
	f.mu.Unlock()
	for pageConn, bridgeConn := range pairs {
		if code != 0 {
			_ = pageConn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
		}
		_ = pageConn.Close()
		_ = bridgeConn.Close()
	}
	return len(pairs)
}

// TestBrowserHubDropAndExpiry cuts the page's hub socket during a call:
// the page says so, reconnects on its own and rejoins the call, and the
// talking member is heard again. Then the socket is closed with the hub's
// 4401 (token refused or expired): the page goes back to sign-in and says
// why.
func TestBrowserHubDropAndExpiry(t *testing.T) {
	checkLeaks(t)
	ta := startBrowserApp(t)
	target, err := url.Parse(ta.base)
	if err != nil {
		t.Fatal(err)
	}
	ws := &wsFront{t: t, backend: "ws://" + target.Host + "/api/ws", origin: ta.base, pairs: make(map[*websocket.Conn]*websocket.Conn)}
	proxy := httputil.NewSingleHostReverseProxy(target)
	ui := web.Handler()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/api/ws":
			ws.ServeHTTP(w, r)
		case strings.HasPrefix(r.URL.Path, "/api/"), strings.HasPrefix(r.URL.Path, "/.well-known/"):
			proxy.ServeHTTP(w, r)
		default:
			ui.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(func() {
		ws.cut(0, "")
		front.Close()
		ws.wg.Wait()
	})

	p := &page{t: t, ctx: startBrowser(t), name: "dana"}
	p.signIn(front.URL, "dana")
	p.join("Lobby")
	talker := "discord-" + emulator.DemoTalkerID
	p.waitGrowth("talker packets", talker, "audio", "packetsReceived", 10*time.Second)

	if n := ws.cut(0, ""); n != 1 {
		t.Fatalf("cut %d sockets, want the page's one", n)
	}
	p.waitJS("the page says the bridge connection was lost", 3*time.Second,
		`document.querySelector('[data-testid=call-notice-text]').textContent.startsWith('Lost the connection to the bridge')`)
	p.viewportShot("call-reconnecting")
	p.waitJS("hub back and call connected again", 15*time.Second,
		`window.__bridge.hubState === 'open' && window.__bridge.state().call.state === 'connected' && document.querySelector('[data-testid=call-notice]').hidden`)
	if joins := eval[float64](p, `window.__bridge.state().call.trace.filter(s => s.endsWith(' out join')).length`); joins != 2 {
		t.Errorf("the call sent %v joins, want 2: one at first and one after the socket came back", joins)
	}
	p.waitGrowth("talker packets after rejoining", talker, "audio", "packetsReceived", 10*time.Second)

	// A refused token under dev auth (as after a restart with a new
	// signing key): the page gets a new dev token for the same name and
	// stays in the call; it never asks to sign in again.
	before := eval[string](p, `sessionStorage.getItem('bridge.token')`)
	if n := ws.cut(hub.CloseUnauthorized, "token expired"); n != 1 {
		t.Fatalf("cut %d sockets, want the page's one", n)
	}
	p.waitJS("a new token, the hub back and the call connected", 15*time.Second,
		`sessionStorage.getItem('bridge.token') !== `+jsString(before)+` && window.__bridge.hubState === 'open' && window.__bridge.state().call.state === 'connected'`)
	if view := eval[string](p, `window.__bridge.view`); view != "call" {
		t.Errorf("after the refused token the page shows %q, want the call", view)
	}
	p.waitGrowth("talker packets after the new token", talker, "audio", "packetsReceived", 10*time.Second)
	p.checkErrors()
}

// TestBrowserContentSecurityPolicy checks that the browser enforces the
// UI's policy: an injected inline script does not run and the page records
// the violation (so the tests' error checks would see one).
func TestBrowserContentSecurityPolicy(t *testing.T) {
	checkLeaks(t)
	ta := startBrowserApp(t)
	p := &page{t: t, ctx: startBrowser(t), name: "visitor"}
	p.do("open the page", 15*time.Second, chromedp.Navigate(ta.base+"/"), chromedp.WaitVisible(testid("signin-name")))
	p.do("inject an inline script", 5*time.Second, chromedp.Evaluate[chromedp.Void](
		`(() => { const s = document.createElement('script'); s.textContent = 'window.__injected = true'; document.body.append(s); })()`))
	p.waitJS("violation recorded", 5*time.Second, `window.__bridge.errors.some(e => e.startsWith('CSP blocked') && e.includes('script-src'))`)
	if ran := eval[bool](p, `window.__injected === true`); ran {
		t.Error("an inline script ran despite the Content-Security-Policy")
	}
}

// checkLeaks fails the test if goroutines started during it outlive its
// cleanups (registered first, so it runs last).
func checkLeaks(t *testing.T) {
	t.Helper()
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		goleak.VerifyNone(t, before,
			// Keep-alive connections of http.DefaultClient, which the
			// gateway's REST calls share; they are the process's.
			goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"))
	})
}
