package main

import (
	"context"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/interceptor"
	"github.com/pion/opus"
	"github.com/pion/webrtc/v4"

	"github.com/voicebridge/bridge/media"
	"github.com/voicebridge/bridge/voice/voicetest"
)

// mediaTuning is fastTuning with WebRTC kept on loopback.
func mediaTuning() tuning {
	tune := fastTuning()
	tune.media = func(o *media.Options) {
		o.IncludeLoopback = true
		o.IPFilter = func(ip net.IP) bool { return ip.IsLoopback() }
		o.InterfaceFilter = func(name string) bool { return name == "lo" }
		o.NetworkTypes = []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
		o.ICEUDPListen = "127.0.0.1:0"
		o.Grace = 500 * time.Millisecond
	}
	return tune
}

// pionBrowser is a browser made of pion/webrtc: it signals over the real,
// authenticated /api/ws socket and answers the bridge's offers.
type pionBrowser struct {
	t      testing.TB
	ws     *websocket.Conn
	pc     *webrtc.PeerConnection
	wmu    sync.Mutex // serializes socket writes
	tracks chan *webrtc.TrackRemote
	done   chan struct{}
}

func newPionBrowser(t testing.TB, ta *testApp, name string) *pionBrowser {
	t.Helper()
	token := ta.devToken(t, name)
	url := "ws" + strings.TrimPrefix(ta.base, "http") + "/api/ws"
	ws, _, err := websocket.DefaultDialer.Dial(url, http.Header{"Origin": {ta.base}})
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteJSON(map[string]string{"type": "auth", "token": token}); err != nil {
		t.Fatal(err)
	}
	var ack hubEvent
	if err := ws.ReadJSON(&ack); err != nil || ack.Event != "auth.ok" {
		t.Fatalf("auth: %+v %v", ack, err)
	}

	var se webrtc.SettingEngine
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		t.Fatal(err)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(ir))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	b := &pionBrowser{t: t, ws: ws, pc: pc, tracks: make(chan *webrtc.TrackRemote, 16), done: make(chan struct{})}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			b.send(map[string]any{"type": "candidate", "candidate": c.ToJSON()})
		}
	})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { b.tracks <- tr })
	go b.read()
	t.Cleanup(b.close)
	return b
}

func (b *pionBrowser) send(v any) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	_ = b.ws.WriteJSON(v)
}

// read answers the bridge's offers and takes its candidates.
func (b *pionBrowser) read() {
	defer close(b.done)
	for {
		var m struct {
			Type      string                   `json:"type"`
			SDP       string                   `json:"sdp"`
			Candidate *webrtc.ICECandidateInit `json:"candidate"`
			Error     *struct{ Code, Message string }
		}
		if err := b.ws.ReadJSON(&m); err != nil {
			return
		}
		switch m.Type {
		case "offer":
			if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
				b.t.Errorf("browser: set offer: %v", err)
				continue
			}
			answer, err := b.pc.CreateAnswer(nil)
			if err == nil {
				err = b.pc.SetLocalDescription(answer)
			}
			if err != nil {
				b.t.Errorf("browser: answer: %v", err)
				continue
			}
			b.send(map[string]any{"type": "answer", "sdp": answer.SDP})
		case "candidate":
			if m.Candidate != nil {
				_ = b.pc.AddICECandidate(*m.Candidate)
			}
		case "error":
			b.t.Errorf("bridge answered an error: %+v", m.Error)
		}
	}
}

// close hangs up the socket first: the bridge's word on the peer
// connection ending afterwards is not the test's business.
func (b *pionBrowser) close() {
	_ = b.ws.Close()
	<-b.done
	_ = b.pc.Close()
}

// track waits for the track of a stream.
func (b *pionBrowser) track(ctx context.Context, streamID string) *webrtc.TrackRemote {
	b.t.Helper()
	for {
		select {
		case tr := <-b.tracks:
			if tr.StreamID() == streamID && tr.Kind() == webrtc.RTPCodecTypeAudio {
				return tr
			}
			go drainTrack(tr)
		case <-ctx.Done():
			b.t.Fatalf("no audio track of stream %s", streamID)
		}
	}
}

// drainTrack reads a track the test does not look at, as a browser would.
func drainTrack(tr *webrtc.TrackRemote) {
	for {
		if _, _, err := tr.ReadRTP(); err != nil {
			return
		}
	}
}

// dominantFrequency finds the strongest tone from 100 Hz to 2 kHz in 1 Hz
// steps (Goertzel), over mono samples at rate.
func dominantFrequency(pcm []float32, rate float64) float64 {
	best, bestPower := 0.0, 0.0
	for f := 100.0; f <= 2000; f++ {
		coeff := 2 * math.Cos(2*math.Pi*f/rate)
		var s1, s2 float64
		for _, x := range pcm {
			s0 := float64(x) + coeff*s1 - s2
			s2, s1 = s1, s0
		}
		if p := s1*s1 + s2*s2 - coeff*s1*s2; p > bestPower {
			best, bestPower = f, p
		}
	}
	return best
}

// TestDiscordToneReachesTwoPionBrowsers is the media issue's first check
// over the whole path: a simulated Discord member in the emulated Lobby
// plays a 440 Hz tone; the voice emulator relays it to the bridge's voice
// client; media forwards it; two pion browsers, signaled over /api/ws, each
// get a track labeled with that member, and its Opus decodes to 440 Hz.
func TestDiscordToneReachesTwoPionBrowsers(t *testing.T) {
	ta := startTestApp(t, mediaTuning(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ta.gw.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	const uid = "450000000000000001"
	o := ta.demo.Discord.Options()
	ta.demo.Discord.AddMember(uid, "Tone")
	member, err := ta.demo.Voice.AddMember(voicetest.MemberOptions{UserID: uid, GuildID: o.GuildID, ChannelID: ta.demo.Lobby.ID})
	if err != nil {
		t.Fatal(err)
	}
	if err := ta.demo.Discord.SetVoiceState(uid, ta.demo.Lobby.ID); err != nil {
		t.Fatal(err)
	}
	tone, err := voicetest.LoadOpusSample("tone-440")
	if err != nil {
		t.Fatal(err)
	}
	playCtx, stopPlaying := context.WithCancel(ctx)
	var playing sync.WaitGroup
	playing.Add(1)
	go func() {
		defer playing.Done()
		member.PlayOpus(playCtx, tone, true)
	}()
	defer func() { stopPlaying(); playing.Wait() }()

	browsers := []*pionBrowser{newPionBrowser(t, ta, "ann"), newPionBrowser(t, ta, "ben")}
	for _, b := range browsers {
		b.send(map[string]string{"type": "join", "roomId": ta.demo.Lobby.ID})
	}
	for i, b := range browsers {
		tr := b.track(ctx, "discord-"+uid)
		if tr.ID() != "discord-audio-"+uid {
			t.Fatalf("browser %d: track %q, want discord-audio-%s", i, tr.ID(), uid)
		}
		dec, err := opus.NewDecoderWithOutput(48000, 1)
		if err != nil {
			t.Fatal(err)
		}
		var pcm []float32
		buf := make([]float32, 5760)
		_ = tr.SetReadDeadline(time.Now().Add(15 * time.Second))
		for len(pcm) < 48000 { // one second of audio
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				t.Fatalf("browser %d: reading the member's track: %v", i, err)
			}
			n, err := dec.DecodeToFloat32(pkt.Payload, buf)
			if err != nil {
				t.Fatalf("browser %d: decode: %v", i, err)
			}
			pcm = append(pcm, buf[:n]...)
		}
		go drainTrack(tr)
		if f := dominantFrequency(pcm, 48000); math.Abs(f-440) > 440*0.02 {
			t.Fatalf("browser %d hears %v Hz, want 440 Hz within 2%%", i, f)
		} else {
			t.Logf("browser %d hears the member at %v Hz", i, f)
		}
	}
}
