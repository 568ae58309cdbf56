package voice_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/voicebridge/bridge/voice"
)

// wireServer is a minimal scripted voice gateway that records what the
// client sends, written from the documented message shapes (Discord docs,
// topics/voice-connections), independent of the emulator.
type wireServer struct {
	t    *testing.T
	http *httptest.Server
	udp  *net.UDPConn
	wg   sync.WaitGroup

	mu         sync.Mutex
	identify   map[string]any
	selectP    map[string]any
	heartbeats []map[string]any
	speaking   []map[string]any
	query      string
	lastSeq    int
	gotBeat    chan struct{}
	gotSpeak   chan struct{}
	media      chan []byte
}

func startWireServer(t *testing.T) *wireServer {
	w := &wireServer{t: t, gotBeat: make(chan struct{}, 16), gotSpeak: make(chan struct{}, 16), media: make(chan []byte, 64)}
	var err error
	w.udp, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	w.wg.Add(1)
	go w.serveUDP()
	w.http = httptest.NewTLSServer(http.HandlerFunc(w.serveWS))
	t.Cleanup(func() {
		w.http.CloseClientConnections()
		w.http.Close()
		_ = w.udp.Close()
		w.wg.Wait()
	})
	return w
}

// serveUDP answers IP discovery (74 bytes, type 2) and forwards other
// datagrams to media.
func (w *wireServer) serveUDP() {
	defer w.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := w.udp.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if n == 74 && binary.BigEndian.Uint16(buf) == 1 {
			resp := make([]byte, 74)
			binary.BigEndian.PutUint16(resp, 2)
			binary.BigEndian.PutUint16(resp[2:], 70)
			copy(resp[4:8], buf[4:8])
			copy(resp[8:], "127.0.0.1")
			binary.BigEndian.PutUint16(resp[72:], uint16(from.Port))
			_, _ = w.udp.WriteToUDP(resp, from)
			continue
		}
		select {
		case w.media <- append([]byte(nil), buf[:n]...):
		default:
		}
	}
}

func (w *wireServer) endpoint() string { return strings.TrimPrefix(w.http.URL, "https://") }

func (w *wireServer) tlsConfig() *tls.Config {
	return w.http.Client().Transport.(*http.Transport).TLSClientConfig
}

func (w *wireServer) serveWS(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	w.query = r.URL.RawQuery
	w.mu.Unlock()
	up := websocket.Upgrader{}
	ws, err := up.Upgrade(rw, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	seq := 0
	send := func(op int, d any) {
		seq++
		w.mu.Lock()
		w.lastSeq = seq
		w.mu.Unlock()
		_ = ws.WriteJSON(map[string]any{"op": op, "d": d, "seq": seq})
	}
	read := func() map[string]any {
		var m map[string]any
		if err := ws.ReadJSON(&m); err != nil {
			return nil
		}
		return m
	}
	_ = ws.WriteJSON(map[string]any{"op": 8, "d": map[string]any{"heartbeat_interval": 40}})
	id := read()
	if id == nil {
		return
	}
	w.mu.Lock()
	w.identify = id
	w.mu.Unlock()
	send(2, map[string]any{"ssrc": 77, "ip": "127.0.0.1", "port": w.udp.LocalAddr().(*net.UDPAddr).Port,
		"modes": []string{"aead_xchacha20_poly1305_rtpsize", "aead_aes256_gcm_rtpsize"}, "heartbeat_interval": 1,
		"streams": []map[string]any{{"type": "video", "rid": "100", "ssrc": 78, "rtx_ssrc": 79, "quality": 100}}})
	// Undocumented and DAVE opcodes, and a binary frame, must be ignored.
	for op := 14; op <= 31; op++ {
		send(op, map[string]any{"whatever": op})
	}
	send(12, map[string]any{"something": "unexpected"})
	seq++
	_ = ws.WriteMessage(websocket.BinaryMessage, []byte{byte(seq >> 8), byte(seq), 25, 1, 2, 3})
	w.mu.Lock()
	w.lastSeq = seq
	w.mu.Unlock()
	for {
		m := read()
		if m == nil {
			return
		}
		switch int(m["op"].(float64)) {
		case 1:
			w.mu.Lock()
			w.selectP = m
			w.mu.Unlock()
			key := make([]int, 32)
			for i := range key {
				key[i] = i
			}
			send(4, map[string]any{"mode": "aead_aes256_gcm_rtpsize", "secret_key": key, "dave_protocol_version": 0})
		case 3:
			w.mu.Lock()
			w.heartbeats = append(w.heartbeats, m)
			w.mu.Unlock()
			_ = ws.WriteJSON(map[string]any{"op": 6, "d": map[string]any{"t": m["d"].(map[string]any)["t"]}})
			select {
			case w.gotBeat <- struct{}{}:
			default:
			}
		case 5:
			w.mu.Lock()
			w.speaking = append(w.speaking, m)
			w.mu.Unlock()
			w.gotSpeak <- struct{}{}
		}
	}
}

// fixedServer is a voice backend for the emulated main gateway that
// sends every join to one endpoint with the token "tok".
type fixedServer struct {
	endpoint  string
	mu        sync.Mutex
	sessionID string
}

func (f *fixedServer) Allocate(_, _, _, sessionID string) (string, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sessionID = sessionID
	return f.endpoint, "tok", nil
}

func (f *fixedServer) Renew(_, _, sessionID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sessionID = sessionID
}

func (f *fixedServer) Release(string, string)                  {}
func (f *fixedServer) MemberVoiceState(string, string, string) {}

func (f *fixedServer) session() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sessionID
}

// TestWireFormat checks the handshake and media on the wire with DAVE
// off: Identify offers max_dave_protocol_version 0 and DAVE opcodes, even
// binary ones, are ignored without error events.
func TestWireFormat(t *testing.T) {
	w := startWireServer(t)
	backend := &fixedServer{endpoint: w.endpoint()}
	c := voice.NewClient(voice.Options{Signaler: newMainGateway(t, backend, botID), UserID: botID,
		TLSConfig: w.tlsConfig(), Logger: testLogger(t), DisableDAVE: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := c.Join(ctx, guildID, channelID)
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	evs := watchEvents(conn)
	defer func() {
		if err := conn.Close(ctx); err != nil {
			t.Error(err)
		}
		evs.wait()
	}()
	// Two heartbeats after the handshake: the later one acknowledges the
	// last seq the server sent (the binary frame's, then Session
	// Description's).
	for range 2 {
		select {
		case <-w.gotBeat:
		case <-ctx.Done():
			t.Fatal("no heartbeat")
		}
	}
	if err := conn.SendOpus([]byte{0xfc, 0xff, 0xfe, 1}); err != nil {
		t.Fatal(err)
	}
	var pkt []byte
	select {
	case pkt = <-w.media:
	case <-ctx.Done():
		t.Fatal("no media packet")
	}
	for len(pkt) == 8 { // keepalives may come first
		pkt = <-w.media
	}
	// Speaking went out before the packet; the websocket may deliver it
	// after UDP did.
	select {
	case <-w.gotSpeak:
	case <-ctx.Done():
		t.Fatal("no Speaking")
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.query != "v=8" {
		t.Errorf("query %q, want v=8", w.query)
	}
	want := map[string]any{"server_id": guildID, "user_id": botID, "session_id": backend.session(), "token": "tok",
		"max_dave_protocol_version": 0.0}
	d := w.identify["d"].(map[string]any)
	for k, v := range want {
		if d[k] != v {
			t.Errorf("identify %s = %v, want %v", k, d[k], v)
		}
	}
	// Without Options.Video none of the undocumented video fields goes.
	for _, k := range []string{"video", "streams"} {
		if v, ok := d[k]; ok {
			t.Errorf("identify has %s = %v; Discord documents no such field", k, v)
		}
	}
	sp := w.selectP["d"].(map[string]any)
	data := sp["data"].(map[string]any)
	if sp["protocol"] != "udp" || data["mode"] != "aead_aes256_gcm_rtpsize" || data["address"] != "127.0.0.1" || data["port"].(float64) == 0 {
		t.Errorf("select protocol %v", sp)
	}
	if codecs, ok := sp["codecs"]; ok {
		t.Errorf("select protocol has codecs %v; Discord documents no such field", codecs)
	}
	if err := conn.SendVP8([]byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a}, true); !errors.Is(err, voice.ErrVideoOff) {
		t.Errorf("SendVP8 without Options.Video: %v, want ErrVideoOff", err)
	}
	last := w.heartbeats[len(w.heartbeats)-1]["d"].(map[string]any)
	if last["seq_ack"].(float64) != float64(w.lastSeq) || last["t"].(float64) == 0 {
		t.Errorf("heartbeat %v, want seq_ack %d", last, w.lastSeq)
	}
	if len(w.speaking) == 0 {
		t.Fatal("no Speaking before audio")
	}
	sd := w.speaking[0]["d"].(map[string]any)
	if sd["speaking"].(float64) != 1 || sd["ssrc"].(float64) != 77 || sd["delay"].(float64) != 0 {
		t.Errorf("speaking %v", sd)
	}
	// The audio packet is sealed with the session key: header in the
	// clear, PT 120, our SSRC, marker on the first packet.
	if pkt[0] != 0x80 || pkt[1] != 0x80|120 || binary.BigEndian.Uint32(pkt[8:]) != 77 {
		t.Errorf("first media packet header %x", pkt[:12])
	}
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	ci, _ := voice.NewCipher(voice.ModeAES256GCMRTPSize, key)
	if _, payload, err := ci.OpenRTP(nil, pkt); err != nil || string(payload) != "\xfc\xff\xfe\x01" {
		t.Errorf("open first packet: %x, %v", payload, err)
	}
	if n := evs.count(func(ev voice.Event) bool { _, ok := ev.(voice.Error); return ok }); n != 0 {
		t.Errorf("%d error events from ignored messages", n)
	}
}

// TestPacerTimeline checks the outgoing audio stream's RTP fields: the
// first packet marked, +1 seq and +960 samples per packet, five silence
// frames before going quiet, and after a pause the timestamp advanced by
// at least the pause (in 960-sample steps) with the marker set.
func TestPacerTimeline(t *testing.T) {
	w := startWireServer(t)
	c := voice.NewClient(voice.Options{Signaler: newMainGateway(t, &fixedServer{endpoint: w.endpoint()}, botID), UserID: botID,
		TLSConfig: w.tlsConfig(), Logger: testLogger(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := c.Join(ctx, guildID, channelID)
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	evs := watchEvents(conn)
	defer func() {
		if err := conn.Close(ctx); err != nil {
			t.Error(err)
		}
		evs.wait()
	}()
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	ci, _ := voice.NewCipher(voice.ModeAES256GCMRTPSize, key)
	type pkt struct {
		h       voice.Header
		silence bool
	}
	next := func() pkt {
		for {
			select {
			case b := <-w.media:
				if len(b) == 8 {
					continue // keepalive
				}
				h, payload, err := ci.OpenRTP(nil, b)
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				return pkt{h, string(payload) == "\xf8\xff\xfe"}
			case <-ctx.Done():
				t.Fatal("no packet")
			}
		}
	}
	talk := func(n int) {
		for i := 0; i < n; i++ {
			if err := conn.SendOpus([]byte{0xfc, byte(i), 0xfe}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var got []pkt
	talk(10)
	for len(got) < 15 {
		got = append(got, next())
	}
	const pause = 300 * time.Millisecond
	time.Sleep(pause) // the scenario: a pause in speech, not synchronisation
	talk(1)
	got = append(got, next())

	for i, p := range got {
		wantSilence := i >= 10 && i < 15
		if p.silence != wantSilence {
			t.Fatalf("packet %d silence=%v", i, p.silence)
		}
		if wantMarker := i == 0 || i == 15; p.h.Marker != wantMarker {
			t.Fatalf("packet %d marker=%v", i, p.h.Marker)
		}
		if i == 0 {
			continue
		}
		if p.h.Sequence != got[i-1].h.Sequence+1 {
			t.Fatalf("packet %d seq %d after %d", i, p.h.Sequence, got[i-1].h.Sequence)
		}
		dt := p.h.Timestamp - got[i-1].h.Timestamp
		if i < 15 && dt != 960 {
			t.Fatalf("packet %d timestamp step %d, want 960", i, dt)
		}
		if i == 15 && (dt%960 != 0 || dt < 960*uint32(pause/(20*time.Millisecond))) {
			t.Fatalf("after a %v pause the timestamp advanced %d samples", pause, dt)
		}
	}
}
