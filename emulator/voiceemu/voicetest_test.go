package voiceemu

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/nacl/secretbox"

	"github.com/voicebridge/bridge/internal/audiotest"
	"github.com/voicebridge/bridge/internal/oggopus"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitFor = 5 * time.Second

// ---- a minimal raw voice client, written from the docs for the tests ----

type wsMsg struct {
	op     int
	d      json.RawMessage
	seq    *int
	binary []byte
}

type rawClient struct {
	t                                    testing.TB
	srv                                  *Server
	guild, channel, user, session, token string

	ws        *websocket.Conn
	writeMu   sync.Mutex // one websocket writer at a time
	in        chan wsMsg
	closeCode int // valid once in is closed
	lastSeq   int
	log       []wsMsg // every message expect consumed
	hello     wsMsg

	ready struct {
		SSRC    uint32   `json:"ssrc"`
		IP      string   `json:"ip"`
		Port    int      `json:"port"`
		Modes   []string `json:"modes"`
		Streams []struct {
			Type    string `json:"type"`
			RID     string `json:"rid"`
			SSRC    uint32 `json:"ssrc"`
			RTXSSRC uint32 `json:"rtx_ssrc"`
			Quality int    `json:"quality"`
			Active  bool   `json:"active"`
		} `json:"streams"`
	}
	udp         *net.UDPConn
	mode        string
	daveVersion int // from Session Description
	key         []byte
	seq         uint16
	ts          uint32
	counter     uint32
}

func startServer(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// dialClient allocates a session and opens the websocket (Hello read).
func dialClient(t testing.TB, s *Server, guild, channel, user string) *rawClient {
	t.Helper()
	c := &rawClient{t: t, srv: s, guild: guild, channel: channel, user: user, session: "sess-" + user, lastSeq: -1}
	endpoint, token, err := s.Allocate(guild, channel, user, c.session)
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	if endpoint != s.Endpoint() || strings.Contains(endpoint, "://") {
		t.Fatalf("endpoint %q, want %q without scheme", endpoint, s.Endpoint())
	}
	c.token = token
	c.dial()
	return c
}

func (c *rawClient) dial() {
	c.t.Helper()
	d := websocket.Dialer{TLSClientConfig: c.srv.TLSConfig(), HandshakeTimeout: waitFor}
	ws, _, err := d.Dial("wss://"+c.srv.Endpoint()+"/?v=8", nil)
	if err != nil {
		c.t.Fatalf("dial: %v", err)
	}
	c.ws = ws
	c.in = make(chan wsMsg, 256)
	in := c.in
	go func() {
		defer close(in)
		for {
			kind, data, err := ws.ReadMessage()
			if err != nil {
				// Without a Close frame the code is 1006 (RFC 6455
				// §7.1.5), whether the read saw EOF or a reset.
				c.closeCode = websocket.CloseAbnormalClosure
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					c.closeCode = ce.Code
				}
				return
			}
			if kind == websocket.BinaryMessage {
				in <- wsMsg{op: -1, binary: data}
				continue
			}
			var m struct {
				Op  int             `json:"op"`
				D   json.RawMessage `json:"d"`
				Seq *int            `json:"seq"`
			}
			if err := json.Unmarshal(data, &m); err != nil {
				c.t.Errorf("server sent invalid JSON %q: %v", data, err)
				return
			}
			in <- wsMsg{op: m.Op, d: m.D, seq: m.Seq}
		}
	}()
	c.t.Cleanup(c.closeWS)
	c.hello = c.expect(opHello)
}

// closeWS closes the socket and waits for the reader.
func (c *rawClient) closeWS() {
	_ = c.ws.Close()
	for range c.in {
	}
}

func (c *rawClient) send(op int, d any) {
	c.t.Helper()
	c.writeMu.Lock()
	err := c.ws.WriteJSON(map[string]any{"op": op, "d": d})
	c.writeMu.Unlock()
	if err != nil {
		c.t.Fatalf("write op %d: %v", op, err)
	}
}

// expect returns the next message with op, skipping others.
func (c *rawClient) expect(op int) wsMsg {
	c.t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case m, ok := <-c.in:
			if !ok {
				c.t.Fatalf("socket closed (code %d) while waiting for op %d", c.closeCode, op)
			}
			if m.seq != nil {
				c.lastSeq = *m.seq
			}
			c.log = append(c.log, m)
			if m.op == op {
				return m
			}
		case <-timeout:
			c.t.Fatalf("no op %d within %v", op, waitFor)
		}
	}
}

// expectClose waits for the socket to close and checks the code.
func (c *rawClient) expectClose(code int) {
	c.t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case _, ok := <-c.in:
			if !ok {
				if c.closeCode != code {
					c.t.Fatalf("closed with %d, want %d", c.closeCode, code)
				}
				return
			}
		case <-timeout:
			c.t.Fatalf("socket not closed with %d within %v", code, waitFor)
		}
	}
}

func (c *rawClient) identify(maxDAVE int) {
	c.t.Helper()
	c.send(opIdentify, map[string]any{
		"server_id": c.guild, "user_id": c.user, "session_id": c.session, "token": c.token,
		"max_dave_protocol_version": maxDAVE,
	})
	m := c.expect(opReady)
	if err := json.Unmarshal(m.d, &c.ready); err != nil {
		c.t.Fatalf("Ready: %v", err)
	}
}

// discover runs IP discovery on a fresh UDP socket and returns the
// address the server saw.
func (c *rawClient) discover() (string, int) {
	c.t.Helper()
	udp, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(c.ready.IP), Port: c.ready.Port})
	if err != nil {
		c.t.Fatalf("udp: %v", err)
	}
	c.udp = udp
	c.t.Cleanup(func() { _ = udp.Close() })
	req := make([]byte, 74)
	binary.BigEndian.PutUint16(req, 1)
	binary.BigEndian.PutUint16(req[2:], 70)
	binary.BigEndian.PutUint32(req[4:], c.ready.SSRC)
	if _, err := udp.Write(req); err != nil {
		c.t.Fatalf("discovery write: %v", err)
	}
	resp := c.readUDP()
	if len(resp) != 74 || binary.BigEndian.Uint16(resp) != 2 || binary.BigEndian.Uint16(resp[2:]) != 70 ||
		binary.BigEndian.Uint32(resp[4:]) != c.ready.SSRC {
		c.t.Fatalf("discovery response %x", resp)
	}
	addr := string(resp[8 : bytes.IndexByte(resp[8:72], 0)+8])
	return addr, int(binary.BigEndian.Uint16(resp[72:]))
}

func (c *rawClient) readUDP() []byte {
	c.t.Helper()
	buf := make([]byte, 2048)
	_ = c.udp.SetReadDeadline(time.Now().Add(waitFor))
	n, err := c.udp.Read(buf)
	if err != nil {
		c.t.Fatalf("udp read: %v", err)
	}
	return buf[:n]
}

func (c *rawClient) selectProtocol(mode string) {
	c.t.Helper()
	c.selectProtocolQuiet(mode)
	c.send(opSpeaking, map[string]any{"speaking": 1, "delay": 0, "ssrc": c.ready.SSRC})
}

// selectProtocolQuiet is selectProtocol without the Speaking (op 5) that
// must precede media.
func (c *rawClient) selectProtocolQuiet(mode string) {
	c.t.Helper()
	c.selectProtocolCodecs(mode, []map[string]any{
		{"name": "opus", "type": "audio", "priority": 1000, "payload_type": 120},
		{"name": "VP8", "type": "video", "priority": 1000, "payload_type": 105, "rtx_payload_type": 106},
	})
}

// selectProtocolCodecs is Select Protocol declaring codecs (nil: none, as
// a client without video sends it).
func (c *rawClient) selectProtocolCodecs(mode string, codecs []map[string]any) {
	c.t.Helper()
	addr, port := c.discover()
	sp := map[string]any{"protocol": "udp", "data": map[string]any{"address": addr, "port": port, "mode": mode}}
	if codecs != nil {
		sp["codecs"] = codecs
	}
	c.send(opSelectProtocol, sp)
	m := c.expect(opSessionDescription)
	var sd struct {
		Mode        string `json:"mode"`
		SecretKey   []int  `json:"secret_key"`
		DAVEVersion *int   `json:"dave_protocol_version"`
		AudioCodec  string `json:"audio_codec"`
		VideoCodec  string `json:"video_codec"`
	}
	if err := json.Unmarshal(m.d, &sd); err != nil {
		c.t.Fatalf("Session Description: %v", err)
	}
	if sd.Mode != mode || len(sd.SecretKey) != 32 || sd.DAVEVersion == nil ||
		sd.AudioCodec != "opus" || sd.VideoCodec != "VP8" {
		c.t.Fatalf("Session Description %s", m.d)
	}
	c.mode = mode
	c.daveVersion = *sd.DAVEVersion
	c.key = make([]byte, 32)
	for i, v := range sd.SecretKey {
		c.key[i] = byte(v)
	}
}

// connect runs the whole handshake of the docs for a client without
// DAVE, which the server must serve at protocol version 0.
func connect(t testing.TB, s *Server, guild, channel, user, mode string) *rawClient {
	t.Helper()
	c := dialClient(t, s, guild, channel, user)
	c.identify(0)
	c.selectProtocol(mode)
	if c.daveVersion != 0 {
		t.Fatalf("client without DAVE got dave_protocol_version %d", c.daveVersion)
	}
	return c
}

// sendRTP seals and sends one RTP packet from the client.
func (c *rawClient) sendRTP(pt uint8, marker bool, ssrc uint32, payload []byte) {
	c.t.Helper()
	c.seq++
	c.counter++
	h := make([]byte, 12)
	h[0] = 0x80
	h[1] = pt
	if marker {
		h[1] |= 0x80
	}
	binary.BigEndian.PutUint16(h[2:], c.seq)
	binary.BigEndian.PutUint32(h[4:], c.ts)
	binary.BigEndian.PutUint32(h[8:], ssrc)
	c.ts += 960
	if _, err := c.udp.Write(testSeal(c.t, c.mode, c.key, c.counter, h, payload)); err != nil {
		c.t.Fatalf("udp write: %v", err)
	}
}

// recvPacket is a datagram the client received and decrypted.
type recvPacket struct {
	rtcp     bool
	pt       uint8 // RTP payload type, or RTCP packet type
	marker   bool
	seq      uint16
	ts, ssrc uint32
	payload  []byte
}

func (c *rawClient) recv() recvPacket {
	c.t.Helper()
	for {
		pkt := c.readUDP()
		if len(pkt) < 12 {
			continue // keepalive echo
		}
		p, err := testOpen(c.mode, c.key, pkt)
		if err != nil {
			c.t.Fatalf("client cannot open a %d-byte datagram in %s: %v", len(pkt), c.mode, err)
		}
		return p
	}
}

// ---- transport crypto written from the docs, separately from crypto.go ----

func testSeal(t testing.TB, mode string, key []byte, counter uint32, header, payload []byte) []byte {
	out := append([]byte(nil), header...)
	var nonce [24]byte
	switch mode {
	case ModeAES256GCM, ModeXChaCha20Poly1305:
		binary.BigEndian.PutUint32(nonce[:], counter)
		var aead cipher.AEAD
		if mode == ModeAES256GCM {
			block, _ := aes.NewCipher(key)
			aead, _ = cipher.NewGCM(block)
		} else {
			aead, _ = chacha20poly1305.NewX(key)
		}
		out = aead.Seal(out, nonce[:aead.NonceSize()], payload, header)
		return append(out, nonce[:4]...)
	case ModeXSalsa20Poly1305:
		copy(nonce[:], header) // 12-byte RTP header, or the 8 clear bytes of RTCP
		return secretbox.Seal(out, payload, &nonce, (*[32]byte)(key))
	case ModeXSalsa20Suffix:
		binary.BigEndian.PutUint32(nonce[7:], counter*7919)
		out = secretbox.Seal(out, payload, &nonce, (*[32]byte)(key))
		return append(out, nonce[:]...)
	case ModeXSalsa20Lite:
		binary.BigEndian.PutUint32(nonce[:], counter)
		out = secretbox.Seal(out, payload, &nonce, (*[32]byte)(key))
		return append(out, nonce[:4]...)
	}
	t.Fatalf("mode %q", mode)
	return nil
}

func testOpen(mode string, key, pkt []byte) (recvPacket, error) {
	var p recvPacket
	rtcp := pkt[1] >= 200 && pkt[1] <= 204
	clear := 12
	if rtcp {
		clear = 8
	} else if mode == ModeAES256GCM || mode == ModeXChaCha20Poly1305 {
		clear += 4 * int(pkt[0]&0x0f)
		if pkt[0]&0x10 != 0 {
			clear += 4
		}
	}
	var nonce [24]byte
	var plain []byte
	var ok bool
	switch mode {
	case ModeAES256GCM, ModeXChaCha20Poly1305:
		var aead cipher.AEAD
		if mode == ModeAES256GCM {
			block, _ := aes.NewCipher(key)
			aead, _ = cipher.NewGCM(block)
		} else {
			aead, _ = chacha20poly1305.NewX(key)
		}
		copy(nonce[:], pkt[len(pkt)-4:])
		var err error
		plain, err = aead.Open(nil, nonce[:aead.NonceSize()], pkt[clear:len(pkt)-4], pkt[:clear])
		ok = err == nil
	case ModeXSalsa20Poly1305:
		copy(nonce[:], pkt[:clear])
		plain, ok = secretbox.Open(nil, pkt[clear:], &nonce, (*[32]byte)(key))
	case ModeXSalsa20Suffix:
		copy(nonce[:], pkt[len(pkt)-24:])
		plain, ok = secretbox.Open(nil, pkt[clear:len(pkt)-24], &nonce, (*[32]byte)(key))
	case ModeXSalsa20Lite:
		copy(nonce[:], pkt[len(pkt)-4:])
		plain, ok = secretbox.Open(nil, pkt[clear:len(pkt)-4], &nonce, (*[32]byte)(key))
	}
	if !ok {
		return p, errors.New("authentication failed")
	}
	if rtcp {
		p.rtcp, p.pt, p.ssrc = true, pkt[1], binary.BigEndian.Uint32(pkt[4:])
		p.payload = plain
		return p, nil
	}
	p.marker, p.pt = pkt[1]&0x80 != 0, pkt[1]&0x7f
	p.seq, p.ts, p.ssrc = binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:]), binary.BigEndian.Uint32(pkt[8:])
	if pkt[0]&0x10 != 0 {
		// Extension body: in the rtpsize modes the preamble is clear and
		// the body leads the plaintext; in the legacy modes both are in
		// the plaintext.
		if mode == ModeAES256GCM || mode == ModeXChaCha20Poly1305 {
			words := int(binary.BigEndian.Uint16(pkt[clear-2:]))
			plain = plain[4*words:]
		} else {
			words := int(binary.BigEndian.Uint16(plain[2:]))
			plain = plain[4+4*words:]
		}
	}
	p.payload = plain
	return p, nil
}

// ---- tests ----

func TestHandshakeShapes(t *testing.T) {
	s := startServer(t, Options{HeartbeatInterval: 5 * time.Second})
	c := dialClient(t, s, "101", "202", "1014")
	// A float interval and the version, as Discord sends them: a client
	// that decodes the interval as an integer fails here as on Discord.
	var hello struct {
		Interval float64 `json:"heartbeat_interval"`
		V        int     `json:"v"`
	}
	if err := json.Unmarshal(c.hello.d, &hello); err != nil || hello.Interval != 5000 || hello.V != 8 || !strings.Contains(string(c.hello.d), "5000.00") {
		t.Fatalf("Hello %s: %v", c.hello.d, err)
	}
	c.identify(1)
	if c.lastSeq < 0 {
		t.Fatal("Ready carries no seq")
	}
	r := c.ready
	if r.SSRC == 0 || r.IP != "127.0.0.1" || r.Port != s.udpPort || !slices.Equal(r.Modes, defaultModes) {
		t.Fatalf("Ready %+v", r)
	}
	if len(r.Streams) != 1 || r.Streams[0].Type != "video" || r.Streams[0].RID != "100" || r.Streams[0].SSRC == 0 ||
		r.Streams[0].RTXSSRC == 0 || r.Streams[0].Quality != 100 || r.Streams[0].Active {
		t.Fatalf("Ready streams %+v", r.Streams)
	}
	addr, port := c.discover()
	if addr != "127.0.0.1" || port != c.udp.LocalAddr().(*net.UDPAddr).Port {
		t.Fatalf("discovered %s:%d, socket is %s", addr, port, c.udp.LocalAddr())
	}
	c.send(opHeartbeat, map[string]any{"t": 1501184119561, "seq_ack": c.lastSeq})
	ack := c.expect(opHeartbeatACK)
	if string(ack.d) != `{"t":1501184119561}` {
		t.Fatalf("Heartbeat ACK %s", ack.d)
	}
	before := c.lastSeq
	c.send(opSelectProtocol, map[string]any{"protocol": "udp", "data": map[string]any{"address": addr, "port": port, "mode": ModeXChaCha20Poly1305}})
	c.expect(opSessionDescription)
	if c.lastSeq != before+1 {
		t.Fatalf("Session Description seq %d after %d", c.lastSeq, before)
	}
	info := s.Sessions()
	if len(info) != 1 || info[0].UserID != "1014" || info[0].Mode != ModeXChaCha20Poly1305 || info[0].SSRC != r.SSRC ||
		info[0].VideoSSRC != r.Streams[0].SSRC || !info[0].Connected {
		t.Fatalf("Sessions %+v", info)
	}
	if st, _ := s.Stats().Session("1014"); st.Discoveries != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestGatewayRejects(t *testing.T) {
	s := startServer(t, Options{RequireDAVE: true})
	cases := []struct {
		name string
		run  func(c *rawClient)
		code int
	}{
		{"unknown token", func(c *rawClient) { c.token = "nope"; c.identifyNoReady(1) }, 4004},
		{"wrong user", func(c *rawClient) { c.user = "other"; c.identifyNoReady(1) }, 4004},
		{"wrong guild", func(c *rawClient) { c.guild = "other"; c.identifyNoReady(1) }, 4004},
		{"wrong session id", func(c *rawClient) { c.session = "stale"; c.identifyNoReady(1) }, 4006},
		{"released token", func(c *rawClient) { s.Release(c.guild, c.user); c.identifyNoReady(1) }, 4006},
		{"no DAVE", func(c *rawClient) { c.identifyNoReady(0) }, 4017},
		{"before identify", func(c *rawClient) { c.send(opSpeaking, map[string]any{"speaking": 1}) }, 4003},
		{"bad json", func(c *rawClient) { _ = c.ws.WriteMessage(websocket.TextMessage, []byte("{op:")) }, 4002},
		{"identify twice", func(c *rawClient) { c.identify(1); c.identifyNoReady(1) }, 4005},
		{"mode not offered", func(c *rawClient) {
			c.identify(1)
			c.send(opSelectProtocol, map[string]any{"protocol": "udp", "data": map[string]any{"address": "127.0.0.1", "port": 9, "mode": ModeXSalsa20Poly1305}})
		}, 4016},
		{"unknown protocol", func(c *rawClient) {
			c.identify(1)
			c.send(opSelectProtocol, map[string]any{"protocol": "tcp", "data": map[string]any{"mode": ModeAES256GCM}})
		}, 4012},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialClient(t, s, "100", "200", fmt.Sprint(2000+i))
			tc.run(c)
			c.expectClose(tc.code)
		})
	}
	t.Run("DAVE client accepted", func(t *testing.T) {
		c := dialClient(t, s, "100", "200", "1011")
		c.identify(1)
	})
	t.Run("unknown op ignored", func(t *testing.T) {
		c := dialClient(t, s, "100", "200", "1012")
		c.identify(1)
		c.send(18, map[string]any{"any": "thing"})
		c.send(opHeartbeat, map[string]any{"t": 7, "seq_ack": c.lastSeq})
		c.expect(opHeartbeatACK)
	})
}

func (c *rawClient) identifyNoReady(maxDAVE int) {
	c.send(opIdentify, map[string]any{
		"server_id": c.guild, "user_id": c.user, "session_id": c.session, "token": c.token,
		"max_dave_protocol_version": maxDAVE,
	})
}

func TestVersionRequired(t *testing.T) {
	s := startServer(t, Options{})
	d := websocket.Dialer{TLSClientConfig: s.TLSConfig(), HandshakeTimeout: waitFor}
	_, resp, err := d.Dial("wss://"+s.Endpoint()+"/?v=3", nil)
	if err == nil || resp == nil || resp.StatusCode != 400 {
		t.Fatalf("v=3 accepted: %v", err)
	}
	_ = resp.Body.Close()
}

func TestHeartbeatAckToggle(t *testing.T) {
	s := startServer(t, Options{})
	c := dialClient(t, s, "100", "200", "1001")
	c.identify(1)
	s.SetHeartbeatACK(false)
	c.send(opHeartbeat, map[string]any{"t": 1, "seq_ack": c.lastSeq})
	// The server handles a socket's messages in order: once Session
	// Description arrives, the first heartbeat has been handled.
	addr, port := c.discover()
	c.send(opSelectProtocol, map[string]any{"protocol": "udp", "data": map[string]any{"address": addr, "port": port, "mode": ModeAES256GCM}})
	c.expect(opSessionDescription)
	s.SetHeartbeatACK(true)
	c.send(opHeartbeat, map[string]any{"t": 2, "seq_ack": c.lastSeq})
	if ack := c.expect(opHeartbeatACK); string(ack.d) != `{"t":2}` {
		t.Fatalf("first ACK is %s, want the one for t=2", ack.d)
	}
}

func TestHeartbeatTimeout(t *testing.T) {
	s := startServer(t, Options{HeartbeatInterval: 40 * time.Millisecond, HeartbeatTimeout: 120 * time.Millisecond})
	peer := dialClient(t, s, "100", "200", "1005")
	peer.identify(1)
	// The peer heartbeats; the other client stays silent.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tk.C:
				_ = peer.ws.WriteJSON(map[string]any{"op": opHeartbeat, "d": map[string]any{"t": i}})
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	silent := dialClient(t, s, "100", "200", "1013")
	silent.identify(1)
	silent.expectClose(4009)
	m := peer.expect(opClientDisconnect)
	if string(m.d) != `{"user_id":"1013"}` {
		t.Fatalf("op 13 %s", m.d)
	}
	if info := s.Sessions(); len(info) != 1 || info[0].UserID != "1005" {
		t.Fatalf("sessions after timeout: %+v", info)
	}
}

func TestResumeReplaysMissedMessages(t *testing.T) {
	s := startServer(t, Options{})
	c := connect(t, s, "100", "200", "1001", ModeAES256GCM)
	acked := c.lastSeq
	s.DropSockets()
	c.expectClose(websocket.CloseAbnormalClosure)
	waitUntil(t, func() bool { info := s.Sessions(); return len(info) == 1 && !info[0].Connected })
	// Messages produced while the client is away are buffered.
	m, err := s.AddMember(MemberOptions{UserID: "1002", GuildID: "100", ChannelID: "200"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Leave()
	c.dial()
	c.send(opResume, map[string]any{"server_id": c.guild, "session_id": c.session, "token": c.token, "seq_ack": acked})
	c.expect(opResumed)
	var ops []int
	for _, want := range []int{opClientsConnect, opSpeaking, opVideo} {
		m := c.expect(want)
		ops = append(ops, m.op)
		if m.seq == nil || *m.seq != acked+len(ops) {
			t.Fatalf("replayed op %d has seq %v, want %d", m.op, m.seq, acked+len(ops))
		}
	}
	// The resumed session still carries media.
	if err := m.SendOpus([]byte{0xfc, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if p := c.recv(); p.rtcp || !bytes.Equal(p.payload, []byte{0xfc, 1, 2, 3}) {
		t.Fatalf("after resume got %+v", p)
	}
	if info := s.Sessions(); !slices.ContainsFunc(info, func(i SessionInfo) bool { return i.UserID == "1001" && i.Connected }) {
		t.Fatalf("not connected after resume: %+v", info)
	}
}

func TestResumeRefused(t *testing.T) {
	s := startServer(t, Options{ResumeBuffer: 2})
	c := connect(t, s, "100", "200", "1001", ModeAES256GCM)
	acked := c.lastSeq
	t.Run("wrong token", func(t *testing.T) {
		c2 := &rawClient{t: t, srv: s}
		c2.dial()
		c2.send(opResume, map[string]any{"server_id": "100", "session_id": c.session, "token": "bad", "seq_ack": acked})
		c2.expectClose(4006)
	})
	s.DropSockets()
	c.expectClose(websocket.CloseAbnormalClosure)
	m, err := s.AddMember(MemberOptions{UserID: "1002", GuildID: "100", ChannelID: "200"}) // 3 messages > buffer of 2
	if err != nil {
		t.Fatal(err)
	}
	defer m.Leave()
	c.dial()
	c.send(opResume, map[string]any{"server_id": c.guild, "session_id": c.session, "token": c.token, "seq_ack": acked})
	c.expectClose(4006)
	if len(slices.DeleteFunc(s.Sessions(), func(i SessionInfo) bool { return i.Simulated })) != 0 {
		t.Fatal("session survived a failed resume")
	}
}

func TestCloseSessionResumable(t *testing.T) {
	s := startServer(t, Options{})
	c := connect(t, s, "100", "200", "1001", ModeAES256GCM)
	s.CloseSession("1001", 4015)
	c.expectClose(4015)
	acked := c.lastSeq
	c.dial()
	c.send(opResume, map[string]any{"server_id": c.guild, "session_id": c.session, "token": c.token, "seq_ack": acked})
	c.expect(opResumed)
	s.CloseSession("1001", 4014)
	c.expectClose(4014)
	if len(s.Sessions()) != 0 {
		t.Fatal("session survived 4014")
	}
}

func TestMembershipEvents(t *testing.T) {
	s := startServer(t, Options{})
	a := connect(t, s, "100", "200", "1003", ModeAES256GCM)
	m, err := s.AddMember(MemberOptions{UserID: "1002", GuildID: "100", ChannelID: "200"})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []int{opClientsConnect, opSpeaking, opVideo} {
		msg := a.expect(op)
		if !strings.Contains(string(msg.d), `"1002"`) {
			t.Fatalf("op %d %s does not name the member", op, msg.d)
		}
	}
	b := connect(t, s, "100", "200", "1004", ModeXChaCha20Poly1305)
	if msg := a.expect(opClientsConnect); string(msg.d) != `{"user_ids":["1004"]}` {
		t.Fatalf("alice got op 11 %s", msg.d)
	}
	if msg := a.expect(opSpeaking); !strings.Contains(string(msg.d), `"1004"`) {
		t.Fatalf("alice got op 5 %s", msg.d)
	}
	// bob learnt who was there when he joined (sent right after Ready).
	var joined struct {
		UserIDs []string `json:"user_ids"`
	}
	if err := json.Unmarshal(b.seen(opClientsConnect).d, &joined); err != nil {
		t.Fatal(err)
	}
	slices.Sort(joined.UserIDs)
	if !slices.Equal(joined.UserIDs, []string{"1002", "1003"}) {
		t.Fatalf("bob's op 11: %v", joined.UserIDs)
	}
	// bob's video announcement reaches alice with his SSRCs.
	b.send(opVideo, map[string]any{"audio_ssrc": b.ready.SSRC, "video_ssrc": b.ready.Streams[0].SSRC,
		"rtx_ssrc": b.ready.Streams[0].RTXSSRC, "streams": []map[string]any{{"type": "video", "rid": "100", "active": true}}})
	var video struct {
		UserID    string `json:"user_id"`
		VideoSSRC uint32 `json:"video_ssrc"`
		Streams   []struct {
			SSRC   uint32 `json:"ssrc"`
			Active bool   `json:"active"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(a.expect(opVideo).d, &video); err != nil {
		t.Fatal(err)
	}
	if video.UserID != "1004" || video.VideoSSRC != b.ready.Streams[0].SSRC || len(video.Streams) != 1 ||
		video.Streams[0].SSRC != b.ready.Streams[0].SSRC || !video.Streams[0].Active {
		t.Fatalf("alice got op 12 %+v", video)
	}
	m.Leave()
	for _, c := range []*rawClient{a, b} {
		if msg := c.expect(opClientDisconnect); string(msg.d) != `{"user_id":"1002"}` {
			t.Fatalf("op 13 %s", msg.d)
		}
	}
	s.MemberVoiceState("100", "1004", "201")
	b.expectClose(4014)
	if msg := a.expect(opClientDisconnect); string(msg.d) != `{"user_id":"1004"}` {
		t.Fatalf("op 13 %s", msg.d)
	}
	s.Release("100", "1003")
	a.expectClose(4014)
}

// seen returns the first message with op that expect has consumed.
func (c *rawClient) seen(op int) wsMsg {
	c.t.Helper()
	for _, m := range c.log {
		if m.op == op {
			return m
		}
	}
	c.t.Fatalf("op %d never arrived", op)
	return wsMsg{}
}

func TestRelayAllModes(t *testing.T) {
	modes := []string{ModeAES256GCM, ModeXChaCha20Poly1305, ModeXSalsa20Poly1305, ModeXSalsa20Suffix, ModeXSalsa20Lite}
	tone := audiotest.Tone(t, 440)[:40]
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			s := startServer(t, Options{Modes: []string{mode}, RTCPInterval: 20 * time.Millisecond})
			c := connect(t, s, "100", "200", "1006", mode)
			sim, err := s.AddMember(MemberOptions{UserID: "1002", GuildID: "100", ChannelID: "200"})
			if err != nil {
				t.Fatal(err)
			}
			defer sim.Leave()
			var speak struct {
				UserID string `json:"user_id"`
				SSRC   uint32 `json:"ssrc"`
			}
			_ = json.Unmarshal(c.expect(opSpeaking).d, &speak)
			if speak.UserID != "1002" || speak.SSRC != sim.ssrc {
				t.Fatalf("op 5 %+v", speak)
			}

			// Member to client: every frame, in order, with Opus RTP
			// headers and the SSRC announced in op 5.
			for _, f := range tone {
				if err := sim.SendOpus(f); err != nil {
					t.Fatal(err)
				}
			}
			var got [][]byte
			var sawSR bool
			var lastTS uint32
			for len(got) < len(tone) || !sawSR {
				p := c.recv()
				if p.rtcp {
					if p.pt == rtcpSenderReport && p.ssrc == sim.ssrc {
						sawSR = true
					}
					if p.pt != rtcpSenderReport && p.pt != rtcpReceiverReport {
						t.Fatalf("RTCP type %d", p.pt)
					}
					continue
				}
				if p.pt != payloadTypeOpus || p.ssrc != speak.SSRC {
					t.Fatalf("RTP pt %d ssrc %d", p.pt, p.ssrc)
				}
				if len(got) > 0 && p.ts-lastTS != 960 {
					t.Fatalf("timestamp step %d", p.ts-lastTS)
				}
				if len(got) == 0 && !p.marker {
					t.Fatal("first packet lacks the marker bit")
				}
				lastTS = p.ts
				got = append(got, p.payload)
			}
			for i := range tone {
				if !bytes.Equal(got[i], tone[i]) {
					t.Fatalf("frame %d differs", i)
				}
			}

			// Client to member: audio and VP8 (a descriptor of one byte,
			// unlike the member's own packetizer).
			for _, f := range tone {
				c.sendRTP(payloadTypeOpus, false, c.ready.SSRC, f)
			}
			frames := []VideoFrame{{Data: bytes.Repeat([]byte{0x10, 1, 2}, 900), Keyframe: true}, {Data: []byte{0x01, 9, 9}}}
			for _, f := range frames {
				for off := 0; off < len(f.Data); off += 1000 {
					end := min(off+1000, len(f.Data))
					desc := byte(0)
					if off == 0 {
						desc = 0x10
					}
					c.sendRTP(payloadTypeVP8, end == len(f.Data), c.ready.Streams[0].SSRC, append([]byte{desc}, f.Data[off:end]...))
				}
			}
			waitUntil(t, func() bool {
				return len(sim.ReceivedOpus("1006")) == len(tone) && len(sim.ReceivedVP8("1006")) == len(frames)
			})
			for i, f := range sim.ReceivedOpus("1006") {
				if !bytes.Equal(f, tone[i]) {
					t.Fatalf("member got frame %d wrong", i)
				}
			}
			for i, f := range sim.ReceivedVP8("1006") {
				if !bytes.Equal(f.Data, frames[i].Data) || f.Keyframe != frames[i].Keyframe {
					t.Fatalf("member got VP8 frame %d wrong (%d bytes, key %v)", i, len(f.Data), f.Keyframe)
				}
			}

			// The client's own RTCP is decrypted and counted.
			rr := receiverReport(c.ready.SSRC, nil)
			c.counter++
			if _, err := c.udp.Write(testSeal(t, mode, c.key, c.counter, rr[:8], rr[8:])); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, func() bool { st, _ := s.Stats().Session("1006"); return st.RTCPIn == 1 })
			st, _ := s.Stats().Session("1006")
			// Plaintext from a client without DAVE is not a leak.
			if st.DecryptFailures != 0 || st.MediaIn != len(tone)+4 || st.RTCPOut == 0 || st.PlaintextOpusSeen != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestRelayClientToClient(t *testing.T) {
	s := startServer(t, Options{})
	a := connect(t, s, "100", "200", "1007", ModeAES256GCM)
	b := connect(t, s, "100", "200", "1008", ModeXChaCha20Poly1305)
	echo, err := s.AddMember(MemberOptions{UserID: "1009", GuildID: "100", ChannelID: "200"})
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Leave()
	echo.OnOpus(func(from string, f []byte) {
		if from == "1007" {
			_ = echo.SendOpus(f)
		}
	})
	// b hears a directly and through the echo member.
	want := [][]byte{{0xfc, 0xaa}, {0xfc, 0xbb}, {0xfc, 0xcc}}
	for _, f := range want {
		a.sendRTP(payloadTypeOpus, false, a.ready.SSRC, f)
	}
	bySSRC := map[uint32][][]byte{}
	for n := 0; n < 2*len(want); {
		p := b.recv()
		if p.rtcp {
			continue
		}
		bySSRC[p.ssrc] = append(bySSRC[p.ssrc], p.payload)
		n++
	}
	if !slices.EqualFunc(bySSRC[a.ready.SSRC], want, bytes.Equal) || !slices.EqualFunc(bySSRC[echo.ssrc], want, bytes.Equal) {
		t.Fatalf("b got %v", bySSRC)
	}
}

func TestFaultsAreCountedAndSeeded(t *testing.T) {
	run := func(seed uint64) (SessionStats, map[uint16]int, int) {
		s := startServer(t, Options{Seed: seed})
		c := connect(t, s, "100", "200", "1006", ModeAES256GCM)
		sim, err := s.AddMember(MemberOptions{UserID: "1002", GuildID: "100", ChannelID: "200"})
		if err != nil {
			t.Fatal(err)
		}
		defer sim.Leave()
		s.SetLoss(0.2)
		s.SetReorder(0.1)
		s.SetDuplicate(0.1)
		const n = 300
		for i := range n {
			if err := sim.SendOpus([]byte{0xfc, byte(i >> 8), byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
		st, _ := s.Stats().Session("1006")
		if st.Relayed != n {
			t.Fatalf("relayed %d of %d", st.Relayed, n)
		}
		expected := st.Relayed - st.Dropped + st.Duplicated
		seen := map[uint16]int{}
		outOfOrder := 0
		var maxSeq uint16
		for got := 0; got < expected; {
			p := c.recv()
			if p.rtcp {
				continue
			}
			got++
			seen[p.seq]++
			if got > 1 && int16(p.seq-maxSeq) < 0 && seen[p.seq] == 1 {
				outOfOrder++
			}
			if int16(p.seq-maxSeq) > 0 || got == 1 {
				maxSeq = p.seq
			}
		}
		return st, seen, outOfOrder
	}
	st, seen, outOfOrder := run(42)
	dupes := 0
	for _, k := range seen {
		dupes += k - 1
	}
	if len(seen) != st.Relayed-st.Dropped || dupes != st.Duplicated {
		t.Fatalf("client saw %d distinct and %d duplicates; stats %+v", len(seen), dupes, st)
	}
	// A held packet goes out after the next one, so each reorder shows as
	// one late packet (the last one may be flushed late with nothing after).
	if outOfOrder < st.Reordered-1 || outOfOrder > st.Reordered {
		t.Fatalf("client saw %d late packets, server reordered %d", outOfOrder, st.Reordered)
	}
	if st.Dropped < 30 || st.Dropped > 90 || st.Reordered == 0 || st.Duplicated == 0 {
		t.Fatalf("fault counts far from the rates: %+v", st)
	}
	again, _, _ := run(42)
	if again.Dropped != st.Dropped || again.Reordered != st.Reordered || again.Duplicated != st.Duplicated {
		t.Fatalf("same seed, different faults: %+v vs %+v", st, again)
	}
	t.Logf("300 packets, seed 42: dropped %d, reordered %d, duplicated %d", st.Dropped, st.Reordered, st.Duplicated)
}

func TestMemberVideoAndPacing(t *testing.T) {
	s := startServer(t, Options{})
	a, err := s.AddMember(MemberOptions{UserID: "1007", GuildID: "100", ChannelID: "200"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.AddMember(MemberOptions{UserID: "1008", GuildID: "100", ChannelID: "200"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Leave()
	defer b.Leave()
	if _, err := s.AddMember(MemberOptions{UserID: "1007", GuildID: "100", ChannelID: "200"}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("duplicate member: %v", err)
	}
	video, err := LoadVP8Sample("testpattern")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range video[:20] {
		if err := a.SendVP8(f.Data, f.Keyframe); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.SendVP8(video[1].Data, true); !errors.Is(err, ErrBadPacket) {
		t.Fatalf("mislabelled key frame: %v", err)
	}
	speech, err := LoadOpusSample("speech")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a.PlayOpus(ctx, speech[:10], false)
	waitUntil(t, func() bool { return len(b.ReceivedVP8("1007")) == 20 && len(b.ReceivedOpus("1007")) == 10 })
	for i, f := range b.ReceivedVP8("1007") {
		if !bytes.Equal(f.Data, video[i].Data) || f.Keyframe != video[i].Keyframe {
			t.Fatalf("VP8 frame %d differs", i)
		}
	}
	if !slices.EqualFunc(b.ReceivedOpus("1007"), speech[:10], bytes.Equal) {
		t.Fatal("paced Opus differs")
	}
	a.Leave()
	if err := a.SendOpus(speech[0]); !errors.Is(err, ErrClosed) {
		t.Fatalf("send after leave: %v", err)
	}
}

// waitUntil polls a condition that another goroutine makes true.
func waitUntil(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", waitFor)
		}
		<-tick.C
	}
}

func TestStartRejectsUnknownMode(t *testing.T) {
	if _, err := Start(Options{Modes: []string{"aead_aes256_gcm"}}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("Start with unknown mode: %v", err)
	}
}

func FuzzServerUDP(f *testing.F) {
	s, err := Start(Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	c := connect(f, s, "100", "200", "1001", ModeAES256GCM)
	sim, err := s.AddMember(MemberOptions{UserID: "1002", GuildID: "100", ChannelID: "200"})
	if err != nil {
		f.Fatal(err)
	}
	defer sim.Leave()
	from := c.udp.LocalAddr().(*net.UDPAddr).AddrPort()
	h := make([]byte, 12)
	h[0], h[1] = 0x80, payloadTypeOpus
	binary.BigEndian.PutUint32(h[8:], c.ready.SSRC)
	f.Add(testSeal(f, ModeAES256GCM, c.key, 1, h, []byte{0xfc, 1, 2}))
	vp8 := append([]byte(nil), h...)
	vp8[0], vp8[1] = 0x91, 0x80|payloadTypeVP8
	binary.BigEndian.PutUint32(vp8[8:], c.ready.Streams[0].SSRC)
	f.Add(testSeal(f, ModeAES256GCM, c.key, 2, append(vp8, 0, 0, 0, 0), []byte{0xbe, 0xde, 0, 0, 0x90, 0xe0, 0x80, 1, 2, 3, 4, 5}))
	rr := receiverReport(c.ready.SSRC, nil)
	f.Add(testSeal(f, ModeAES256GCM, c.key, 3, rr[:8], rr[8:]))
	req := make([]byte, 74)
	req[1], req[3] = 1, 70
	f.Add(req)
	f.Add([]byte{0x80})
	f.Add([]byte{0x9f, 0x78, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	s.mu.Lock()
	tc := s.bySSRC[c.ready.SSRC].cipher
	s.mu.Unlock()
	f.Fuzz(func(t *testing.T, data []byte) {
		s.handleDatagram(data, from)
		// The same bytes as an authentic plaintext packet, to reach the
		// parsers behind the decryption.
		if sealed, err := tc.seal(data); err == nil {
			s.handleDatagram(sealed, from)
		}
		if p, err := parseRTP(data); err == nil {
			var a vp8Assembler
			a.push(p)
		}
		_, _ = oggopus.PacketSamples(data)
	})
}

func TestReidentifyReplacesSession(t *testing.T) {
	s := startServer(t, Options{})
	peer := connect(t, s, "100", "200", "1005", ModeAES256GCM)
	first := connect(t, s, "100", "200", "1001", ModeAES256GCM)
	peer.expect(opClientsConnect)
	// The same user joins again on a new allocation (a channel move
	// handled as a fresh join).
	second := dialClient(t, s, "100", "200", "1001")
	second.identify(1)
	first.expectClose(4014)
	if m := peer.expect(opClientDisconnect); string(m.d) != `{"user_id":"1001"}` {
		t.Fatalf("op 13 %s", m.d)
	}
	if m := peer.expect(opClientsConnect); string(m.d) != `{"user_ids":["1001"]}` {
		t.Fatalf("op 11 %s", m.d)
	}
	if n := len(s.Sessions()); n != 2 {
		t.Fatalf("%d sessions, want peer and the new one", n)
	}
}

func TestCloseSaysGoingAwayAndIsIdempotent(t *testing.T) {
	s := startServer(t, Options{})
	c := connect(t, s, "100", "200", "1001", ModeAES256GCM)
	m, err := s.AddMember(MemberOptions{UserID: "1002", GuildID: "100", ChannelID: "200"})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	c.expectClose(websocket.CloseGoingAway)
	s.Close()
	if err := m.SendOpus([]byte{0xfc}); !errors.Is(err, ErrClosed) {
		t.Fatalf("member of a closed server: %v", err)
	}
	if _, _, err := s.Allocate("100", "200", "1010", "s"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Allocate after Close: %v", err)
	}
}

// TestMediaBeforeSpeakingRefused: Discord disconnects a client whose audio
// comes from an SSRC that announced no Speaking (op 5); the emulator lets
// it pass for speakingGrace (the websocket and UDP race), then closes with
// 4002 and counts the packets. A client that sent op 5 is relayed.
func TestMediaBeforeSpeakingRefused(t *testing.T) {
	s := startServer(t, Options{})
	quiet := dialClient(t, s, "100", "200", "1011")
	quiet.identify(0)
	quiet.selectProtocolQuiet(ModeAES256GCM)
	tick := time.NewTicker(20 * time.Millisecond) // a paced talker
	defer tick.Stop()
	deadline := time.After(waitFor)
	sent := 0
	for closed := false; !closed; {
		select {
		case _, ok := <-quiet.in:
			closed = !ok
		case <-tick.C:
			quiet.sendRTP(payloadTypeOpus, false, quiet.ready.SSRC, []byte{0xfc, 0x01})
			sent++
		case <-deadline:
			t.Fatalf("audio without op 5 not refused after %d packets", sent)
		}
	}
	if quiet.closeCode != 4002 {
		t.Fatalf("closed with %d, want 4002", quiet.closeCode)
	}
	st, ok := s.Stats().Session("1011")
	// Every packet that reached the server before the close is counted; a
	// loaded machine may drop ticks, so the count is bounded by what was
	// sent, not by the grace period's nominal 50 packets.
	if !ok || !st.Ended || st.MediaBeforeSpeaking == 0 || st.MediaBeforeSpeaking > sent || len(st.Speaking) != 0 {
		t.Fatalf("quiet client's session %+v after %d packets sent, want ended with the packets without op 5 counted", st, sent)
	}

	talker := connect(t, s, "100", "200", "1012", ModeAES256GCM)
	waitUntil(t, func() bool { st, _ := s.Stats().Session("1012"); return len(st.Speaking) == 1 })
	for range 60 {
		talker.sendRTP(payloadTypeOpus, false, talker.ready.SSRC, []byte{0xfc, 0x02})
	}
	waitUntil(t, func() bool { st, _ := s.Stats().Session("1012"); return st.MediaIn == 60 || st.Ended })
	talker.send(opSpeaking, map[string]any{"speaking": 0, "delay": 0, "ssrc": talker.ready.SSRC})
	waitUntil(t, func() bool { st, _ := s.Stats().Session("1012"); return slices.Equal(st.Speaking, []int{1, 0}) })
	if st, _ := s.Stats().Session("1012"); st.Ended || st.MediaIn != 60 || st.MediaBeforeSpeaking != 0 {
		t.Fatalf("client that sent op 5 first: %+v", st)
	}

	// Each op 5 is recorded where it came in the Opus stream: after five
	// silence frames, speaking 0; speaking 1 again before the next audio.
	for range 5 {
		talker.sendRTP(payloadTypeOpus, false, talker.ready.SSRC, opusSilence)
	}
	waitUntil(t, func() bool { st, _ := s.Stats().Session("1012"); return st.OpusIn == 65 })
	talker.send(opSpeaking, map[string]any{"speaking": 0, "delay": 0, "ssrc": talker.ready.SSRC})
	talker.send(opSpeaking, map[string]any{"speaking": 1, "delay": 0, "ssrc": talker.ready.SSRC})
	waitUntil(t, func() bool { st, _ := s.Stats().Session("1012"); return len(st.Speaking) == 4 })
	talker.sendRTP(payloadTypeOpus, false, talker.ready.SSRC, []byte{0xfc, 0x02})
	waitUntil(t, func() bool { st, _ := s.Stats().Session("1012"); return st.OpusIn == 66 })
	want := []SpeakingEvent{{1, 0, 0}, {0, 60, 0}, {0, 65, 5}, {1, 65, 5}}
	if st, _ := s.Stats().Session("1012"); !slices.Equal(st.SpeakingAt, want) {
		t.Fatalf("op 5 in the Opus stream: %+v, want %+v", st.SpeakingAt, want)
	}
}

// TestUndeclaredPayloadTypesRefused: a client that declared no video
// codecs in Select Protocol has its VP8 refused (counted, not relayed),
// its Opus relayed; a codec entry that does not match Discord's table
// closes the connection with 4002.
func TestUndeclaredPayloadTypesRefused(t *testing.T) {
	s := startServer(t, Options{})
	a := dialClient(t, s, "100", "200", "1021")
	a.identify(0)
	a.selectProtocolCodecs(ModeAES256GCM, nil)
	a.send(opSpeaking, map[string]any{"speaking": 1, "delay": 0, "ssrc": a.ready.SSRC})
	b := connect(t, s, "100", "200", "1022", ModeAES256GCM)
	waitUntil(t, func() bool { st, _ := s.Stats().Session("1021"); return len(st.Speaking) == 1 })
	a.sendRTP(payloadTypeVP8, true, a.ready.Streams[0].SSRC, []byte{0x90, 0x80, 0x80, 0x01, 0x00})
	a.sendRTP(payloadTypeOpus, false, a.ready.SSRC, []byte{0xfc, 0x03})
	for {
		p := b.recv()
		if p.rtcp {
			continue
		}
		if p.pt != payloadTypeOpus {
			t.Fatalf("b got payload type %d from a client that declared no video", p.pt)
		}
		break
	}
	waitUntil(t, func() bool { st, _ := s.Stats().Session("1021"); return st.UndeclaredPayloadType == 1 })

	bad := dialClient(t, s, "100", "200", "1023")
	bad.identify(0)
	addr, port := bad.discover()
	bad.send(opSelectProtocol, map[string]any{"protocol": "udp", "data": map[string]any{"address": addr, "port": port, "mode": ModeAES256GCM},
		"codecs": []map[string]any{{"name": "VP8", "type": "video", "priority": 1000, "payload_type": 96}}})
	bad.expectClose(4002)
}

// A member keeps the last MemberOptions.Record frames of each sender, in
// order, and holds no more than twice that however long it runs; with a
// negative Record it keeps none while OnOpus still sees every frame.
func TestMemberRecordIsBounded(t *testing.T) {
	s := startServer(t, Options{})
	a, err := s.AddMember(MemberOptions{UserID: "1011", GuildID: "100", ChannelID: "200"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Leave()
	b, err := s.AddMember(MemberOptions{UserID: "1012", GuildID: "100", ChannelID: "200", Record: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Leave()
	c, err := s.AddMember(MemberOptions{UserID: "1013", GuildID: "100", ChannelID: "200", Record: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Leave()
	var heardB, heardC atomic.Int64
	b.OnOpus(func(string, []byte) { heardB.Add(1) })
	c.OnOpus(func(string, []byte) { heardC.Add(1) })

	const n = 45
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = []byte{0xFC, byte(i)}
		if err := a.SendOpus(frames[i]); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, func() bool { return heardB.Load() == n && heardC.Load() == n })
	if got := b.ReceivedOpus("1011"); !slices.EqualFunc(got, frames[n-8:], bytes.Equal) {
		t.Fatalf("record of 8 holds %x, want the last 8 frames %x", got, frames[n-8:])
	}
	hdrs := b.ReceivedOpusRTP("1011")
	if len(hdrs) != 8 {
		t.Fatalf("record of 8 holds %d RTP headers", len(hdrs))
	}
	for i := 1; i < len(hdrs); i++ {
		if hdrs[i].Sequence != hdrs[i-1].Sequence+1 {
			t.Fatalf("RTP headers out of order: %+v", hdrs)
		}
	}
	b.mu.Lock()
	held, heldRTP := len(b.opus["1011"]), len(b.opusRTP["1011"])
	b.mu.Unlock()
	if held > 16 || heldRTP > 16 {
		t.Fatalf("record of 8 holds %d frames and %d headers inside, more than twice its bound", held, heldRTP)
	}
	if got, hdrs := c.ReceivedOpus("1011"), c.ReceivedOpusRTP("1011"); len(got) != 0 || len(hdrs) != 0 {
		t.Fatalf("member with Record -1 kept %d frames and %d headers", len(got), len(hdrs))
	}
}

func TestRecordRing(t *testing.T) {
	for _, limit := range []int{1, 2, 5} {
		var s []int
		for i := range 23 {
			s = keep(s, i, limit)
			if len(s) > 2*limit {
				t.Fatalf("limit %d: holds %d after %d", limit, len(s), i+1)
			}
			want := make([]int, 0, limit)
			for j := max(0, i+1-limit); j <= i; j++ {
				want = append(want, j)
			}
			if got := latest(s, limit); !slices.Equal(got, want) {
				t.Fatalf("limit %d after %d: latest %v, want %v", limit, i+1, got, want)
			}
		}
	}
	if s := keep([]int(nil), 1, -1); s != nil {
		t.Fatalf("negative limit kept %v", s)
	}
}
