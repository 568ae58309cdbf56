package voice_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/voicebridge/bridge/voice"
	"github.com/voicebridge/bridge/voice/dave"
)

// daveGateway is a scripted voice gateway for DAVE, independent of the
// emulator: the test drives each step and checks the client's answers on
// the wire (Discord voice docs, "Binary Websocket Messages"; docs/dave.md,
// "Framing on the voice gateway"). The voice server's MLS half is
// dave.ExternalSender; the other member of the call is a dave.Session
// driven by the test.
type daveGateway struct {
	http  *httptest.Server
	udp   *net.UDPConn
	wg    sync.WaitGroup
	conns chan *scriptConn
	media chan []byte
	peer  atomic.Pointer[net.UDPAddr]
}

// scriptConn is one client websocket: the test sends, a reader goroutine
// answers heartbeats and queues everything else.
type scriptConn struct {
	ws    *websocket.Conn
	wmu   sync.Mutex
	seq   int
	in    chan clientMsg
	beats chan int64
}

// clientMsg is one client message: JSON {op, d} or binary `u8 op | payload`.
type clientMsg struct {
	binary  bool
	op      int
	d       json.RawMessage
	payload []byte
}

func startDAVEGateway(t *testing.T) *daveGateway {
	t.Helper()
	g := &daveGateway{conns: make(chan *scriptConn, 1), media: make(chan []byte, 512)}
	var err error
	g.udp, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	g.wg.Add(1)
	go g.serveUDP()
	g.http = httptest.NewUnstartedServer(http.HandlerFunc(g.serveWS))
	g.http.StartTLS()
	t.Cleanup(func() {
		g.http.CloseClientConnections()
		g.http.Close()
		_ = g.udp.Close()
		g.wg.Wait()
	})
	return g
}

// serveUDP answers IP discovery, remembering the client's address, and
// queues every RTP datagram.
func (g *daveGateway) serveUDP() {
	defer g.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := g.udp.ReadFromUDP(buf)
		if err != nil {
			return
		}
		switch {
		case n == 74 && binary.BigEndian.Uint16(buf) == 1:
			g.peer.Store(from)
			resp := make([]byte, 74)
			binary.BigEndian.PutUint16(resp, 2)
			binary.BigEndian.PutUint16(resp[2:], 70)
			copy(resp[4:8], buf[4:8])
			copy(resp[8:], "127.0.0.1")
			binary.BigEndian.PutUint16(resp[72:], uint16(from.Port))
			_, _ = g.udp.WriteToUDP(resp, from)
		case n > 12:
			select {
			case g.media <- bytes.Clone(buf[:n]):
			default:
			}
		}
	}
}

func (g *daveGateway) serveWS(rw http.ResponseWriter, r *http.Request) {
	g.wg.Add(1)
	defer g.wg.Done()
	up := websocket.Upgrader{}
	ws, err := up.Upgrade(rw, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	c := &scriptConn{ws: ws, in: make(chan clientMsg, 256), beats: make(chan int64, 256)}
	if err := c.write(websocket.TextMessage, mustJSON(map[string]any{"op": 8, "d": map[string]any{"heartbeat_interval": 50}})); err != nil {
		return
	}
	select {
	case g.conns <- c:
	default:
		return // one connection per test
	}
	defer close(c.in)
	for {
		typ, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var m clientMsg
		if typ == websocket.BinaryMessage {
			if len(data) == 0 {
				continue
			}
			m = clientMsg{binary: true, op: int(data[0]), payload: data[1:]}
		} else {
			var env struct {
				Op int             `json:"op"`
				D  json.RawMessage `json:"d"`
			}
			if json.Unmarshal(data, &env) != nil {
				continue
			}
			m = clientMsg{op: env.Op, d: env.D}
		}
		if m.op == 3 && !m.binary {
			var hb struct {
				T      int64 `json:"t"`
				SeqAck int64 `json:"seq_ack"`
			}
			_ = json.Unmarshal(m.d, &hb)
			_ = c.write(websocket.TextMessage, mustJSON(map[string]any{"op": 6, "d": map[string]any{"t": hb.T}}))
			select {
			case c.beats <- hb.SeqAck:
			default:
			}
			continue
		}
		select {
		case c.in <- m:
		default: // the script stopped reading
		}
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // test data only
	}
	return b
}

func (c *scriptConn) write(typ int, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.WriteMessage(typ, b)
}

// sendJSON sends a sequenced JSON message and returns its seq.
func (c *scriptConn) sendJSON(t *testing.T, op int, d any) int {
	t.Helper()
	c.wmu.Lock()
	c.seq++
	seq := c.seq
	err := c.ws.WriteMessage(websocket.TextMessage, mustJSON(map[string]any{"op": op, "d": d, "seq": seq}))
	c.wmu.Unlock()
	if err != nil {
		t.Fatalf("send op %d: %v", op, err)
	}
	return seq
}

// sendBinary sends `u16 seq BE | u8 op | payload` and returns the seq.
func (c *scriptConn) sendBinary(t *testing.T, op int, payload []byte) int {
	t.Helper()
	c.wmu.Lock()
	c.seq++
	seq := c.seq
	frame := append([]byte{byte(seq >> 8), byte(seq), byte(op)}, payload...)
	err := c.ws.WriteMessage(websocket.BinaryMessage, frame)
	c.wmu.Unlock()
	if err != nil {
		t.Fatalf("send binary op %d: %v", op, err)
	}
	return seq
}

// expect returns the next client message, which must be op in the given
// form; Speaking (op 5) may come in between and is skipped.
func (c *scriptConn) expect(t *testing.T, op int, binaryForm bool) clientMsg {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case m, ok := <-c.in:
			if !ok {
				t.Fatalf("connection closed waiting for op %d", op)
			}
			if m.op == 5 && !m.binary {
				continue
			}
			if m.op != op || m.binary != binaryForm {
				t.Fatalf("client sent op %d (binary %v), want op %d (binary %v)", m.op, m.binary, op, binaryForm)
			}
			return m
		case <-deadline.C:
			t.Fatalf("no op %d from the client", op)
		}
	}
}

// awaitSeqAck waits for a heartbeat acknowledging seq.
func (c *scriptConn) awaitSeqAck(t *testing.T, seq int) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		select {
		case ack := <-c.beats:
			if ack == int64(seq) {
				return
			}
		case <-deadline.C:
			t.Fatalf("no heartbeat with seq_ack %d", seq)
		}
	}
}

const peerID = "700000000000000007"

// TestDAVEWireTransition drives one client through a DAVE v1 upgrade on
// the wire: Identify offers version 1; Session Description starts it and
// the client sends its key package as a binary `26 | KeyPackage`; op 25
// (external sender) counts towards seq_ack like any sequenced message;
// op 27 adding the other member is answered by a binary op 28 commit and
// Welcome that the voice server accepts; op 29 by op 23; op 22 switches
// the sender to the new epoch. Media sent before op 22 is dropped, never
// sent in clear; after it, the other member decrypts the bot's frames,
// and the bot decrypts the member's, attributed by SSRC, and rejects
// plaintext. Both sides show the same privacy code.
func TestDAVEWireTransition(t *testing.T) {
	g := startDAVEGateway(t)
	endpoint := strings.TrimPrefix(g.http.URL, "https://")
	tlsConf := g.http.Client().Transport.(*http.Transport).TLSClientConfig
	client := voice.NewClient(voice.Options{Signaler: newMainGateway(t, &fixedServer{endpoint: endpoint}, botID), UserID: botID,
		TLSConfig: tlsConf, Logger: testLogger(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type joined struct {
		conn *voice.Conn
		err  error
	}
	joinDone := make(chan joined, 1)
	go func() {
		conn, err := client.Join(ctx, guildID, channelID)
		joinDone <- joined{conn, err}
	}()

	x, err := dave.NewExternalSender(channelID)
	if err != nil {
		t.Fatal(err)
	}
	key := make([]int, 32)
	keyBytes := make([]byte, 32)
	for i := range key {
		key[i], keyBytes[i] = 255-i, byte(255-i)
	}

	var sc *scriptConn
	select {
	case sc = <-g.conns:
	case <-ctx.Done():
		t.Fatal("the client never connected")
	}
	id := sc.expect(t, 0, false)
	var ident struct {
		MaxDAVE int `json:"max_dave_protocol_version"`
	}
	if err := json.Unmarshal(id.d, &ident); err != nil || ident.MaxDAVE != dave.ProtocolVersion {
		t.Fatalf("Identify %s: max_dave_protocol_version %d, want %d", id.d, ident.MaxDAVE, dave.ProtocolVersion)
	}
	sc.sendJSON(t, 2, map[string]any{"ssrc": 77, "ip": "127.0.0.1", "port": g.udp.LocalAddr().(*net.UDPAddr).Port,
		"modes": []string{"aead_aes256_gcm_rtpsize"}})
	sc.expect(t, 1, false)
	// The other member is announced during the handshake, before the
	// session description: the client's DAVE session must already exist.
	sc.sendJSON(t, 11, map[string]any{"user_ids": []string{peerID}})
	sc.sendJSON(t, 4, map[string]any{"mode": "aead_aes256_gcm_rtpsize", "secret_key": key, "dave_protocol_version": 1})
	kp := sc.expect(t, dave.OpMLSKeyPackage, true)
	// The server vets the key package and proposes the bot's Add; at
	// epoch 0 the committer's own Add is not sent to it.
	if _, err := x.ProposeAdd(botID, kp.payload); err != nil {
		t.Fatalf("the bot's op 26 is not a valid key package for its user id: %v", err)
	}
	seq25 := sc.sendBinary(t, dave.OpMLSExternalSender, x.Marshal())
	sc.awaitSeqAck(t, seq25)

	var j joined
	select {
	case j = <-joinDone:
	case <-ctx.Done():
		t.Fatal("Join did not return")
	}
	if j.err != nil {
		t.Fatalf("Join: %v", j.err)
	}
	conn := j.conn
	evs := watchEvents(conn)
	defer func() {
		if err := conn.Close(ctx); err != nil {
			t.Error(err)
		}
		evs.wait()
	}()
	if v := conn.DAVEVersion(); v != 1 || conn.PrivacyCode() != "" {
		t.Fatalf("before the group: DAVEVersion %d, privacy code %q; want 1 and none", v, conn.PrivacyCode())
	}

	// Media before the group exists: dropped, not sent.
	early := func(i int) []byte { return []byte{0xfc, 0xaa, byte(i), 0x01, 0x02} }
	for i := range 5 {
		if err := conn.SendOpus(early(i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "5 frames dropped for want of a key", func() bool { return conn.Stats().DAVE.NoKeyDropped == 5 })

	peer, err := dave.NewSession(dave.SessionOptions{UserID: peerID, ChannelID: channelID, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	outs, err := peer.Start(1)
	if err != nil || len(outs) != 1 || outs[0].Op != dave.OpMLSKeyPackage {
		t.Fatalf("peer Start: %+v %v", outs, err)
	}
	addPeer, err := x.ProposeAdd(peerID, outs[0].Binary)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := peer.HandleBinary(dave.OpMLSExternalSender, x.Marshal()); err != nil {
		t.Fatal(err)
	}
	if _, err := peer.HandleJSON(dave.OpClientsConnect, mustJSON(dave.ClientsConnect{UserIDs: []string{botID}})); err != nil {
		t.Fatal(err)
	}

	sc.sendBinary(t, dave.OpMLSProposals, dave.AppendProposalsPayload(addPeer))
	cw := sc.expect(t, dave.OpMLSCommitWelcome, true)
	acc, err := x.AcceptCommit(botID, cw.payload)
	if err != nil {
		t.Fatalf("the voice server refuses the bot's op 28: %v", err)
	}
	if len(acc.Added) != 1 || acc.Added[0] != peerID || acc.Welcomes[peerID] == nil {
		t.Fatalf("accepted commit %+v: want the peer added with a Welcome", acc)
	}
	const tid = 7
	sc.sendBinary(t, dave.OpMLSAnnounceCommit, dave.AnnounceCommitPayload(tid, acc.Commit))
	outs, err = peer.HandleBinary(dave.OpMLSWelcome, dave.WelcomePayload(tid, acc.Welcomes[peerID]))
	if err != nil || len(outs) != 1 || outs[0].Op != dave.OpReadyForTransition {
		t.Fatalf("peer welcome: %+v %v", outs, err)
	}
	ready := sc.expect(t, dave.OpReadyForTransition, false)
	var tr dave.TransitionReady
	if err := json.Unmarshal(ready.d, &tr); err != nil || tr.TransitionID != tid {
		t.Fatalf("op 23 %s, want transition %d", ready.d, tid)
	}

	// The group exists but the transition has not executed: still no key.
	for i := 5; i < 10; i++ {
		if err := conn.SendOpus(early(i)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "10 frames dropped for want of a key", func() bool { return conn.Stats().DAVE.NoKeyDropped == 10 })

	sc.sendJSON(t, dave.OpExecuteTransition, dave.ExecuteTransition{TransitionID: tid})
	if _, err := peer.HandleJSON(dave.OpExecuteTransition, mustJSON(dave.ExecuteTransition{TransitionID: tid})); err != nil {
		t.Fatal(err)
	}
	code := peer.PrivacyCode()
	if code == "" {
		t.Fatal("the peer has no privacy code after the transition")
	}
	evs.await(t, 0, "the peer's privacy code", func(ev voice.Event) bool {
		p, ok := ev.(voice.PrivacyCodeChanged)
		return ok && p.Code == code
	})
	if conn.PrivacyCode() != code {
		t.Fatalf("bot privacy code %q, peer %q", conn.PrivacyCode(), code)
	}

	// Bot → peer: every packet the voice server got is silence or a DAVE
	// frame; the peer decrypts exactly the frames sent after op 22.
	late := func(i int) []byte { return []byte{0xfc, 0xbb, byte(i), 0x03, 0x04} }
	for i := range 10 {
		if err := conn.SendOpus(late(i)); err != nil {
			t.Fatal(err)
		}
	}
	opener, _ := voice.NewCipher(voice.ModeAES256GCMRTPSize, keyBytes)
	var heard [][]byte
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for len(heard) < 10 {
		select {
		case pkt := <-g.media:
			_, payload, err := opener.OpenRTP(nil, pkt)
			if err != nil {
				t.Fatalf("transport open: %v", err)
			}
			if bytes.Equal(payload, []byte{0xf8, 0xff, 0xfe}) {
				continue
			}
			if !bytes.HasSuffix(payload, []byte{0xfa, 0xfa}) {
				t.Fatalf("the bot sent a frame that is not E2EE: %x", payload)
			}
			plain, err := peer.DecryptFrame(nil, botID, dave.Audio, payload)
			if err != nil {
				t.Fatalf("the peer cannot decrypt the bot's frame: %v", err)
			}
			heard = append(heard, plain)
		case <-deadline.C:
			t.Fatalf("the peer decrypted %d of 10 frames", len(heard))
		}
	}
	for i, f := range heard {
		if !bytes.Equal(f, late(i)) {
			t.Fatalf("peer frame %d is %x, want %x (no frame sent before op 22 may arrive)", i, f, late(i))
		}
	}

	// Peer → bot: op 5 maps SSRC 99 to the peer; its DAVE frames arrive
	// decrypted and attributed; a plaintext frame is rejected.
	to := g.peer.Load()
	if to == nil {
		t.Fatal("no client UDP address")
	}
	sc.sendJSON(t, 5, map[string]any{"user_id": peerID, "ssrc": 99, "speaking": 1})
	sealer, _ := voice.NewCipher(voice.ModeAES256GCMRTPSize, keyBytes)
	send := func(seq uint16, payload []byte) {
		h := voice.Header{PayloadType: voice.PayloadTypeOpus, Sequence: seq, Timestamp: uint32(seq) * 960, SSRC: 99}
		pkt, err := sealer.SealRTP(nil, &h, payload)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.udp.WriteToUDP(pkt, to); err != nil {
			t.Fatal(err)
		}
	}
	said := func(i int) []byte { return []byte{0xfc, 0xcc, byte(i), 0x05} }
	for i := range 6 {
		payload := []byte{0xfc, 0xdd, 0xdd} // plaintext in the middle
		if i != 3 {
			payload, err = peer.EncryptFrame(nil, dave.Audio, said(i))
			if err != nil {
				t.Fatal(err)
			}
		}
		send(uint16(100+i), payload)
	}
	got := collectFrames(conn, peerID, voice.Audio, 5, 10*time.Second)
	if len(got) != 5 {
		t.Fatalf("the bot got %d of the peer's 5 DAVE frames", len(got))
	}
	for i, f := range got {
		want := i
		if i >= 3 {
			want = i + 1
		}
		if !bytes.Equal(f.Payload, said(want)) {
			t.Fatalf("frame %d from the peer: %x, want %x", i, f.Payload, said(want))
		}
	}
	st := conn.Stats()
	ps := st.DAVE.Senders[peerID]
	if ps.Decrypted != 5 || ps.FailedNotEncrypted != 1 {
		t.Fatalf("peer sender stats %+v: want 5 decrypted, 1 plaintext rejected", ps)
	}
	// The receiver publishes a stream's counters after handing its frames
	// on, so the count may lag the last frame a moment.
	eventually(t, "one frame decrypt failure on stream 99", func() bool {
		for _, s := range conn.Stats().Streams {
			if s.SSRC == 99 {
				return s.FrameDecryptFailures == 1
			}
		}
		return false
	})
	if own := st.DAVE.Senders[botID]; own.Encrypted < 10 {
		t.Fatalf("own sender stats %+v: want ≥ 10 encrypted", own)
	}
	if n := evs.count(func(ev voice.Event) bool { _, ok := ev.(voice.Error); return ok }); n != 0 {
		t.Fatalf("%d error events", n)
	}
}
