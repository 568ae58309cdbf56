package main

// The call page as people see it, in real Chromium at a desktop size
// (1280×800) and a phone size (390×844), in the light and the dark theme:
// tiles that fill the stage, axe-core finding nothing in any state, the
// call coming back after the bridge restarts, and a call without a camera
// or without a microphone. Every state leaves screenshots in
// testoutput/screenshots/.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/voicebridge/bridge/emulator"
	"github.com/voicebridge/bridge/emulator/discordemu"
)

// The two sizes every state is checked at.
var pageSizes = []struct {
	name string
	w, h int64
	min  float64 // share of the stage the tiles must cover
}{
	{"desktop", 1280, 800, 0.60},
	{"phone", 390, 844, 0.70},
}

var pageThemes = []string{"light", "dark"}

// setSize makes the viewport w×h (a phone size also as a mobile device).
func (p *page) setSize(w, h int64) {
	p.t.Helper()
	p.do(fmt.Sprintf("viewport %dx%d", w, h), 5*time.Second,
		chromedp.EmulateViewport(w, h, chromedp.EmulateScale(1), func(d *emulation.SetDeviceMetricsOverrideParams, _ *emulation.SetTouchEmulationEnabledParams) {
			d.Mobile = w < 500
		}))
	p.settle()
}

// setTheme makes the system prefer the theme, as a person's OS setting would.
func (p *page) setTheme(theme string) {
	p.t.Helper()
	p.call("theme "+theme, func(ctx context.Context) error {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: theme}},
		})
		return err
	})
	p.settle()
}

// call runs protocol commands with the tab's context.
func (p *page) call(what string, f func(ctx context.Context) error) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	if err := f(ctx); err != nil {
		p.fail(what, err)
	}
}

// settle waits two frames: the layout after a resize is placed in the next one.
func (p *page) settle() {
	p.t.Helper()
	eval[bool](p, `new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))`)
}

// axeSource is axe-core from npm (cmd/bridge/testdata/axe, installed by
// .ci/run with npm ci).
var axeSource = sync.OnceValues(func() (string, error) {
	b, err := os.ReadFile(filepath.Join("testdata", "axe", "node_modules", "axe-core", "axe.min.js"))
	return string(b), err
})

type axeViolation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target  []any  `json:"target"`
		Summary string `json:"failureSummary"`
	} `json:"nodes"`
}

// checkAxe runs axe-core on the page and fails the test for each violation.
func (p *page) checkAxe(state string) {
	p.t.Helper()
	src, err := axeSource()
	if err != nil {
		p.t.Fatalf("axe-core is not installed (cd cmd/bridge/testdata/axe && npm ci): %v", err)
	}
	if !eval[bool](p, `typeof window.axe === 'object'`) {
		eval[bool](p, src+"\n;true")
	}
	raw := eval[string](p, `axe.run(document, { resultTypes: ['violations'] }).then((r) => JSON.stringify(r.violations))`)
	var vs []axeViolation
	if err := json.Unmarshal([]byte(raw), &vs); err != nil {
		p.t.Fatal(err)
	}
	for _, v := range vs {
		var where []string
		for _, n := range v.Nodes {
			where = append(where, fmt.Sprintf("%v: %s", n.Target, strings.ReplaceAll(n.Summary, "\n", " ")))
		}
		p.t.Errorf("%s: axe: %s (%s) %s:\n  %s", p.name, state, v.Impact, v.ID+": "+v.Help, strings.Join(where, "\n  "))
	}
}

// everyWay checks a state at both sizes in both themes: axe-core finds
// nothing, and a screenshot of each lands in testoutput/screenshots.
func (p *page) everyWay(state string, check func(size string)) {
	p.t.Helper()
	for _, theme := range pageThemes {
		p.setTheme(theme)
		for _, sz := range pageSizes {
			p.setSize(sz.w, sz.h)
			if check != nil {
				check(sz.name)
			}
			p.checkAxe(fmt.Sprintf("%s (%s, %s)", state, sz.name, theme))
			p.checkTopbar(fmt.Sprintf("%s (%s, %s)", state, sz.name, theme))
			p.viewportShot(fmt.Sprintf("%s-%s-%s", state, sz.name, theme))
		}
	}
	p.setTheme("light")
	p.setSize(1280, 800)
}

// checkTopbar fails the test if what the top bar shows (the name, the
// connection, the buttons) overlaps or leaves the window.
func (p *page) checkTopbar(state string) {
	p.t.Helper()
	bad := eval[string](p, `(() => {
		const items = [...document.querySelectorAll('.topbar .brand > *, .topbar-right > *')]
			.filter((e) => e.getClientRects().length > 0 && getComputedStyle(e).position !== 'absolute');
		const rs = items.map((e) => e.getBoundingClientRect());
		for (let i = 0; i < rs.length; i++) {
			const a = rs[i];
			if (a.left < -0.5 || a.right > innerWidth + 0.5) return (items[i].id || items[i].tagName) + ' leaves the window';
			for (let j = i + 1; j < rs.length; j++) {
				const b = rs[j];
				if (Math.min(a.right, b.right) - Math.max(a.left, b.left) > 0.5 && Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 0.5) {
					return (items[i].id || items[i].tagName) + ' overlaps ' + (items[j].id || items[j].tagName);
				}
			}
		}
		return '';
	})()`)
	if bad != "" {
		p.t.Errorf("%s: %s: the top bar: %s", p.name, state, bad)
	}
}

// waitPlaced waits until the tiles are placed for the stage as it is now
// and no tile is still moving to its place.
func (p *page) waitPlaced() {
	p.t.Helper()
	p.waitJS("tiles placed", 5*time.Second, `(() => {
		const st = document.querySelector('[data-testid=stage]');
		const n = document.querySelectorAll('[data-testid=tile]').length;
		return (st.dataset.layout || '').startsWith(st.clientWidth + 'x' + st.clientHeight + ':' + n + ':')
			&& document.getAnimations().filter((a) => a.playState === 'running' && a.effect && a.effect.target && a.effect.target.matches('[data-testid=tile]')).length === 0;
	})()`)
}

// stageCoverage is what the tiles cover of the stage, and whether two overlap.
type stageCoverage struct {
	Tiles   int     `json:"tiles"`
	Share   float64 `json:"share"`
	Overlap string  `json:"overlap"`
	Outside string  `json:"outside"`
}

func (p *page) coverage() stageCoverage {
	p.t.Helper()
	p.waitPlaced()
	raw := eval[string](p, `(() => {
		const st = document.querySelector('[data-testid=stage]').getBoundingClientRect();
		const rs = [...document.querySelectorAll('[data-testid=tile]')].map((e) => e.getBoundingClientRect());
		let area = 0, overlap = '', outside = '';
		rs.forEach((a, i) => {
			area += a.width * a.height;
			if (a.left < st.left - 1 || a.top < st.top - 1 || a.right > st.right + 1 || a.bottom > st.bottom + 1) outside = 'tile ' + i;
			rs.forEach((b, j) => {
				if (j <= i) return;
				const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
				const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
				if (w > 0.5 && h > 0.5) overlap = 'tiles ' + i + ' and ' + j;
			});
		});
		return JSON.stringify({ tiles: rs.length, share: area / (st.width * st.height), overlap, outside });
	})()`)
	var c stageCoverage
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		p.t.Fatal(err)
	}
	return c
}

// addSilentMembers makes a voice room and puts n Discord members (silent)
// in it, numbered from first.
func addSilentMembers(t *testing.T, st *testApp, room string, first, n int) {
	t.Helper()
	d := st.demo.Discord
	o := d.Options()
	c, err := d.CreateChannel(room, 2, o.CategoryID)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		id := fmt.Sprintf("5%017d", first+i)
		d.AddMember(id, fmt.Sprintf("Member %c%d", 'A'+first+i, first+i+1))
		if err := d.SetVoiceState(id, c.ID); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPageLayout: with 2, 4 and 9 people the tiles cover at least 60 % of
// the stage at 1280×800 and 70 % on a phone, none overlaps another or
// leaves the stage; speaker view enlarges the talking member's tile.
func TestPageLayout(t *testing.T) {
	checkLeaks(t)
	st := startBrowserApp(t)
	addSilentMembers(t, st, "Pair", 0, 1)
	addSilentMembers(t, st, "Nine", 1, 8)
	p := &page{t: t, ctx: startBrowser(t), name: "layout"}
	p.signIn(st.base, "lay")
	for _, c := range []struct {
		room  string
		tiles int
	}{{"Pair", 2}, {"Lobby", 4}, {"Nine", 9}} {
		p.waitJS(c.room+" listed", 10*time.Second, `!!(`+roomSel(c.room)+`)`)
		p.join(c.room)
		p.waitJS(fmt.Sprintf("%d tiles", c.tiles), 15*time.Second,
			fmt.Sprintf(`document.querySelectorAll('[data-testid=tile]').length === %d`, c.tiles))
		for _, sz := range pageSizes {
			p.setSize(sz.w, sz.h)
			got := p.coverage()
			t.Logf("%s, %d tiles, %s: tiles cover %.0f%% of the stage", c.room, got.Tiles, sz.name, got.Share*100)
			if got.Share < sz.min {
				t.Errorf("%s at %s: the %d tiles cover %.0f%% of the stage, want at least %.0f%%", c.room, sz.name, got.Tiles, got.Share*100, sz.min*100)
			}
			if got.Overlap != "" || got.Outside != "" {
				t.Errorf("%s at %s: overlap %q, outside the stage %q", c.room, sz.name, got.Overlap, got.Outside)
			}
			if cut := eval[[]string](p, `[...document.querySelectorAll('[data-testid=tile-name]')].filter((e) => e.scrollWidth > e.clientWidth).map((e) => e.textContent)`); len(cut) > 0 {
				t.Errorf("%s at %s: names cut short: %q", c.room, sz.name, cut)
			}
			if hid := eval[[]string](p, `[...document.querySelectorAll('[data-testid=tile]')].filter((t) => {
				const a = t.querySelector('.avatar');
				if (a.getClientRects().length === 0) return false;
				const r = a.getBoundingClientRect();
				return [...t.querySelectorAll('.tile-bar > * > *, .tile-name')].some((e) => { const b = e.getBoundingClientRect();
					return Math.min(r.right, b.right) - Math.max(r.left, b.left) > 0.5 && Math.min(r.bottom, b.bottom) - Math.max(r.top, b.top) > 0.5; });
			}).map((t) => t.querySelector('[data-testid=tile-name]').textContent)`); len(hid) > 0 {
				t.Errorf("%s at %s: the name bar covers the avatar of %q", c.room, sz.name, hid)
			}
			p.viewportShot(fmt.Sprintf("layout-%d-%s", c.tiles, sz.name))
		}
		if c.room == "Lobby" {
			p.checkSpeakerView()
		}
		p.do("leave", 5*time.Second, chromedp.Click(testid("call-leave")), chromedp.WaitVisible(testid("view-rooms")))
	}
	p.checkErrors()
}

// checkSpeakerView switches to speaker view in the Lobby and waits for
// Ada, who talks, to get the large tile.
func (p *page) checkSpeakerView() {
	p.t.Helper()
	ada := jsString("discord-" + emulator.DemoTalkerID)
	p.waitJS("Ada's media tile", 15*time.Second, `!!document.querySelector('[data-testid=tile][data-participant-id=`+ada+`]')`)
	p.waitPlaced()
	area := `((e) => { const r = e.getBoundingClientRect(); return r.width * r.height; })(document.querySelector('[data-testid=tile][data-participant-id=` + ada + `]'))`
	grid := eval[float64](p, area)
	p.do("speaker view", 5*time.Second, chromedp.Click(testid("call-layout")))
	p.waitJS("Ada's tile is the large one", 15*time.Second,
		`document.querySelector('[data-testid=tile][data-participant-id=`+ada+`]').dataset.main === 'true'`)
	p.waitPlaced()
	big := eval[float64](p, area)
	if big < 1.5*grid {
		p.t.Errorf("speaker view: Ada's tile is %.0f px², in the grid %.0f px²: not enlarged", big, grid)
	}
	if c := p.coverage(); c.Overlap != "" || c.Outside != "" {
		p.t.Errorf("speaker view: overlap %q, outside %q", c.Overlap, c.Outside)
	}
	if eval[string](p, `document.querySelector('[data-testid=call-layout]').getAttribute('aria-pressed')`) != "true" {
		p.t.Error("the speaker view button is not pressed in speaker view")
	}
	p.viewportShot("layout-speaker-desktop")
	p.do("grid view", 5*time.Second, chromedp.Click(testid("call-layout")))
}

// TestPageAccessibilityAndLooks walks through every state (sign-in, a bad
// sign-in link, the room list, the device check, a call with Discord
// members, a call alone, an ended call) at both sizes in both themes:
// axe-core finds no violation, and each leaves a screenshot.
func TestPageAccessibilityAndLooks(t *testing.T) {
	checkLeaks(t)
	st := startBrowserApp(t)
	p := &page{t: t, ctx: startBrowser(t), name: "a11y"}

	p.do("open a bad sign-in link", 15*time.Second, chromedp.Navigate(st.base+"/#token=not-a-token"),
		chromedp.WaitVisible(testid("signin-error")))
	text := eval[string](p, `document.querySelector('#signin-error-text').textContent`)
	if text != "This sign-in link is not valid. Ask for a new one, or sign in again." {
		t.Errorf("a bad link says %q", text)
	}
	if detail := eval[string](p, `document.querySelector('[data-testid=signin-error-detail]').textContent`); detail == "" ||
		eval[bool](p, `document.querySelector('#signin-error-more').open`) {
		t.Errorf("the server's words %q are not behind a closed disclosure", detail)
	}
	p.everyWay("error-signin-link", nil)

	p.do("open the page", 15*time.Second, chromedp.Navigate(st.base+"/"), chromedp.WaitVisible(testid("signin-name")))
	p.everyWay("signin", nil)

	p.do("theme toggle", 5*time.Second, chromedp.Click(testid("theme-toggle")))
	if got := eval[string](p, `document.documentElement.dataset.theme + ' ' + document.querySelector('[data-testid=theme-toggle]').getAttribute('aria-pressed')`); got != "dark true" {
		t.Errorf("after the toggle: theme and pressed %q, want dark true", got)
	}
	p.do("theme toggle back", 5*time.Second, chromedp.Click(testid("theme-toggle")),
		chromedp.Evaluate[chromedp.Void](`localStorage.removeItem('bridge.theme')`))

	p.signIn(st.base, "Grace Hopper")
	// Create-room errors go when the value becomes valid.
	p.do("bad limit", 5*time.Second, chromedp.SetValue(testid("create-name"), "x"),
		chromedp.SetValue(testid("create-limit"), "500"), chromedp.Click(testid("create-submit")))
	p.waitJS("limit error shown", 5*time.Second, `!document.querySelector('[data-testid=create-error-userLimit]').hidden`)
	p.do("fix the limit", 5*time.Second, chromedp.Evaluate[chromedp.Void](`document.querySelector('[data-testid=create-limit]').value = ''`),
		chromedp.SendKeys(testid("create-limit"), "5"))
	p.waitJS("limit error gone", 5*time.Second, `document.querySelector('[data-testid=create-error-userLimit]').hidden`)
	p.do("clear the form", 5*time.Second, chromedp.Evaluate[chromedp.Void](`document.querySelector('[data-testid=create-name]').value = ''; document.querySelector('[data-testid=create-limit]').value = '0'`))
	// The bot is neither listed nor counted.
	p.waitJS("Lobby lists its three members", 10*time.Second, roomSel("Lobby")+`?.textContent.includes('Ada (talks)')`)
	if people := eval[string](p, roomSel("Lobby")+`.querySelector('[data-testid=room-people]').textContent`); !strings.HasPrefix(people, "3 ") {
		t.Errorf("the Lobby's people: %q, want 3 (the bot left out)", people)
	}
	p.everyWay("rooms", nil)

	p.do("open the Lobby", 10*time.Second, chromedp.Evaluate[chromedp.Void](roomSel("Lobby")+`.querySelector('[data-testid=room-join]').click()`))
	p.do("device check", 15*time.Second, chromedp.WaitVisible(testid("prejoin-preview")), chromedp.WaitEnabled(testid("prejoin-join")))
	p.everyWay("device-check", nil)
	p.do("join", 10*time.Second, chromedp.Click(testid("prejoin-join")), chromedp.WaitVisible(testid("view-call")))
	p.waitJS("connected with the members", 20*time.Second, `window.__bridge.state().call.state === 'connected' && document.querySelectorAll('[data-testid=tile]').length === 4`)
	p.waitJS("privacy code", 15*time.Second, `!document.querySelector('[data-testid=privacy]').hidden`)
	if n := eval[int](p, `document.querySelectorAll('.conn:not([hidden])').length`); n != 1 {
		t.Errorf("%d connection indicators shown in the call, want one", n)
	}
	if got := eval[string](p, `[...document.querySelectorAll('[data-testid=tile]')].map((e) => e.querySelector('.avatar').textContent).join(' ')`); !strings.Contains(got, "GH") || !strings.Contains(got, "A ") {
		t.Errorf("initials %q: want GH for Grace Hopper, A for Ada (talks)", got)
	}
	p.waitJS("Test Pattern's video shown", 15*time.Second,
		`!!document.querySelector('[data-testid=tile][data-participant-id=`+jsString("discord-"+emulator.DemoCameraID)+`][data-video=true]')`)
	p.everyWay("call-discord", nil)
	if eval[bool](p, `!document.querySelector('[data-testid=tile][data-participant-id=`+jsString("discord-"+emulator.DemoCameraID)+`] .tile-menu').hidden`) {
		t.Error("Test Pattern sends only video, yet its tile offers a volume control")
	}
	// Someone who signs in now sees Grace in the Lobby: the room list's
	// snapshot carries the browsers already in each call.
	late := &page{t: t, ctx: newTab(t, p.ctx), name: "late"}
	late.signIn(st.base, "Late Comer")
	late.waitJS("Grace listed in the Lobby", 10*time.Second, roomSel("Lobby")+`?.textContent.includes('Grace Hopper')`)
	if people := eval[string](late, roomSel("Lobby")+`.querySelector('[data-testid=room-people]').textContent`); !strings.HasPrefix(people, "4 ") {
		t.Errorf("the late page's Lobby: %q, want 4 people (3 members and Grace)", people)
	}
	p.do("open the privacy code", 5*time.Second, chromedp.Click(testid("privacy")), chromedp.WaitVisible(testid("privacy-pop")))
	p.everyWay("call-privacy", nil)
	p.do("close it", 5*time.Second, chromedp.Click(testid("privacy")))
	p.do("open a volume menu", 5*time.Second, chromedp.Evaluate[chromedp.Void](
		`document.querySelector('[data-participant-id=`+jsString("discord-"+emulator.DemoTalkerID)+`] [data-testid=tile-menu]').click()`))
	p.everyWay("call-volume", nil)
	// The Lobby is not this user's room and the user is no admin: no End.
	if eval[bool](p, `!document.querySelector('[data-testid=call-end]').hidden`) {
		t.Error("End room shown in the Lobby's call to a user who neither created it nor is an admin")
	}
	p.do("leave", 5*time.Second, chromedp.Click(testid("call-leave")), chromedp.WaitVisible(testid("view-rooms")))

	p.createRoom("Quiet corner", 0)
	p.join("Quiet corner")
	p.waitJS("alone", 20*time.Second, `!document.querySelector('[data-testid=alone]').hidden`)
	p.everyWay("call-alone", nil)
	// The invite link opens the room's join screen once signed in.
	roomID := eval[string](p, `window.__bridge.state().call.roomId`)
	guest := &page{t: t, ctx: newTab(t, p.ctx), name: "guest"}
	guest.do("open the invite link", 15*time.Second, chromedp.Navigate(st.base+"/#room="+roomID), chromedp.WaitVisible(testid("signin-name")))
	guest.do("sign in", 15*time.Second, chromedp.SendKeys(testid("signin-name"), "Guest"), chromedp.Click(testid("signin-submit")),
		chromedp.WaitVisible(testid("view-prejoin")))
	if title := eval[string](guest, `document.querySelector('#prejoin-room').textContent`); title != "Quiet corner" {
		t.Errorf("the invite link opened the join screen of %q, want Quiet corner", title)
	}
	guest.do("back", 5*time.Second, chromedp.Click(testid("prejoin-back")), chromedp.WaitVisible(testid("view-rooms")))
	if eval[bool](p, `document.querySelector('[data-testid=call-end]').hidden`) {
		t.Error("End room hidden from the room's creator")
	}
	p.do("end the room from the call", 10*time.Second, chromedp.Click(testid("call-end")),
		chromedp.WaitVisible(testid("confirm-ok")), chromedp.Click(testid("confirm-ok")))
	p.waitJS("ended", 10*time.Second, `document.querySelector('[data-testid=view-call]').dataset.ended === 'room_ended'`)
	p.everyWay("call-ended", nil)
	p.checkErrors()
}

// TestPageReturnsToCallAfterRestart: the bridge restarts under a call (a
// new signing key, a new emulator whose Lobby has a new id); the page is
// back in the Lobby's call, hearing Ada, within 15 s, and never showed
// the sign-in.
func TestPageReturnsToCallAfterRestart(t *testing.T) {
	checkLeaks(t)
	first, stopFirst := startAppAt(t, "127.0.0.1:0")
	addr := first.Addr()
	p := &page{t: t, ctx: startBrowser(t), name: "restart"}
	p.signIn(first.base, "Rosa")
	p.join("Lobby")
	ada := "discord-" + emulator.DemoTalkerID
	p.waitGrowth("Ada heard", ada, "audio", "totalAudioEnergy", 15*time.Second)
	eval[bool](p, `(() => { window.__views = [];
		new MutationObserver(() => window.__views.push(document.body.dataset.view)).observe(document.body, { attributes: true, attributeFilter: ['data-view'] });
		return true; })()`)

	stopFirst()
	restarted := time.Now()
	second, _ := startAppAt(t, addr)
	p.waitJS("back in the new Lobby's call", 15*time.Second,
		`(() => { const c = window.__bridge.state().call; return !!c && !c.ended && c.state === 'connected' && c.roomId === `+jsString(second.demo.Lobby.ID)+`; })()`)
	p.waitGrowth("Ada heard again", ada, "audio", "totalAudioEnergy", max(time.Second, 15*time.Second-time.Since(restarted)))
	if took := time.Since(restarted); took > 15*time.Second {
		t.Errorf("back in the call %v after the restart, want within 15 s", took)
	}
	t.Logf("back in the call hearing Ada %v after the restart", time.Since(restarted).Round(time.Millisecond))
	if views := eval[[]string](p, `window.__views`); strings.Contains(strings.Join(views, " "), "signin") {
		t.Errorf("the page showed the sign-in during the restart: views %v", views)
	}
	p.viewportShot("call-after-restart")
	p.checkErrors()
}

// TestPageWithoutCameraOrMicrophone: with the camera denied the page joins
// with audio (the talker's audio plays, Discord hears the microphone) and
// says "Camera blocked"; with no microphone it joins with video and Mute
// is disabled.
func TestPageWithoutCameraOrMicrophone(t *testing.T) {
	checkLeaks(t)
	st := startBrowserApp(t)
	ctx := startBrowser(t)

	p := &page{t: t, ctx: ctx, name: "nocam"}
	p.do("open", 15*time.Second, chromedp.Navigate(st.base+"/"), chromedp.WaitVisible(testid("signin-name")))
	// The browser refuses the camera (as when a person blocked it) and
	// allows the microphone.
	p.call("deny the camera", func(ctx context.Context) error {
		_, err := chromedp.Call(ctx, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: `(() => {
			const md = navigator.mediaDevices; const gum = md.getUserMedia.bind(md);
			md.getUserMedia = (c) => c && c.video ? Promise.reject(new DOMException('Permission denied', 'NotAllowedError')) : gum(c);
		})()`})
		return err
	})
	p.signIn(st.base, "nocam")
	p.join("Lobby")
	p.waitJS("in the call, connected", 20*time.Second, `window.__bridge.state().call.state === 'connected'`)
	ada := "discord-" + emulator.DemoTalkerID
	p.waitGrowth("Ada heard", ada, "audio", "totalAudioEnergy", 10*time.Second)
	p.waitJS("audio sent", 10*time.Second, `(async () => { const pc = window.__bridge.pc; const s = await pc.getStats();
		return [...s.values()].some((r) => r.type === 'outbound-rtp' && r.kind === 'audio' && r.packetsSent > 0); })()`)
	p.waitJS("camera blocked shown", 5*time.Second, `document.querySelector('[data-testid=tile][data-self=true]').getAttribute('aria-label').includes('camera blocked') && document.querySelector('[data-testid=call-notice-text]').textContent.startsWith('Camera blocked')`)
	p.everyWay("call-camera-blocked", nil)
	p.do("leave", 5*time.Second, chromedp.Click(testid("call-leave")), chromedp.WaitVisible(testid("view-rooms")))

	// No microphone: the page's getUserMedia finds none (as on a machine
	// without one) and enumerateDevices lists none.
	q := &page{t: t, ctx: newTab(t, ctx), name: "nomic"}
	q.call("no microphone", func(ctx context.Context) error {
		_, err := chromedp.Call(ctx, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: `(() => {
			const md = navigator.mediaDevices; const gum = md.getUserMedia.bind(md); const en = md.enumerateDevices.bind(md);
			md.getUserMedia = (c) => c && c.audio ? Promise.reject(new DOMException('Requested device not found', 'NotFoundError')) : gum(c);
			md.enumerateDevices = () => en().then((l) => l.filter((d) => d.kind !== 'audioinput'));
		})()`})
		return err
	})
	q.signIn(st.base, "nomic")
	q.join("Lobby")
	q.waitJS("in the call, connected", 20*time.Second, `window.__bridge.state().call.state === 'connected'`)
	q.waitJS("video sent", 10*time.Second, `(async () => { const pc = window.__bridge.pc; const s = await pc.getStats();
		return [...s.values()].some((r) => r.type === 'outbound-rtp' && r.kind === 'video' && r.framesEncoded > 0); })()`)
	if !eval[bool](q, `document.querySelector('[data-testid=call-mute]').disabled`) {
		t.Error("Mute is enabled without a microphone")
	}
	q.waitJS("no microphone said", 5*time.Second, `document.querySelector('[data-testid=call-notice-text]').textContent.startsWith('No microphone')`)
	q.everyWay("call-no-microphone", nil)
	p.checkErrors()
	q.checkErrors()
}

// requestLog records a tab's network requests through the DevTools
// network events: each request's URL and how it ended.
type requestLog struct {
	mu      sync.Mutex
	reqs    map[network.RequestID]*loggedRequest
	order   []*loggedRequest
	changed chan struct{} // closed and replaced on every event
}

type loggedRequest struct {
	url      string
	status   int64
	finished bool
	failed   string // the error text of a failed request
	canceled bool
}

func recordRequests(t *testing.T, ctx context.Context) *requestLog {
	t.Helper()
	l := &requestLog{reqs: map[network.RequestID]*loggedRequest{}, changed: make(chan struct{})}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("record requests: %v", err)
	}
	err := chromedp.Listen(ctx, func(ev any) {
		l.mu.Lock()
		defer l.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			if r := l.reqs[ev.RequestID]; r != nil && ev.RedirectResponse != nil {
				return // the same request, redirected
			}
			r := &loggedRequest{url: ev.Request.URL}
			l.reqs[ev.RequestID] = r
			l.order = append(l.order, r)
		case *network.EventResponseReceived:
			if r := l.reqs[ev.RequestID]; r != nil {
				r.status = ev.Response.Status
			}
		case *network.EventLoadingFinished:
			if r := l.reqs[ev.RequestID]; r != nil {
				r.finished = true
			}
		case *network.EventLoadingFailed:
			if r := l.reqs[ev.RequestID]; r != nil {
				r.failed, r.canceled = ev.ErrorText, ev.Canceled
				if r.failed == "" {
					r.failed = "failed"
				}
			}
		default:
			return
		}
		close(l.changed)
		l.changed = make(chan struct{})
	})
	if err != nil {
		t.Fatalf("record requests: %v", err)
	}
	return l
}

// settled waits until every request seen so far has ended.
func (l *requestLog) settled(t *testing.T, what string) []loggedRequest {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		l.mu.Lock()
		var open []string
		all := make([]loggedRequest, 0, len(l.order))
		for _, r := range l.order {
			all = append(all, *r)
			if !r.finished && r.failed == "" {
				open = append(open, r.url)
			}
		}
		changed := l.changed
		l.mu.Unlock()
		if len(open) == 0 {
			return all
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s: requests still open after 10 s: %v", what, open)
		}
	}
}

// TestPageRequestsWhatItNeeds: a fresh load of the sign-in page, and the
// sign-in after it, cancel no request (the key set the page asks for to
// know whether development sign-in runs is read to its end) and fetch the
// icon at most once.
func TestPageRequestsWhatItNeeds(t *testing.T) {
	checkLeaks(t)
	st := startBrowserApp(t)
	ctx := startBrowser(t)
	log := recordRequests(t, ctx)
	p := &page{t: t, ctx: ctx, name: "requests"}
	p.do("open the page", 15*time.Second, chromedp.Navigate(st.base+"/"), chromedp.WaitVisible(testid("signin-name")))
	p.waitJS("loaded", 10*time.Second, `document.readyState === 'complete'`)
	checkRequests(t, "the sign-in page", log.settled(t, "the sign-in page"))

	p.do("sign in", 15*time.Second, chromedp.SendKeys(testid("signin-name"), "Net"), chromedp.Click(testid("signin-submit")),
		chromedp.WaitVisible(testid("view-rooms")))
	p.waitJS("hub socket open", 10*time.Second, `window.__bridge.hubState === 'open'`)
	all := log.settled(t, "after sign-in")
	checkRequests(t, "the sign-in page and the sign-in", all)
	icons := 0
	for _, r := range all {
		// The page's icon, or the one a browser asks for when a page names none.
		if u, err := url.Parse(r.url); err == nil && (u.Path == "/icon.svg" || u.Path == "/favicon.ico") {
			icons++
		}
	}
	if icons > 1 {
		t.Errorf("the icon was requested %d times, want at most once", icons)
	}
	for _, r := range all {
		t.Logf("%d %s", r.status, r.url)
	}
	t.Logf("%d requests on the load and the sign-in, %d of the icon", len(all), icons)
	p.checkErrors()
}

// checkRequests fails the test for each cancelled or failed request, and
// unless the key set (which the development sign-in shown needs) was asked
// for and answered in full.
func checkRequests(t *testing.T, what string, reqs []loggedRequest) {
	t.Helper()
	sawJWKS := false
	for _, r := range reqs {
		u, err := url.Parse(r.url)
		if err != nil {
			t.Errorf("%s: request to %q: %v", what, r.url, err)
			continue
		}
		if r.failed != "" {
			t.Errorf("%s: the request to %s ended with %q (cancelled: %v)", what, u.Path, r.failed, r.canceled)
		}
		if u.Path == "/.well-known/jwks.json" {
			sawJWKS = true
			if !r.finished || r.status != 200 {
				t.Errorf("%s: the key set request ended with status %d, finished %v; want 200 read to its end", what, r.status, r.finished)
			}
		}
	}
	if !sawJWKS {
		t.Errorf("%s: the page never asked for /.well-known/jwks.json, yet it shows the development sign-in", what)
	}
}

// TestPageSaysBridgeUnreachable: the bridge stops under a call and stays
// away; the page stops speaking of a restart and says plainly that the
// bridge cannot be reached, with a Try again button; once the bridge is
// up again, Try again takes the page back into the Lobby's call.
func TestPageSaysBridgeUnreachable(t *testing.T) {
	checkLeaks(t)
	first, stopFirst := startAppAt(t, "127.0.0.1:0")
	addr := first.Addr()
	p := &page{t: t, ctx: startBrowser(t), name: "unreachable"}
	p.signIn(first.base, "Ida")
	p.join("Lobby")
	p.waitJS("in the call, connected", 20*time.Second, `window.__bridge.state().call.state === 'connected'`)

	stopFirst()
	p.waitJS("a restart spoken of", 10*time.Second, `!document.querySelector('[data-testid=call-notice]').hidden
		&& /restart|Reconnecting/.test(document.querySelector('[data-testid=call-notice-text]').textContent)`)
	stopped := time.Now()
	p.waitJS("the bridge said to be unreachable", 60*time.Second, `document.querySelector('[data-testid=view-call]').dataset.unreachable === 'true'`)
	t.Logf("unreachable said %v after the bridge stopped", time.Since(stopped).Round(time.Second))
	text := eval[string](p, `document.querySelector('[data-testid=call-notice-text]').textContent`)
	if !strings.HasPrefix(text, "The bridge cannot be reached.") || strings.Contains(text, "restart") {
		t.Errorf("the page says %q, want that the bridge cannot be reached", text)
	}
	if got := eval[string](p, `(() => { const b = document.querySelector('[data-testid=call-retry]'); return b.hidden ? 'hidden' : b.textContent; })()`); got != "Try again" {
		t.Errorf("the retry button: %q, want Try again", got)
	}
	if n := eval[int](p, `document.querySelectorAll('[data-testid=tile][data-speaking=true]:not([data-self=true])').length`); n != 0 {
		t.Errorf("with the bridge unreachable, %d others are still shown speaking", n)
	}
	p.everyWay("call-unreachable", nil)

	second, _ := startAppAt(t, addr)
	p.do("try again", 5*time.Second, chromedp.Click(testid("call-retry")))
	p.waitJS("back in the new Lobby's call", 20*time.Second,
		`(() => { const c = window.__bridge.state().call; return !!c && !c.ended && c.state === 'connected' && c.roomId === `+jsString(second.demo.Lobby.ID)+`; })()`)
	if eval[bool](p, `!document.querySelector('[data-testid=call-notice]').hidden && document.querySelector('[data-testid=view-call]').dataset.unreachable === 'true'`) {
		t.Error("back in the call, the page still says the bridge cannot be reached")
	}
	p.checkErrors()
}

// TestPageGuildPicker: a token that allows two Discord servers gets a
// server picker (axe-core finding nothing); the list shows the chosen
// server's rooms only, and a room created there lands in that server.
func TestPageGuildPicker(t *testing.T) {
	checkLeaks(t)
	var tune tuning
	tune.demo.Discord.Guilds = []discordemu.Guild{{ID: guildB, Name: "Guild B", CategoryID: categoryB}}
	st := startTestApp(t, tune, nil)
	if _, err := st.demo.Discord.CreateChannelIn(guildB, "Far table", 2, categoryB); err != nil {
		t.Fatal(err)
	}
	guildA := st.demo.Discord.Options().GuildID
	// The ack names the servers once a gateway in each received its
	// GUILD_CREATE.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	waitUntil(t, ctx, "both guilds' names known", func() bool {
		return st.bots.guildName(guildA) != "" && st.bots.guildName(guildB) != ""
	})
	tok := st.devTokenFor(t, "Two Servers", []string{guildA, guildB})
	p := &page{t: t, ctx: startBrowser(t), name: "guilds"}
	p.do("open a sign-in link for two servers", 15*time.Second, chromedp.Navigate(st.base+"/#token="+tok),
		chromedp.WaitVisible(testid("view-rooms")), chromedp.WaitVisible(testid("guild-picker")))
	// The picker shows the servers by their Discord names, in the
	// bridge's order.
	names := eval[[]string](p, `[...document.querySelectorAll('[data-testid=guild-picker] option')].map((o) => o.textContent)`)
	if want := []string{st.demo.Discord.Options().GuildName, "Guild B"}; !slices.Equal(names, want) {
		t.Errorf("the server picker offers %q, want the guilds' names %q", names, want)
	}
	p.waitJS("the Lobby listed", 10*time.Second, `!!(`+roomSel("Lobby")+`)`)
	if eval[bool](p, `!!(`+roomSel("Far table")+`)`) {
		t.Error("guild B's room is listed while guild A is chosen")
	}
	p.everyWay("rooms-guilds", nil)

	p.do("choose guild B", 5*time.Second, chromedp.SetValue(testid("guild-picker"), guildB),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('[data-testid=guild-picker]').dispatchEvent(new Event('change'))`))
	p.waitJS("guild B's room listed", 10*time.Second, `!!(`+roomSel("Far table")+`)`)
	if eval[bool](p, `!!(`+roomSel("Lobby")+`)`) {
		t.Error("guild A's Lobby is listed while guild B is chosen")
	}
	id := p.createRoom("Near table", 0)
	ch, ok := st.demo.Discord.Channel(id)
	if !ok || ch.GuildID != guildB || ch.ParentID != categoryB {
		t.Fatalf("the room created with guild B chosen is %+v, want it in guild B's category", ch)
	}
	p.checkErrors()

	// A token of one server sees no picker.
	one := &page{t: t, ctx: newTab(t, p.ctx), name: "one-guild"}
	one.signIn(st.base, "One Server")
	if eval[bool](one, `!document.querySelector('[data-testid=guild-field]').hidden`) {
		t.Error("the server picker shows for a token of one server")
	}
}
