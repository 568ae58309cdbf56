package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/voicebridge/bridge/emulator/voiceemu"
	"github.com/voicebridge/bridge/media/mediatest"
)

// browser is a pion browser on the bridge's /api/ws: it signs in with a
// dev token, joins a room, sends a microphone and a camera, and counts
// the packets it receives (it keeps none, so it runs for hours flat).
type browser struct {
	name string
	ws   *websocket.Conn
	pc   *webrtc.PeerConnection
	wmu  sync.Mutex // serializes socket writes

	neg    chan struct{}      // a track was added: offer when stable
	sig    chan serverMessage // negotiation for the loop
	joined chan serverMessage // "joined" or "error" after join
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup

	audioPkts, videoPkts atomic.Int64
	tracks               atomic.Int64
	errMu                sync.Mutex
	err                  error // the first failure of its goroutines
}

// serverMessage is what the browser reads of the bridge's messages.
type serverMessage struct {
	Type      string                   `json:"type"`
	Event     string                   `json:"event"`
	Self      string                   `json:"self"`
	SDP       string                   `json:"sdp"`
	Candidate *webrtc.ICECandidateInit `json:"candidate"`
	Error     *struct{ Code, Message string }
}

// newBrowser signs in as name at base (http://host:port).
func newBrowser(ctx context.Context, base, name string) (*browser, error) {
	token, err := devToken(ctx, base, name)
	if err != nil {
		return nil, err
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.DialContext(ctx, "ws"+strings.TrimPrefix(base, "http")+"/api/ws", http.Header{"Origin": {base}})
	if err != nil {
		return nil, fmt.Errorf("browser %s: dial /api/ws: %w", name, err)
	}
	_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteJSON(map[string]string{"type": "auth", "token": token}); err != nil {
		ws.Close()
		return nil, err
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var ack serverMessage
	if err := ws.ReadJSON(&ack); err != nil || ack.Event != "auth.ok" {
		ws.Close()
		return nil, fmt.Errorf("browser %s: auth: %+v %v", name, ack, err)
	}
	_ = ws.SetReadDeadline(time.Time{})

	pc, err := newPeerConnection()
	if err != nil {
		ws.Close()
		return nil, err
	}
	b := &browser{name: name, ws: ws, pc: pc, neg: make(chan struct{}, 1), sig: make(chan serverMessage, 64),
		joined: make(chan serverMessage, 4), stop: make(chan struct{})}
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			_ = b.send(map[string]any{"type": "candidate", "candidate": c.ToJSON()})
		}
	})
	pc.OnTrack(b.onTrack)
	b.wg.Add(2)
	go b.read()
	go b.loop()
	return b, nil
}

// newPeerConnection gathers loopback UDP candidates only and speaks the
// RFC 6464 audio level the bridge picks its speaker by.
func newPeerConnection() (*webrtc.PeerConnection, error) {
	var se webrtc.SettingEngine
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.AudioLevelURI}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, err
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(ir))
	return api.NewPeerConnection(webrtc.Configuration{})
}

// devToken asks the embedded default's dev auth for a token.
func devToken(ctx context.Context, base, name string) (string, error) {
	var out struct{ Token string }
	if err := doJSON(ctx, http.MethodPost, base+"/api/dev/token", "", `{"name":"`+name+`"}`, &out); err != nil {
		return "", err
	}
	return out.Token, nil
}

// doJSON sends a request and decodes a 2xx JSON answer into out.
func doJSON(ctx context.Context, method, url, token, body string, out any) error {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return err
	}
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, url, res.Status, b)
	}
	return json.Unmarshal(b, out)
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

func (b *browser) send(v any) error {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	_ = b.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return b.ws.WriteJSON(v)
}

// fail records the first failure while the browser runs.
func (b *browser) fail(err error) {
	select {
	case <-b.stop:
		return
	default:
	}
	b.errMu.Lock()
	if b.err == nil {
		b.err = fmt.Errorf("browser %s: %w", b.name, err)
	}
	b.errMu.Unlock()
}

// Err is the first failure of the browser's goroutines, if any.
func (b *browser) Err() error {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	return b.err
}

func (b *browser) read() {
	defer b.wg.Done()
	for {
		_, raw, err := b.ws.ReadMessage()
		if err != nil {
			b.fail(fmt.Errorf("socket: %w", err))
			return
		}
		var m serverMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			b.fail(fmt.Errorf("bad message %.200s: %w", raw, err))
			continue
		}
		switch m.Type {
		case "offer", "answer", "candidate":
			select {
			case b.sig <- m:
			case <-b.stop:
				return
			}
		case "joined", "error":
			select {
			case b.joined <- m:
			default:
			}
		}
	}
}

// loop owns the PeerConnection's signaling: the polite peer
// (mediatest.Negotiator).
func (b *browser) loop() {
	defer b.wg.Done()
	neg := mediatest.NewNegotiator(b.pc, func(typ, sdp string) {
		_ = b.send(map[string]any{"type": typ, "sdp": sdp})
	})
	for {
		select {
		case <-b.stop:
			return
		case <-b.neg:
			if err := neg.Offer(); err != nil {
				b.fail(err)
			}
		case m := <-b.sig:
			var err error
			switch m.Type {
			case "offer":
				err = neg.OnOffer(m.SDP)
			case "answer":
				err = neg.OnAnswer(m.SDP)
			case "candidate":
				if m.Candidate != nil {
					_ = neg.OnCandidate(*m.Candidate)
				}
			}
			if err != nil {
				b.fail(err)
			}
			if neg.OfferDue() {
				kick(b.neg)
			}
		}
	}
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// onTrack counts a received track's packets.
func (b *browser) onTrack(remote *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	b.tracks.Add(1)
	count := &b.audioPkts
	if remote.Kind() == webrtc.RTPCodecTypeVideo {
		count = &b.videoPkts
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		buf := make([]byte, 1500)
		for {
			if _, _, err := remote.Read(buf); err != nil {
				return
			}
			count.Add(1)
		}
	}()
}

// join joins a room and waits for "joined".
func (b *browser) join(ctx context.Context, roomID string) error {
	if err := b.send(map[string]string{"type": "join", "roomId": roomID}); err != nil {
		return err
	}
	select {
	case m := <-b.joined:
		if m.Type == "error" {
			return fmt.Errorf("browser %s: join: %+v", b.name, m.Error)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("browser %s: no joined: %w", b.name, ctx.Err())
	}
}

// publish adds the microphone (speech, looped) and the camera (the test
// pattern at 15 fps, a keyframe on every PLI) and negotiates them.
func (b *browser) publish(speech [][]byte, pattern []voiceemu.VideoFrame) error {
	if _, err := mediatest.PublishOpus(b.pc, "mic-"+b.name, speech, 30, b.stop, &b.wg); err != nil {
		return err
	}
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam", "cam-"+b.name)
	if err != nil {
		return err
	}
	sender, err := b.pc.AddTrack(track)
	if err != nil {
		return err
	}
	kick(b.neg)
	pli := make(chan struct{}, 1)
	b.wg.Add(2)
	go func() {
		defer b.wg.Done()
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, pk := range pkts {
				switch pk.(type) {
				case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
					kick(pli)
				}
			}
		}
	}()
	go func() {
		defer b.wg.Done()
		tick := time.NewTicker(time.Second / 15)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-b.stop:
				return
			case <-tick.C:
			}
			select {
			case <-pli:
				for !pattern[i%len(pattern)].Keyframe {
					i++
				}
			default:
			}
			f := pattern[i%len(pattern)]
			if err := track.WriteSample(media.Sample{Data: f.Data, Duration: time.Second / 15}); err != nil && !errors.Is(err, io.ErrClosedPipe) {
				b.fail(err)
				return
			}
		}
	}()
	return nil
}

// close hangs up and waits for every goroutine of the browser.
func (b *browser) close() {
	b.once.Do(func() {
		close(b.stop)
		b.wmu.Lock()
		_ = b.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		b.wmu.Unlock()
		_ = b.ws.Close()
		_ = b.pc.Close()
		b.wg.Wait()
	})
}
