//go:build !race

// The mix decodes, mixes and encodes Opus in real time: the race
// detector slows that DSP tenfold, so these end-to-end tests run in the
// suite's plain pass (scripts/test.sh); the mixer's concurrency is checked
// under -race by media's own tests.

package main

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/voicebridge/bridge/emulator"
	"github.com/voicebridge/bridge/emulator/voiceemu"
	"github.com/voicebridge/bridge/internal/audiotest"
)

// The mix toward Discord, end to end: pion browsers send libopus tones
// (as Chromium would), the bridge decodes, mixes and encodes them, and a
// simulated Discord member decodes what the bot sends with pion/opus and
// with libopus's opusdec.

// mixToneAmp keeps three tones' sum under the limiter's ceiling, so each
// keeps its level in the mix.
const mixToneAmp = 0.25

// browserBitrate is what Chromium sends for a microphone by default.
const browserBitrate = 32000

// opusSilence is the 3-byte Opus silence frame the voice client sends
// before going quiet.
var opusSilence = []byte{0xf8, 0xff, 0xfe}

// libopusTone is 3 s of a sine as libopus encodes it for a browser,
// taken from the middle of a longer encode: every test tone has whole
// periods in 3 s, so the loop the microphone plays has no seam.
func libopusTone(t testing.TB, hz float64) [][]byte {
	frames := audiotest.LibopusEncode(t, audiotest.Sine(hz, mixToneAmp, 4), browserBitrate)
	return frames[25:175]
}

// hannLevel is the level, in dB re full scale, of hz in pcm, through a
// Hann window (so a window that does not hold whole periods measures
// well).
func hannLevel(pcm []float32, hz float64) float64 {
	w := make([]float32, len(pcm))
	for i, x := range pcm {
		w[i] = x * float32(0.5-0.5*math.Cos(2*math.Pi*float64(i)/float64(len(pcm)-1)))
	}
	// The Hann window halves a sine's amplitude.
	return audiotest.ToneDB(w, hz) + 20*math.Log10(2)
}

// botAudio is what the member heard from the bot since from, without
// the silence frames.
func botAudio(m *voiceemu.Member, bot string, from int) [][]byte {
	var out [][]byte
	for _, f := range m.ReceivedOpus(bot)[from:] {
		if !bytes.Equal(f, opusSilence) {
			out = append(out, f)
		}
	}
	return out
}

// windowLevels decodes frames (silence frames included, so the timeline
// holds) with pion/opus and with opusdec, and returns the level of hz in
// each 100 ms window (5 frames) after the first, leaving out the windows
// that hold a silence frame: a slot the link's pacer filled because the
// mix was late (a starved CPU), not audio the mix made.
func windowLevels(t *testing.T, frames [][]byte, hzs []float64) (levels [2]map[float64][]float64, fills int) {
	t.Helper()
	pcm := [2][]float32{audiotest.DecodeOpus(t, frames), audiotest.LibopusDecode(t, frames)}
	for d := range levels {
		levels[d] = map[float64][]float64{}
	}
	for w := 5; w+5 <= len(frames); w += 5 {
		skip := false
		for _, f := range frames[w : w+5] {
			if bytes.Equal(f, opusSilence) {
				skip = true
			}
		}
		if skip {
			fills++
			continue
		}
		for d := range pcm {
			win := pcm[d][w*960 : (w+5)*960]
			for _, hz := range hzs {
				levels[d][hz] = append(levels[d][hz], hannLevel(win, hz))
			}
		}
	}
	return levels, fills
}

// recentLevel is the level of hz in the last 100 ms of frames (pion/opus
// only: it is polled), -inf with fewer than 10 frames.
func recentLevel(t *testing.T, frames [][]byte, hz float64) float64 {
	if len(frames) < 10 {
		return math.Inf(-1)
	}
	pcm := audiotest.DecodeOpus(t, frames[len(frames)-10:])
	return hannLevel(pcm[len(pcm)-4800:], hz)
}

// TestMixE2ETonesTogether: each of three browsers alone, then two and
// three at once: the member's decoded audio carries every tone in the
// same frames, each within 1 dB of its level alone, by both decoders.
func TestMixE2ETonesTogether(t *testing.T) {
	ta, ctx := startMediaE2E(t, mediaTuning())
	room := newVoiceRoom(t, ctx, ta, "mix-room")
	listener := addDiscordMember(t, ta, "460000000000000011", "Listener", room)
	bot := ta.gw.Status().BotUserID
	hzs := []float64{440, 1000, 2500}
	tones := make([][][]byte, len(hzs))
	for i, hz := range hzs {
		tones[i] = libopusTone(t, hz)
	}
	// A browser that stays keeps the bot in the channel between phases.
	keeper := newE2EBrowser(t, ta, "keeper", browserOptions{})
	keeper.join(ctx, room)

	// hear waits for 1.5 s of the bot's audio from now on.
	hear := func(what string) [][]byte {
		t.Helper()
		from := len(listener.ReceivedOpus(bot))
		waitUntil(t, ctx, what, func() bool { return len(listener.ReceivedOpus(bot))-from >= 75 })
		return listener.ReceivedOpus(bot)[from:]
	}
	decoders := []string{"pion/opus", "opusdec"}
	// Each tone alone.
	var alone [2]map[float64]float64
	for d := range alone {
		alone[d] = map[float64]float64{}
	}
	for i, hz := range hzs {
		b := newE2EBrowser(t, ta, "solo"+string(rune('a'+i)), browserOptions{})
		b.join(ctx, room)
		b.publishOpus(tones[i], loudLevel)
		lv, fills := windowLevels(t, hear("the member hears a lone tone"), []float64{hz})
		for d := range lv {
			if len(lv[d][hz]) < 5 {
				t.Fatalf("%v Hz alone: %d windows of 100 ms without a pacer's fill, want 5 at least", hz, len(lv[d][hz]))
			}
			alone[d][hz] = median(lv[d][hz])
		}
		t.Logf("%v Hz alone: %.2f dB (pion/opus), %.2f dB (opusdec); sent at %.2f dB; %d windows with a pacer's fill", hz, alone[0][hz], alone[1][hz], 20*math.Log10(mixToneAmp), fills)
		b.close()
		// The bot goes quiet before the next phase.
		waitQuiet(t, ctx, listener, bot)
	}
	// Two, then three at once.
	var together []*e2eBrowser
	for n := 1; n <= 3; n++ {
		b := newE2EBrowser(t, ta, "duo"+string(rune('a'+n)), browserOptions{})
		b.join(ctx, room)
		b.publishOpus(tones[n-1], loudLevel)
		together = append(together, b)
		if n < 2 {
			continue
		}
		// The newest browser's frames are in the mix once its tone is.
		seen := 0
		waitUntil(t, ctx, "the newest tone reaches the member", func() bool {
			got := listener.ReceivedOpus(bot)
			if len(got) < seen+5 { // look again every 100 ms of audio
				return false
			}
			seen = len(got)
			return recentLevel(t, got, hzs[n-1]) > alone[0][hzs[n-1]]-3
		})
		lv, fills := windowLevels(t, hear("the member hears the mix"), hzs[:n])
		for d := range lv {
			for _, hz := range hzs[:n] {
				ws := lv[d][hz]
				if len(ws) < 5 {
					t.Fatalf("%d browsers: %d windows without a pacer's fill", n, len(ws))
				}
				if diff := median(ws) - alone[d][hz]; math.Abs(diff) > 1 {
					t.Fatalf("%d browsers, %s: %v Hz at %.2f dB from its level alone; want within 1 dB", n, decoders[d], hz, diff)
				}
				// In the same frames: nine in ten 100 ms windows hold every
				// tone within 3 dB (the others are where the jitter buffer
				// bridged a frame that came late on a starved CPU).
				off := 0
				for _, l := range ws {
					if math.Abs(l-alone[d][hz]) > 3 {
						off++
					}
				}
				if off*10 > len(ws) {
					t.Fatalf("%d browsers, %s: %v Hz more than 3 dB from its level alone in %d of %d windows", n, decoders[d], hz, off, len(ws))
				}
			}
		}
		t.Logf("%d browsers at once: every tone within 1 dB of its level alone, and in nine of ten 100 ms windows, by pion/opus and opusdec (%d windows with a pacer's fill left out)", n, fills)
	}
	for _, b := range together {
		b.close()
	}
}

// waitQuiet waits until the bot has sent its five silence frames and
// nothing since.
func waitQuiet(t testing.TB, ctx context.Context, m *voiceemu.Member, bot string) {
	t.Helper()
	waitUntil(t, ctx, "the bot goes quiet", func() bool {
		got := m.ReceivedOpus(bot)
		n := len(got)
		if n < 5 {
			return false
		}
		for _, f := range got[n-5:] {
			if !bytes.Equal(f, opusSilence) {
				return false
			}
		}
		return true
	})
}

// TestMixE2ELossJitterSilence: one browser's input loses 10 % of its
// frames and holds each back up to 40 ms. The bot's stream has no gap
// (one packet per 20 ms slot, contiguous sequence numbers, timestamps
// 960 apart), and the concealed frames do not click. When the browser
// falls silent the bot sends five silence frames and then nothing; when
// it speaks again the bot does too.
func TestMixE2ELossJitterSilence(t *testing.T) {
	ta, ctx := startMediaE2E(t, mediaTuning())
	room := newVoiceRoom(t, ctx, ta, "lossy-room")
	listener := addDiscordMember(t, ta, "460000000000000021", "Listener", room)
	bot := ta.gw.Status().BotUserID
	b := newE2EBrowser(t, ta, "lossy", browserOptions{})
	b.join(ctx, room)
	mic := b.publishOpus(libopusTone(t, 440), loudLevel)
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(3, 4))
	lost := 0
	mic.SetImpairment(func(i int) (bool, time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if rng.Float64() < 0.10 {
			lost++
			return true, 0
		}
		return false, time.Duration(rng.Int64N(int64(40 * time.Millisecond)))
	})
	from := len(listener.ReceivedOpusRTP(bot))
	waitUntil(t, ctx, "the member hears 5 s of the bot", func() bool { return len(listener.ReceivedOpusRTP(bot))-from >= 250 })
	hdrs := listener.ReceivedOpusRTP(bot)[from:]
	frames := listener.ReceivedOpus(bot)[from:]
	for i := 1; i < len(hdrs); i++ {
		a, c := hdrs[i-1], hdrs[i]
		if c.Sequence != a.Sequence+1 || c.Timestamp-a.Timestamp != 960 {
			t.Fatalf("packet %d: sequence %d after %d, timestamp +%d: a gap in the bot's stream", i, c.Sequence, a.Sequence, c.Timestamp-a.Timestamp)
		}
	}
	// A slot the pacer had to fill (the mix more than 20 ms late, a
	// starved CPU) is a silence frame; the loss and jitter the jitter
	// buffer hides make none. On an idle machine there are none; a few
	// are tolerated where five test processes share two cores.
	var fills []int
	for i, f := range frames[:250] {
		if bytes.Equal(f, opusSilence) {
			fills = append(fills, i)
		}
	}
	if len(fills) > 5 {
		t.Fatalf("%d of 250 frames are the pacer's silence fills (at %v) while the browser talks", len(fills), fills)
	}
	mu.Lock()
	t.Logf("%d frames lost of the browser's, the bot's %d packets contiguous, %d pacer fills at %v", lost, len(hdrs), len(fills), fills)
	mu.Unlock()
	// Clicks: the tone's prediction residual, in dB re its amplitude,
	// by both decoders, after the decoders' first 100 ms.
	for d, pcm := range [][]float32{audiotest.DecodeOpus(t, frames[:250]), audiotest.LibopusDecode(t, frames[:250])} {
		click := residualDB(pcm[4800:], 440, mixToneAmp)
		if click > mixClickLimit {
			t.Fatalf("%s: a click at %.1f dB re the tone, want below %.0f dB", []string{"pion/opus", "opusdec"}[d], click, float64(mixClickLimit))
		}
		t.Logf("%s: worst residual %.1f dB re the tone", []string{"pion/opus", "opusdec"}[d], click)
	}

	// Silence: five silence frames, then nothing.
	botSession := func() voiceemu.SessionStats {
		t.Helper()
		st, ok := ta.demo.Voice.Stats().Session(bot)
		if !ok {
			t.Fatal("the emulator has no voice session of the bot")
		}
		return st
	}
	spoken := len(botSession().SpeakingAt)
	mic.SetImpairment(nil)
	mic.SetPaused(true)
	waitQuiet(t, ctx, listener, bot)
	quiet := len(listener.ReceivedOpus(bot))
	// 500 ms on, still nothing: watch the member's packets for that long.
	deadline := time.Now().Add(500 * time.Millisecond)
	waitUntil(t, ctx, "half a second passes", func() bool { return time.Now().After(deadline) })
	if got := len(listener.ReceivedOpus(bot)); got != quiet {
		t.Fatalf("%d packets after the five silence frames, want none", got-quiet)
	}
	// Speech again: the bot speaks again.
	mic.SetPaused(false)
	waitUntil(t, ctx, "the bot speaks again", func() bool { return len(botAudio(listener, bot, quiet)) >= 50 })
	audiotest.RequireTone(t, "the bot after the pause", botAudio(listener, bot, quiet), 440)
	// Speaking (op 5) where the emulator saw it in the bot's stream:
	// speaking 0 after the fifth silence frame, then no packet, then
	// speaking 1 before the new talk spurt's first frame. The op goes on
	// the websocket and the frames on UDP, read on two goroutines: the
	// bot sends speaking 0 a slot after the last silence frame, so that
	// frame is read first, but speaking 1 goes just before the spurt's
	// first frame, which can cross it (the emulator has been seen to read
	// that frame 80 µs before the op); the next frame is a slot later, so
	// no other can.
	st := botSession()
	ev := st.SpeakingAt[spoken:]
	if len(ev) != 2 || ev[0].Speaking != 0 || ev[1].Speaking != 1 {
		t.Fatalf("op 5 after the talk spurt: %+v, want speaking 0 then speaking 1", ev)
	}
	crossed := ev[1].OpusBefore - ev[0].OpusBefore // the spurt's first frame, read before speaking 1
	okFirst := crossed == 0 && ev[1].SilenceBefore == 5 || crossed == 1 && ev[1].SilenceBefore == 0
	if ev[0].SilenceBefore != 5 || !okFirst {
		t.Fatalf("op 5 in the bot's stream %+v: speaking 0 after %d silence frames in a row, %d packets before speaking 1; want speaking 0 after the fifth silence frame, then no packet, then speaking 1 before the talk spurt's first frame (only the frame of the op's own slot may cross it)", ev, ev[0].SilenceBefore, crossed)
	}
	if st.OpusIn < ev[1].OpusBefore+50 {
		t.Fatalf("%d packets after speaking 1, want the 50 the member heard", st.OpusIn-ev[1].OpusBefore)
	}
	t.Logf("op 5 in the bot's stream: %+v (%d frame crossed speaking 1 in flight)", ev, crossed)
}

// mixClickLimit is the stated bound on clicks in the mix of a lossy,
// jittery input, in dB re the tone's amplitude (second-order prediction
// residual: zero for a clean sine; a hard cut of the sine is 0 dB).
const mixClickLimit = -30

// residualDB is the largest x[n] - 2cos(w)x[n-1] + x[n-2] of pcm for a
// sine of hz Hz, averaged over 1 ms so the codec's own noise counts less
// than a step, in dB re amp.
func residualDB(pcm []float32, hz, amp float64) float64 {
	c := 2 * math.Cos(2*math.Pi*hz/audiotest.SampleRate)
	const win = 48
	worst, sum := 0.0, 0.0
	r := make([]float64, len(pcm))
	for n := 2; n < len(pcm); n++ {
		r[n] = math.Abs(float64(pcm[n]) - c*float64(pcm[n-1]) + float64(pcm[n-2]))
		sum += r[n]
		if n >= win+2 {
			sum -= r[n-win]
			worst = max(worst, sum/win)
		}
	}
	return 20 * math.Log10(worst/amp+1e-12)
}

// TestMixE2ENoEcho: Discord audio is never mixed back to Discord. A
// browser speaks; the echo member plays what it heard back into the
// channel, and the browsers hear it as the echo's track. Once the
// browser is silent the bot sends nothing, though the echo plays on.
func TestMixE2ENoEcho(t *testing.T) {
	ta, ctx := startMediaE2E(t, mediaTuning())
	room := ta.demo.Lobby.ID
	echo := ta.demo.Echo
	bot := ta.gw.Status().BotUserID
	ear := newE2EBrowser(t, ta, "ear", browserOptions{})
	ear.join(ctx, room)
	talker := newE2EBrowser(t, ta, "talker", browserOptions{})
	talker.join(ctx, room)
	mic := talker.publishOpus(libopusTone(t, 2500), loudLevel)
	waitUntil(t, ctx, "the echo member hears 1 s of the bot", func() bool { return len(botAudio(echo, bot, 0)) >= 50 })
	audiotest.RequireTone(t, "the echo member's audio from the bot", botAudio(echo, bot, 0), 2500)
	// Every frame of the bot's that is not silence mixed at least one of
	// the talker's packets, and each packet mixed is in the mix latency
	// histogram.
	heard := len(botAudio(echo, bot, 0))
	waitUntil(t, ctx, "the talker's mixed packets are in the mix latency histogram", func() bool {
		return histogramCount(scrape(t, ta), "bridge_mix_latency_seconds") >= uint64(heard)
	})
	mic.SetPaused(true)
	waitQuiet(t, ctx, echo, bot)
	quiet := len(echo.ReceivedOpus(bot))
	// The echo plays the tone back to the browsers now.
	track := ear.track(ctx, "discord-"+emulator.DemoEchoID, webrtc.RTPCodecTypeAudio)
	mark := len(ear.packets(track, 0))
	waitUntil(t, ctx, "the ear hears 1 s of the echo after the talker stopped", func() bool { return len(ear.packets(track, mark)) >= 50 })
	var echoed [][]byte
	for _, p := range ear.packets(track, mark) {
		echoed = append(echoed, p.Payload)
	}
	audiotest.RequireTone(t, "the echo as the browsers hear it", echoed, 2500)
	if got := len(echo.ReceivedOpus(bot)); got != quiet {
		t.Fatalf("the bot sent %d packets while only the echo played: Discord audio was mixed back", got-quiet)
	}
}

// TestMixE2ESpeechQuality: the speech clip from one browser through the
// mix (pion/opus decode, mix, media/opusenc at 64 kbit/s, the link) to
// the member, against the clip the browser sent, beside libopus's own
// round trip of that clip at the same bitrate: segmental SNR and
// log-spectral distance close to libopus's (the margins below); then
// the same with two other browsers 20 dB below the speaker.
func TestMixE2ESpeechQuality(t *testing.T) {
	clip, err := voiceemu.LoadOpusSample("speech")
	if err != nil {
		t.Fatal(err)
	}
	src := audiotest.LibopusDecode(t, clip) // what the browser sends, as PCM
	ref, _ := alignTo(src, audiotest.LibopusDecode(t, audiotest.LibopusEncode(t, src, 64000, "--hard-cbr")))

	ta, ctx := startMediaE2E(t, mediaTuning())
	room := newVoiceRoom(t, ctx, ta, "speech-room")
	listener := addDiscordMember(t, ta, "460000000000000031", "Listener", room)
	bot := ta.gw.Status().BotUserID
	b := newE2EBrowser(t, ta, "speaker", browserOptions{})
	b.join(ctx, room)
	b.publishOpus(clip, loudLevel)
	// Two loops of the clip, so one whole loop lies inside.
	from := len(listener.ReceivedOpus(bot))
	waitUntil(t, ctx, "the member hears the clip twice", func() bool { return len(listener.ReceivedOpus(bot))-from >= 2*len(clip)+25 })
	soloFrames := slices.Clone(listener.ReceivedOpus(bot)[from:])

	// The same speaker with two others 20 dB below (tones at 440 Hz and
	// 1 kHz): the speech against the clip, beside libopus's round trip of
	// the clip with the same two tones added.
	amp := rmsActive(src) * 0.1 * math.Sqrt2
	others := []float64{440, 1000}
	withOthers := slices.Clone(src)
	for i, hz := range others {
		o := newE2EBrowser(t, ta, "other"+string(rune('a'+i)), browserOptions{})
		o.join(ctx, room)
		o.publishOpus(audiotest.LibopusEncode(t, audiotest.Sine(hz, amp, 4), browserBitrate)[25:175], loudLevel)
		for k, x := range audiotest.Sine(hz, amp, float64(len(src))/audiotest.SampleRate) {
			withOthers[k] += x
		}
	}
	// The others are in the mix once 1 kHz is.
	seen := 0
	waitUntil(t, ctx, "the others reach the member", func() bool {
		got := listener.ReceivedOpus(bot)
		if len(got) < seen+5 { // look again every 100 ms of audio
			return false
		}
		seen = len(got)
		return recentLevel(t, got, 1000) > 20*math.Log10(amp)-3
	})
	from = len(listener.ReceivedOpus(bot))
	waitUntil(t, ctx, "the member hears the clip twice with the others", func() bool { return len(listener.ReceivedOpus(bot))-from >= 2*len(clip)+25 })
	withFrames := slices.Clone(listener.ReceivedOpus(bot)[from:])
	// Measured once everything is heard, so the analysis's CPU does not
	// slow the call.
	heard := audiotest.LibopusDecode(t, soloFrames)
	_, lag := alignTo(src, heard)

	// The jitter buffer may have merged or bridged a frame on the way (a
	// busy CPU), which shifts what follows by 20 ms: each half second is
	// lined up again, within 40 ms, before it is measured.
	mixSNR, mixLSD := segmentMetrics(src, heard, lag)
	refSNR, refLSD := segmentMetrics(src, ref, 0) // the same measure
	t.Logf("through the mix (clip found %d samples into what the member heard): segmental SNR %.2f dB, log-spectral distance %.2f dB; libopus 64 kbit/s: %.2f dB, %.2f dB", lag, mixSNR, mixLSD, refSNR, refLSD)
	if mixSNR < refSNR-speechSNRMargin {
		t.Errorf("segmental SNR %.2f dB through the mix, more than %.1f dB below libopus's %.2f dB", mixSNR, speechSNRMargin, refSNR)
	}
	if mixLSD > refLSD+speechLSDMargin {
		t.Errorf("log-spectral distance %.2f dB through the mix, more than %.2f dB above libopus's %.2f dB", mixLSD, speechLSDMargin, refLSD)
	}

	heard = audiotest.LibopusDecode(t, withFrames)
	_, lag = alignTo(src, heard)
	mixSNR, mixLSD = segmentMetrics(src, heard, lag)
	ref, _ = alignTo(src, audiotest.LibopusDecode(t, audiotest.LibopusEncode(t, withOthers, 64000, "--hard-cbr")))
	refSNR, refLSD = segmentMetrics(src, ref, 0)
	t.Logf("with two others at -20 dB (clip found %d samples in, of %d heard): segmental SNR %.2f dB, log-spectral distance %.2f dB; libopus 64 kbit/s of the same: %.2f dB, %.2f dB", lag, len(heard), mixSNR, mixLSD, refSNR, refLSD)
	if mixSNR < refSNR-speechSNRMargin {
		t.Errorf("with others: segmental SNR %.2f dB through the mix, more than %.1f dB below libopus's %.2f dB", mixSNR, speechSNRMargin, refSNR)
	}
	if mixLSD > refLSD+speechLSDMargin {
		t.Errorf("with others: log-spectral distance %.2f dB through the mix, more than %.2f dB above libopus's %.2f dB", mixLSD, speechLSDMargin, refLSD)
	}
}

// BenchmarkMixE2ELatency is the mix's latency to the wire: one browser
// talks in spurts of 1 s with 300 ms pauses; for every frame of a spurt,
// from the browser's write of its packet to the simulated Discord member
// receiving the bot's frame that carries it (the voice client's pacer
// included, with the emulator's relay and two loopback hops). The first
// frame of each spurt the member hears with the tone's level marks the
// browser's first; the frames after it follow one for one. Reports p50-ms
// and p99-ms; ns/op is the pacing. Run with -benchtime=10x (10 spurts).
func BenchmarkMixE2ELatency(b *testing.B) {
	ta := startTestApp(b, mediaTuning(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := ta.gw.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	room := newVoiceRoom(b, ctx, ta, "latency-room")
	listener := addDiscordMember(b, ta, "460000000000000031", "Listener", room)
	bot := ta.gw.Status().BotUserID
	type heard struct {
		at    time.Time
		frame []byte
	}
	var (
		mu    sync.Mutex
		sent  []time.Time // the browser's writes in the current spurt
		spurt []heard     // the bot's frames since the spurt began
		lat   []time.Duration
	)
	listener.OnOpus(func(from string, frame []byte) {
		if from != bot {
			return
		}
		mu.Lock()
		spurt = append(spurt, heard{time.Now(), bytes.Clone(frame)})
		mu.Unlock()
	})
	br := newE2EBrowser(b, ta, "talker", browserOptions{})
	br.join(ctx, room)
	mic := br.publishOpus(libopusTone(b, 440), loudLevel)
	mic.SetPaused(true)
	mic.SetImpairment(func(int) (bool, time.Duration) {
		mu.Lock()
		sent = append(sent, time.Now())
		mu.Unlock()
		return false, 0
	})
	b.ResetTimer()
	for range b.N {
		mu.Lock()
		sent, spurt = nil, nil
		mu.Unlock()
		mic.SetPaused(false)
		deadline := time.Now().Add(time.Second)
		waitUntil(b, ctx, "a spurt of 1 s", func() bool { return time.Now().After(deadline) })
		mic.SetPaused(true)
		waitQuiet(b, ctx, listener, bot)
		mu.Lock()
		frames := make([][]byte, len(spurt))
		for i, h := range spurt {
			frames[i] = h.frame
		}
		pcm := audiotest.DecodeOpus(b, frames)
		tone := false
		for i := range frames {
			if frameLevel(pcm[i*960:(i+1)*960]) > 20*math.Log10(mixToneAmp)-12 {
				tone = true
				break
			}
		}
		if !tone {
			mu.Unlock()
			b.Fatalf("no frame of the tone among the bot's %d", len(frames))
		}
		// The bot is quiet between spurts, so its first frame that is
		// not silence carries the browser's first packet. (Not the
		// first loud frame: the bridge's first spurt starts on a fresh
		// encoder, whose first frame with the mix's fade-in decodes
		// near -30 dB, and that paired every write of the spurt with
		// the frame after its own, 20 ms late.)
		onset := slices.IndexFunc(frames, func(f []byte) bool { return !bytes.Equal(f, opusSilence) })
		for j, at := range sent {
			if onset+j < len(spurt) && !bytes.Equal(spurt[onset+j].frame, opusSilence) {
				lat = append(lat, spurt[onset+j].at.Sub(at))
			}
		}
		mu.Unlock()
	}
	b.StopTimer()
	if len(lat) == 0 {
		b.Fatal("no latency measured")
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// frameLevel is the RMS level of pcm in dBFS.
func frameLevel(pcm []float32) float64 {
	var e float64
	for _, x := range pcm {
		e += float64(x) * float64(x)
	}
	return 10 * math.Log10(e/float64(len(pcm))+1e-20)
}
