package voiceemu

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/voicebridge/bridge/voice/dave"
)

const (
	daveGuild   = "100"
	daveChannel = "200"
)

// addMembers adds simulated members with the given user ids to the test
// channel, in order.
func addMembers(t *testing.T, s *Server, ids ...string) []*Member {
	t.Helper()
	var out []*Member
	for _, id := range ids {
		m, err := s.AddMember(MemberOptions{UserID: id, GuildID: daveGuild, ChannelID: daveChannel})
		if err != nil {
			t.Fatalf("AddMember %s: %v", id, err)
		}
		t.Cleanup(m.Leave)
		out = append(out, m)
	}
	return out
}

// samePrivacyCode checks that the members share one non-empty voice
// privacy code and returns it.
func samePrivacyCode(t *testing.T, ms ...*Member) string {
	t.Helper()
	code := ms[0].PrivacyCode()
	if len(code) != dave.PrivacyCodeDigits {
		t.Fatalf("member %s has privacy code %q", ms[0].UserID(), code)
	}
	for _, m := range ms[1:] {
		if m.PrivacyCode() != code {
			t.Fatalf("member %s has privacy code %q, member %s has %q", m.UserID(), m.PrivacyCode(), ms[0].UserID(), code)
		}
	}
	return code
}

// numbered is a distinct Opus-like frame for sender s and index i.
func numbered(s byte, i int) []byte {
	return []byte{0xFC, s, byte(i >> 8), byte(i), 0x55, 0xAA}
}

// exchangeOpus has every member send n numbered frames and checks that
// every other member decrypts exactly them, in order.
func exchangeOpus(t *testing.T, n int, ms ...*Member) {
	t.Helper()
	before := map[[2]string]int{}
	for _, r := range ms {
		for _, x := range ms {
			before[[2]string{r.UserID(), x.UserID()}] = len(r.ReceivedOpus(x.UserID()))
		}
	}
	for k, x := range ms {
		for i := range n {
			if err := x.SendOpus(numbered(byte(k), i)); err != nil {
				t.Fatalf("member %s SendOpus: %v", x.UserID(), err)
			}
		}
	}
	for _, r := range ms {
		for k, x := range ms {
			if r == x {
				continue
			}
			from := before[[2]string{r.UserID(), x.UserID()}]
			waitUntil(t, func() bool { return len(r.ReceivedOpus(x.UserID())) >= from+n })
			got := r.ReceivedOpus(x.UserID())[from:]
			for i := range n {
				if !bytes.Equal(got[i], numbered(byte(k), i)) {
					t.Fatalf("%s got frame %d from %s as %x", r.UserID(), i, x.UserID(), got[i])
				}
			}
		}
	}
}

// TestDAVEThreeMembersFormAGroup checks (a): three simulated members in a
// DAVE channel form one MLS group through the server's external sender,
// agree on the privacy code, and decrypt each other's Opus and VP8; the
// relay never sees a readable Opus frame.
func TestDAVEThreeMembersFormAGroup(t *testing.T) {
	s := startServer(t, Options{})
	ms := addMembers(t, s, "3001", "3002", "3003")
	for _, m := range ms {
		if m.ProtocolVersion() != 1 {
			t.Fatalf("member %s runs DAVE protocol %d", m.UserID(), m.ProtocolVersion())
		}
	}
	samePrivacyCode(t, ms...)
	// 3001 waits alone; 3002's arrival creates the group (epoch 1); adding
	// 3003 moves it to epoch 2.
	info, ok := s.DAVE(daveGuild, daveChannel)
	if !ok || info.Protocol != 1 || info.Epoch != 2 || !slices.Equal(info.Members, []string{"3001", "3002", "3003"}) {
		t.Fatalf("server's view %+v", info)
	}
	for _, m := range ms {
		if m.Epoch() != 2 {
			t.Fatalf("member %s at epoch %d", m.UserID(), m.Epoch())
		}
	}
	exchangeOpus(t, 20, ms...)

	video, err := LoadVP8Sample("testpattern")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range video[:10] {
		if err := ms[0].SendVP8(f.Data, f.Keyframe); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range ms[1:] {
		waitUntil(t, func() bool { return len(r.ReceivedVP8("3001")) == 10 })
		for i, f := range r.ReceivedVP8("3001") {
			if !bytes.Equal(f.Data, video[i].Data) || f.Keyframe != video[i].Keyframe {
				t.Fatalf("%s got VP8 frame %d wrong", r.UserID(), i)
			}
		}
	}
	// The silence frame is sent in the clear and passes.
	if err := ms[1].SendOpus([]byte{0xF8, 0xFF, 0xFE}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return len(ms[0].ReceivedOpus("3002")) == 21 })
	if st := s.Stats(); st.PlaintextOpusSeen != 0 {
		t.Fatalf("relay saw %d readable Opus frames", st.PlaintextOpusSeen)
	}
	for _, m := range ms {
		if st := m.Stats(); st.DecryptFailures != 0 || st.NoMediaKey != 0 {
			t.Fatalf("member %s stats %+v", m.UserID(), st)
		}
	}
}

// sender sends numbered frames from a member until stopped, and records
// which were sent.
type sender struct {
	m    *Member
	tag  byte
	mu   sync.Mutex
	sent []int
	stop chan struct{}
	done chan struct{}
}

func startSender(m *Member, tag byte) *sender {
	x := &sender{m: m, tag: tag, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(x.done)
		tick := time.NewTicker(3 * time.Millisecond) // traffic, not synchronization
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-x.stop:
				return
			case <-tick.C:
			}
			err := m.SendOpus(numbered(tag, i))
			if errors.Is(err, ErrClosed) {
				return
			}
			if err == nil {
				x.mu.Lock()
				x.sent = append(x.sent, i)
				x.mu.Unlock()
			}
		}
	}()
	return x
}

func (x *sender) halt() {
	close(x.stop)
	<-x.done
}

// count is how many frames were sent so far.
func (x *sender) count() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.sent)
}

// indexes returns the frame numbers sent from position from on.
func (x *sender) indexes(from int) []int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.sent[from:])
}

// TestDAVEJoinAndLeaveKeepMediaFlowing checks (b): while members talk, a
// fourth joins and one leaves. Each change advances the epoch and changes
// the privacy code for everyone, and every receiver keeps decrypting every
// sender, losing at most one frame per transition.
func TestDAVEJoinAndLeaveKeepMediaFlowing(t *testing.T) {
	s := startServer(t, Options{})
	ms := addMembers(t, s, "3001", "3002", "3003")
	a, b, c := ms[0], ms[1], ms[2]
	code0 := samePrivacyCode(t, a, b, c)
	epoch0 := a.Epoch()

	senders := map[*Member]*sender{}
	for k, m := range ms {
		senders[m] = startSender(m, byte(k))
	}
	waitUntil(t, func() bool { return senders[a].count() > 10 && senders[b].count() > 10 && senders[c].count() > 10 })

	d := addMembers(t, s, "3004")[0]
	joined := map[*Member]int{a: senders[a].count(), b: senders[b].count(), c: senders[c].count()}
	senders[d] = startSender(d, 3)
	code1 := samePrivacyCode(t, a, b, c, d)
	if code1 == code0 || a.Epoch() != epoch0+1 || d.Epoch() != epoch0+1 {
		t.Fatalf("after the join: code %s (was %s), epochs %d and %d (was %d)", code1, code0, a.Epoch(), d.Epoch(), epoch0)
	}
	waitUntil(t, func() bool { return senders[d].count() > 10 && senders[a].count() > joined[a]+10 })

	b.Leave()
	senders[b].halt()
	left := senders[b].count()
	code2 := samePrivacyCode(t, a, c, d)
	if code2 == code1 || a.Epoch() != epoch0+2 || d.Epoch() != epoch0+2 {
		t.Fatalf("after the leave: code %s (was %s), epochs %d and %d", code2, code1, a.Epoch(), d.Epoch())
	}
	waitUntil(t, func() bool { return senders[d].count() > 30 && senders[c].count() > joined[c]+40 })
	for _, m := range []*Member{a, c, d} {
		senders[m].halt()
	}
	// A last frame from each remaining sender: once every receiver has it,
	// everything sent before it has been handled (delivery is in order).
	const last = 0xFFFF
	for k, m := range []*Member{a, c, d} {
		if err := m.SendOpus(numbered(byte(10+k), last)); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []*Member{a, c, d} {
		for k, x := range []*Member{a, c, d} {
			if r != x {
				waitUntil(t, func() bool {
					got := r.ReceivedOpus(x.UserID())
					return len(got) > 0 && bytes.Equal(got[len(got)-1], numbered(byte(10+k), last))
				})
			}
		}
	}

	const transitions = 2
	check := func(r, x *Member, want []int) {
		t.Helper()
		got := map[int]bool{}
		prev := -1
		for _, f := range r.ReceivedOpus(x.UserID()) {
			if f[1] != senders[x].tag {
				continue // the last-frame marker
			}
			i := int(f[2])<<8 | int(f[3])
			if i <= prev {
				t.Fatalf("%s got frame %d from %s after %d", r.UserID(), i, x.UserID(), prev)
			}
			prev = i
			got[i] = true
		}
		missing := 0
		for _, i := range want {
			if !got[i] {
				missing++
			}
		}
		t.Logf("%s heard %d of %d frames from %s", r.UserID(), len(want)-missing, len(want), x.UserID())
		if missing > transitions {
			t.Errorf("%s lost %d of %d frames from %s", r.UserID(), missing, len(want), x.UserID())
		}
	}
	for _, r := range []*Member{a, c} {
		for _, x := range []*Member{a, c} {
			if r != x {
				check(r, x, senders[x].indexes(0))
			}
		}
		check(r, b, senders[b].indexes(0)[:left])
		check(r, d, senders[d].indexes(0))
		check(d, r, senders[r].indexes(joined[r]))
	}
	info, _ := s.DAVE(daveGuild, daveChannel)
	if info.Epoch != epoch0+2 || !slices.Equal(info.Members, []string{"3001", "3003", "3004"}) {
		t.Fatalf("server's view %+v", info)
	}
	if n := s.Stats().PlaintextOpusSeen; n != 0 {
		t.Fatalf("relay saw %d readable Opus frames", n)
	}
}

// TestDAVERequiredOrDowngraded checks (c): with RequireDAVE a client
// without DAVE is refused with 4017; without it, the client joins at
// protocol 0 and the channel downgrades (op 21 to version 0), carries
// plaintext both ways, then upgrades back to a new group when it leaves.
func TestDAVERequiredOrDowngraded(t *testing.T) {
	t.Run("required", func(t *testing.T) {
		s := startServer(t, Options{RequireDAVE: true})
		c := dialClient(t, s, daveGuild, daveChannel, "1001")
		c.identifyNoReady(0)
		c.expectClose(4017)
	})
	t.Run("both options", func(t *testing.T) {
		if _, err := Start(Options{RequireDAVE: true, DisableDAVE: true}); !errors.Is(err, ErrInvalidOptions) {
			t.Fatalf("RequireDAVE with DisableDAVE: %v", err)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		s := startServer(t, Options{DisableDAVE: true})
		ms := addMembers(t, s, "3001", "3002")
		c := dialClient(t, s, daveGuild, daveChannel, "1001")
		c.identify(1)
		c.selectProtocol(ModeAES256GCM)
		if c.daveVersion != 0 || ms[0].ProtocolVersion() != 0 || ms[0].PrivacyCode() != "" {
			t.Fatalf("DisableDAVE: client got version %d, member runs %d", c.daveVersion, ms[0].ProtocolVersion())
		}
		exchangeOpus(t, 3, ms...)
	})

	s := startServer(t, Options{})
	ms := addMembers(t, s, "3001", "3002")
	a, b := ms[0], ms[1]
	code0 := samePrivacyCode(t, a, b)
	before, _ := s.DAVE(daveGuild, daveChannel)

	c := connect(t, s, daveGuild, daveChannel, "1001", ModeAES256GCM)
	// The downgrade ran before Session Description was sent: op 21 to
	// the members, their op 23, then op 22.
	info, _ := s.DAVE(daveGuild, daveChannel)
	if info.Protocol != 0 || info.Transitions != before.Transitions+1 {
		t.Fatalf("after a client without DAVE joined: %+v (before %+v)", info, before)
	}
	for _, m := range ms {
		if m.ProtocolVersion() != 0 || m.PrivacyCode() != "" {
			t.Fatalf("member %s still at protocol %d", m.UserID(), m.ProtocolVersion())
		}
	}
	for _, m := range c.log {
		if m.op == -1 || m.op == opPrepareTransition || m.op == opExternalSender {
			t.Fatalf("client without DAVE got a DAVE message %+v", m)
		}
	}
	// Plaintext both ways.
	frame := []byte{0xFC, 1, 2, 3}
	if err := a.SendOpus(frame); err != nil {
		t.Fatal(err)
	}
	if p := c.recvRTP(); !bytes.Equal(p.payload, frame) {
		t.Fatalf("client got %x, want the plaintext %x", p.payload, frame)
	}
	c.sendRTP(payloadTypeOpus, true, c.ready.SSRC, frame)
	waitUntil(t, func() bool { return len(b.ReceivedOpus("1001")) == 1 })
	if !bytes.Equal(b.ReceivedOpus("1001")[0], frame) {
		t.Fatalf("member got %x", b.ReceivedOpus("1001")[0])
	}
	exchangeOpus(t, 3, a, b)

	// The client leaves: op 25 and op 24 (epoch 1) to the members, a new
	// group, and its transition switches them back to DAVE.
	s.Release(daveGuild, "1001")
	c.expectClose(4014)
	info, _ = s.DAVE(daveGuild, daveChannel)
	if info.Protocol != 1 || info.Epoch != 1 || info.Transitions != before.Transitions+2 {
		t.Fatalf("after the upgrade: %+v", info)
	}
	code1 := samePrivacyCode(t, a, b)
	if code1 == code0 {
		t.Fatal("the upgrade kept the old group's privacy code")
	}
	exchangeOpus(t, 5, a, b)
	if n := s.Stats().PlaintextOpusSeen; n != 0 {
		t.Fatalf("relay saw %d readable Opus frames", n)
	}
}

// recvRTP returns the next RTP packet, skipping RTCP.
func (c *rawClient) recvRTP() recvPacket {
	c.t.Helper()
	for {
		if p := c.recv(); !p.rtcp {
			return p
		}
	}
}

// TestDAVEInvalidWelcomeRecovery checks (d): a member that cannot process
// its Welcome sends op 31 and a new key package; the server proposes its
// removal, then adds it again, and it ends up in the group.
func TestDAVEInvalidWelcomeRecovery(t *testing.T) {
	s := startServer(t, Options{})
	ms := addMembers(t, s, "3001", "3002", "3003")
	epoch0 := ms[0].Epoch()
	s.CorruptNextWelcome("3004")
	d := addMembers(t, s, "3004")[0]
	all := append(ms, d)
	samePrivacyCode(t, all...)
	// Add (welcome refused), Remove, Add again.
	info, _ := s.DAVE(daveGuild, daveChannel)
	if info.Epoch != epoch0+3 || d.Epoch() != epoch0+3 || !slices.Equal(info.Members, []string{"3001", "3002", "3003", "3004"}) {
		t.Fatalf("after recovery: server %+v, member at epoch %d (was %d)", info, d.Epoch(), epoch0)
	}
	exchangeOpus(t, 5, all...)
}

// daveClient is a raw test client whose DAVE messages a dave.Session in
// the test answers, on a pump goroutine.
type daveClient struct {
	*rawClient
	sess   *dave.Session
	wg     sync.WaitGroup
	binOps []int // binary ops received, in order
	seqs   []int
	mu     sync.Mutex
	// withholdReady drops the session's op 23 answers, as a client that
	// is slow or broken.
	withholdReady bool
}

func (c *rawClient) sendBinary(op int, payload []byte) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.ws.WriteMessage(websocket.BinaryMessage, append([]byte{byte(op)}, payload...))
}

func (dc *daveClient) answer(out []dave.Outbound, err error) {
	if err != nil {
		dc.t.Errorf("dave session: %v", err)
	}
	for _, o := range out {
		if o.Op == opReadyForTransition && dc.withholdReady {
			continue
		}
		if o.JSON != nil {
			dc.writeMu.Lock()
			_ = dc.ws.WriteJSON(map[string]any{"op": o.Op, "d": o.JSON})
			dc.writeMu.Unlock()
			continue
		}
		dc.sendBinary(o.Op, o.Binary)
	}
}

// connectDAVE connects a client that offers DAVE, starts its session with
// the protocol of Session Description, and pumps its DAVE messages.
func connectDAVE(t *testing.T, s *Server, user string) *daveClient {
	t.Helper()
	return connectDAVEWith(t, s, user, false)
}

func connectDAVEWith(t *testing.T, s *Server, user string, withholdReady bool) *daveClient {
	t.Helper()
	sess, err := dave.NewSession(dave.SessionOptions{UserID: user, ChannelID: daveChannel})
	if err != nil {
		t.Fatal(err)
	}
	dc := &daveClient{rawClient: dialClient(t, s, daveGuild, daveChannel, user), sess: sess, withholdReady: withholdReady}
	dc.identify(1)
	dc.selectProtocol(ModeAES256GCM)
	if dc.daveVersion != 1 {
		t.Fatalf("DAVE client got dave_protocol_version %d", dc.daveVersion)
	}
	for _, m := range dc.log {
		if m.op == opClientsConnect || m.op == opClientDisconnect {
			dc.answer(sess.HandleJSON(m.op, m.d))
		}
	}
	dc.answer(sess.Start(1))
	dc.startPump()
	t.Cleanup(func() {
		_ = dc.ws.Close()
		dc.wg.Wait()
	})
	return dc
}

// startPump starts answering the current socket's DAVE messages; the pump
// ends when the socket closes.
func (dc *daveClient) startPump() {
	in := dc.in
	dc.wg.Add(1)
	go func() {
		defer dc.wg.Done()
		dc.pump(in)
	}()
}

func (dc *daveClient) pump(in <-chan wsMsg) {
	for m := range in {
		switch {
		case m.op == -1:
			if len(m.binary) < 3 {
				dc.t.Errorf("binary message of %d bytes", len(m.binary))
				continue
			}
			seq, op := int(binary.BigEndian.Uint16(m.binary)), int(m.binary[2])
			dc.mu.Lock()
			dc.binOps = append(dc.binOps, op)
			dc.seqs = append(dc.seqs, seq)
			dc.mu.Unlock()
			dc.answer(dc.sess.HandleBinary(op, m.binary[3:]))
		case m.op == opClientsConnect || m.op == opClientDisconnect || (m.op >= opPrepareTransition && m.op <= opPrepareEpoch):
			dc.answer(dc.sess.HandleJSON(m.op, m.d))
		}
		if m.seq != nil {
			dc.mu.Lock()
			dc.seqs = append(dc.seqs, *m.seq)
			dc.mu.Unlock()
		}
	}
}

// TestDAVERawClientDrivenBySession checks (e): a client on a raw websocket,
// driven by a dave.Session with binary framing both ways, joins two
// simulated members' group, exchanges end-to-end encrypted Opus with them
// through the relay, and follows a member's departure; the relay counts a
// plaintext frame from it, and refuses a key package for another user.
func TestDAVERawClientDrivenBySession(t *testing.T) {
	s := startServer(t, Options{})
	ms := addMembers(t, s, "3001", "3002")
	a, b := ms[0], ms[1]
	dc := connectDAVE(t, s, "1001")
	waitUntil(t, func() bool { return dc.sess.PrivacyCode() != "" && dc.sess.PrivacyCode() == a.PrivacyCode() })
	samePrivacyCode(t, a, b)
	info, _ := s.DAVE(daveGuild, daveChannel)
	if !slices.Equal(info.Members, []string{"1001", "3001", "3002"}) || dc.sess.Epoch() != info.Epoch {
		t.Fatalf("server %+v, client at epoch %d", info, dc.sess.Epoch())
	}
	dc.mu.Lock()
	ops := slices.Clone(dc.binOps)
	seqs := slices.Clone(dc.seqs)
	dc.mu.Unlock()
	// Op 25 right after Session Description, then the group's Welcome.
	if len(ops) < 2 || ops[0] != opExternalSender || !slices.Contains(ops, opWelcome) {
		t.Fatalf("binary ops %v", ops)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("sequence numbers %v are not consecutive", seqs)
		}
	}

	// Member to client: DAVE frames on the wire, plaintext after the
	// client's own decryption.
	frames := [][]byte{{0xFC, 1}, {0xFC, 2, 2}, {0xFC, 3, 3, 3}}
	for _, f := range frames {
		if err := a.SendOpus(f); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range frames {
		p := dc.recvRTP()
		if !isDAVEFrame(p.payload) || bytes.Contains(p.payload, f) {
			t.Fatalf("wire payload %x is not an opaque DAVE frame of %x", p.payload, f)
		}
		plain, err := dc.sess.DecryptFrame(nil, "3001", dave.Audio, p.payload)
		if err != nil || !bytes.Equal(plain, f) {
			t.Fatalf("client decrypted %x (%v), want %x", plain, err, f)
		}
	}
	// Client to members.
	for _, f := range frames {
		enc, err := dc.sess.EncryptFrame(nil, dave.Audio, f)
		if err != nil {
			t.Fatal(err)
		}
		dc.sendRTP(payloadTypeOpus, false, dc.ready.SSRC, enc)
	}
	for _, m := range ms {
		waitUntil(t, func() bool { return len(m.ReceivedOpus("1001")) == len(frames) })
		if !slices.EqualFunc(m.ReceivedOpus("1001"), frames, bytes.Equal) {
			t.Fatalf("member %s got %x", m.UserID(), m.ReceivedOpus("1001"))
		}
	}
	if st, _ := s.Stats().Session("1001"); st.PlaintextOpusSeen != 0 || s.Stats().PlaintextOpusSeen != 0 {
		t.Fatalf("relay saw readable frames: %+v", st)
	}

	// The silence frame is allowed in the clear; other plaintext is a
	// leak the relay counts (and members do not accept).
	dc.sendRTP(payloadTypeOpus, false, dc.ready.SSRC, []byte{0xF8, 0xFF, 0xFE})
	dc.sendRTP(payloadTypeOpus, false, dc.ready.SSRC, []byte{0xFC, 9, 9, 9})
	waitUntil(t, func() bool { st, _ := s.Stats().Session("1001"); return st.MediaIn == len(frames)+2 })
	waitUntil(t, func() bool { return a.Stats().DecryptFailures == 1 && len(a.ReceivedOpus("1001")) == len(frames)+1 })
	if st, _ := s.Stats().Session("1001"); st.PlaintextOpusSeen != 1 || s.Stats().PlaintextOpusSeen != 1 {
		t.Fatalf("plaintext not counted once: session %+v, total %d", st, s.Stats().PlaintextOpusSeen)
	}

	// A member leaves: the client commits or applies the Remove and
	// follows the group to the next epoch.
	epoch := info.Epoch
	b.Leave()
	waitUntil(t, func() bool { return dc.sess.Epoch() == epoch+1 && dc.sess.PrivacyCode() == a.PrivacyCode() })
	if a.Epoch() != epoch+1 {
		t.Fatalf("member at epoch %d, want %d", a.Epoch(), epoch+1)
	}

	// A key package whose credential is another user's is refused.
	other, err := dave.NewSession(dave.SessionOptions{UserID: "9999", ChannelID: daveChannel})
	if err != nil {
		t.Fatal(err)
	}
	out, err := other.Start(1)
	if err != nil || len(out) != 1 || out[0].Op != opKeyPackage {
		t.Fatalf("other session start: %v %+v", err, out)
	}
	dc.sendBinary(opKeyPackage, out[0].Binary)
	waitUntil(t, func() bool { st, _ := s.Stats().Session("1001"); return st.KeyPackagesRefused == 1 })
	if info, _ := s.DAVE(daveGuild, daveChannel); !slices.Equal(info.Members, []string{"1001", "3001"}) || info.Epoch != epoch+1 {
		t.Fatalf("after a foreign key package: %+v", info)
	}
}

// TestDAVEFrameCheck checks the relay's frame check against frames the
// dave package makes and against near misses.
func TestDAVEFrameCheck(t *testing.T) {
	ok := [][]byte{
		append(bytes.Repeat([]byte{0xAB}, 20), append(make([]byte, 8), 0x01, 0x0C, 0xFA, 0xFA)...),
		append(bytes.Repeat([]byte{0xAB}, 20), append(make([]byte, 8), 0x01, 0x00, 0x0A, 0x0E, 0xFA, 0xFA)...),
	}
	for i, f := range ok {
		if !isDAVEFrame(f) {
			t.Errorf("frame %d refused: %x", i, f)
		}
	}
	bad := map[string][]byte{
		"short":          {0x0C, 0xFA, 0xFA},
		"no marker":      append(make([]byte, 20), 0x0C, 0xFA, 0xFB),
		"size too small": append(make([]byte, 20), 0x01, 0x0A, 0xFA, 0xFA),
		"size too large": append(make([]byte, 8), 0x01, 0x40, 0xFA, 0xFA),
		"nonce runs on":  append(make([]byte, 20), append(make([]byte, 8), 0x81, 0x0C, 0xFA, 0xFA)...),
		"range too long": append(make([]byte, 20), append(make([]byte, 8), 0x01, 0x00, 0x20, 0x0E, 0xFA, 0xFA)...),
		"ranges overlap": append(make([]byte, 20), append(make([]byte, 8), 0x01, 0x00, 0x04, 0x02, 0x01, 0x10, 0xFA, 0xFA)...),
		"odd range data": append(make([]byte, 20), append(make([]byte, 8), 0x01, 0x00, 0x0D, 0xFA, 0xFA)...),
		"opus plaintext": {0xFC, 0xFF, 0xFE, 1, 2, 3, 4, 5, 6, 7, 8, 9},
	}
	for name, f := range bad {
		if isDAVEFrame(f) {
			t.Errorf("%s accepted: %x", name, f)
		}
	}
	// Frames from the real encryptor pass.
	sess, err := dave.NewSession(dave.SessionOptions{UserID: "1", ChannelID: "2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sess.EncryptFrame(nil, dave.Audio, []byte{1}); err != nil {
		t.Fatal(err) // protocol 0: passes unchanged
	}
	r, err := dave.NewHashRatchet(make([]byte, 16))
	if err != nil {
		t.Fatal(err)
	}
	var enc dave.Encryptor
	enc.SetRatchet(r)
	for _, tc := range []struct {
		codec dave.Codec
		frame []byte
	}{{dave.CodecOpus, []byte{0xFC, 1, 2, 3}}, {dave.CodecVP8, bytes.Repeat([]byte{0x10}, 40)}, {dave.CodecVP8, []byte{0x11, 2, 3}}} {
		f, err := enc.Encrypt(nil, tc.codec, tc.frame)
		if err != nil {
			t.Fatal(err)
		}
		if !isDAVEFrame(f) {
			t.Errorf("encryptor output refused: %x", f)
		}
	}
}

// TestAllocateNeedsSnowflakes checks that ids are Discord's.
func TestAllocateNeedsSnowflakes(t *testing.T) {
	s := startServer(t, Options{})
	if _, _, err := s.Allocate("g", daveChannel, "1", "s"); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("Allocate with guild g: %v", err)
	}
	if _, err := s.AddMember(MemberOptions{UserID: "sim", GuildID: daveGuild, ChannelID: daveChannel}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("AddMember with user sim: %v", err)
	}
}

// TestDAVEClientFirst checks the bridge's order of events: a DAVE client
// waits alone in a channel, then simulated members join. The first member
// creates the group with the client (op 30 to the client, whose own
// commit loses), and AddMember returns once the client has answered op 23
// and the transition executed.
func TestDAVEClientFirst(t *testing.T) {
	s := startServer(t, Options{})
	dc := connectDAVE(t, s, "1001")
	ms := addMembers(t, s, "3001", "3002")
	code := samePrivacyCode(t, ms...)
	// The execute (op 22) reaches the client's pump a moment later.
	waitUntil(t, func() bool { return dc.sess.PrivacyCode() == code })
	if dc.sess.Epoch() != 2 {
		t.Fatalf("client code %q at epoch %d, members %q", dc.sess.PrivacyCode(), dc.sess.Epoch(), code)
	}
	info, _ := s.DAVE(daveGuild, daveChannel)
	if info.Epoch != 2 || !slices.Equal(info.Members, []string{"1001", "3001", "3002"}) || info.CommitsRefused == 0 {
		t.Fatalf("server's view %+v (the client's creating commit must have lost)", info)
	}
	frame := []byte{0xFC, 7, 7}
	enc, err := dc.sess.EncryptFrame(nil, dave.Audio, frame)
	if err != nil {
		t.Fatal(err)
	}
	dc.sendRTP(payloadTypeOpus, true, dc.ready.SSRC, enc)
	for _, m := range ms {
		waitUntil(t, func() bool { return len(m.ReceivedOpus("1001")) == 1 })
		if !bytes.Equal(m.ReceivedOpus("1001")[0], frame) {
			t.Fatalf("member %s got %x", m.UserID(), m.ReceivedOpus("1001")[0])
		}
	}
}

// TestDAVESoleMemberReset checks the whitepaper's "Sole member reset":
// when one member is left alone in an established group the server sends
// it op 24 (epoch 1) and op 21 (transition 0) and forgets the group; the
// next member to join creates a new group with it.
func TestDAVESoleMemberReset(t *testing.T) {
	s := startServer(t, Options{})
	ms := addMembers(t, s, "3001", "3002")
	a := ms[0]
	code0 := samePrivacyCode(t, ms...)
	ms[1].Leave()
	if info, _ := s.DAVE(daveGuild, daveChannel); info.Epoch != 0 || len(info.Members) != 0 || info.Protocol != 1 {
		t.Fatalf("after the reset: %+v", info)
	}
	if a.ProtocolVersion() != 1 {
		t.Fatalf("sole member at protocol %d", a.ProtocolVersion())
	}
	c := addMembers(t, s, "3003")[0]
	code1 := samePrivacyCode(t, a, c)
	if info, _ := s.DAVE(daveGuild, daveChannel); code1 == code0 || info.Epoch != 1 || a.Epoch() != 1 {
		t.Fatalf("new group: %+v, member epoch %d, code changed %v", info, a.Epoch(), code1 != code0)
	}
	exchangeOpus(t, 3, a, c)
}

// TestDAVETransitionTimeout checks that a client that never answers op 23
// does not stall the group: the server executes the transition when
// TransitionTimeout passes, and the client follows op 22.
func TestDAVETransitionTimeout(t *testing.T) {
	const timeout = 100 * time.Millisecond
	s := startServer(t, Options{TransitionTimeout: timeout})
	a := addMembers(t, s, "3001")[0]
	dc := connectDAVEWith(t, s, "1001", true)
	// The member's commit adds the client; its op 23 never comes.
	waitUntil(t, func() bool {
		info, _ := s.DAVE(daveGuild, daveChannel)
		return info.Epoch == 1 && info.Transitions == 1
	})
	waitUntil(t, func() bool { return dc.sess.PrivacyCode() != "" })
	if dc.sess.PrivacyCode() != a.PrivacyCode() {
		t.Fatalf("client code %q, member %q", dc.sess.PrivacyCode(), a.PrivacyCode())
	}
}

// TestDAVEResumeReplaysBinary checks that binary DAVE messages are
// buffered for a v8 resume: while a DAVE client's socket is down a member
// joins, and the proposal (op 27) and commit (op 29) for it reach the
// client after Resumed, with consecutive sequence numbers; the client
// follows the group to the new epoch.
func TestDAVEResumeReplaysBinary(t *testing.T) {
	s := startServer(t, Options{TransitionTimeout: 200 * time.Millisecond})
	a := addMembers(t, s, "3001")[0]
	dc := connectDAVE(t, s, "1001")
	waitUntil(t, func() bool { return dc.sess.PrivacyCode() != "" && dc.sess.PrivacyCode() == a.PrivacyCode() })
	dc.mu.Lock()
	acked := dc.seqs[len(dc.seqs)-1]
	dc.mu.Unlock()

	s.DropSockets()
	dc.wg.Wait() // the pump ends with the socket
	// Away: the member's commit adding 3002 waits for this client's op 23
	// until the transition times out.
	b := addMembers(t, s, "3002")[0]
	dc.dial()
	dc.send(opResume, map[string]any{"server_id": dc.guild, "session_id": dc.session, "token": dc.token, "seq_ack": acked})
	dc.expect(opResumed)
	dc.mu.Lock()
	dc.binOps, dc.seqs = nil, nil
	dc.mu.Unlock()
	dc.startPump()
	waitUntil(t, func() bool { return dc.sess.PrivacyCode() != "" && dc.sess.PrivacyCode() == b.PrivacyCode() })
	dc.mu.Lock()
	ops, seqs := slices.Clone(dc.binOps), slices.Clone(dc.seqs)
	dc.mu.Unlock()
	if !slices.Equal(ops, []int{opProposals, opAnnounceCommit}) {
		t.Fatalf("replayed binary ops %v, want the proposal and the commit", ops)
	}
	for i, seq := range seqs {
		if seq != acked+1+i {
			t.Fatalf("replayed sequence numbers %v after %d", seqs, acked)
		}
	}
	exchangeOpus(t, 2, a, b)
}

// FuzzDAVEFrameCheck checks that the relay's frame check never calls a
// frame plaintext that the dave package's receiver treats as a DAVE frame
// (so a leak count is never a false alarm), and never panics.
func FuzzDAVEFrameCheck(f *testing.F) {
	f.Add(append(bytes.Repeat([]byte{0xAB}, 20), append(make([]byte, 8), 0x01, 0x0C, 0xFA, 0xFA)...))
	f.Add(append(bytes.Repeat([]byte{0xAB}, 20), append(make([]byte, 8), 0x01, 0x00, 0x0A, 0x0E, 0xFA, 0xFA)...))
	f.Add([]byte{0xFC, 1, 2, 3})
	f.Fuzz(func(t *testing.T, frame []byte) {
		d := dave.NewDecryptor(nil)
		d.TransitionToPassthrough(false, 0)
		_, err := d.Decrypt(nil, dave.Video, frame)
		if err != nil && !errors.Is(err, dave.ErrPassthroughDenied) && !isDAVEFrame(frame) {
			t.Fatalf("receiver treats %x as a DAVE frame (%v), the relay as plaintext", frame, err)
		}
	})
}

// nextBinary returns the client's next binary DAVE message (op and
// payload), feeding the DAVE JSON ops before it to sess and answering
// them.
func nextBinary(t *testing.T, c *rawClient, sess *dave.Session) (int, []byte) {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case m, ok := <-c.in:
			if !ok {
				t.Fatalf("socket closed (code %d)", c.closeCode)
			}
			if m.op == -1 {
				return int(m.binary[2]), m.binary[3:]
			}
			if m.op == opClientsConnect || m.op == opClientDisconnect || (m.op >= opPrepareTransition && m.op <= opPrepareEpoch) {
				out, err := sess.HandleJSON(m.op, m.d)
				if err != nil {
					t.Fatalf("op %d: %v", m.op, err)
				}
				sendOutbound(c, out)
			}
		case <-timeout:
			t.Fatalf("no binary message within %v", waitFor)
		}
	}
}

func sendOutbound(c *rawClient, out []dave.Outbound) {
	for _, o := range out {
		if o.JSON != nil {
			c.send(o.Op, o.JSON)
		} else {
			c.sendBinary(o.Op, o.Binary)
		}
	}
}

// manualDAVEClient connects a DAVE client whose messages the test handles
// one by one; it returns the session and its first key package, not yet
// sent.
func manualDAVEClient(t *testing.T, s *Server, user string) (*rawClient, *dave.Session, []byte) {
	t.Helper()
	c := dialClient(t, s, daveGuild, daveChannel, user)
	c.identify(1)
	c.selectProtocol(ModeAES256GCM)
	sess, err := dave.NewSession(dave.SessionOptions{UserID: user, ChannelID: daveChannel})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range c.log {
		if m.op == opClientsConnect {
			if _, err := sess.HandleJSON(m.op, m.d); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, err := sess.Start(c.daveVersion)
	if err != nil || len(out) != 1 {
		t.Fatalf("Start: %v %+v", err, out)
	}
	op, payload := nextBinary(t, c, sess)
	if op != opExternalSender {
		t.Fatalf("first binary op %d, want 25", op)
	}
	if _, err := sess.HandleBinary(op, payload); err != nil {
		t.Fatal(err)
	}
	return c, sess, out[0].Binary
}

// TestDAVEKeyPackageReplacedDuringCreation drives two clients by hand
// through group creation: each gets the other's Add; before anyone
// commits, one of them restarts with a new key package (sent wrapped in
// an MLSMessage). The server revokes the stale Add (op 27 revoke),
// proposes the new one, and the group forms from the next commit.
func TestDAVEKeyPackageReplacedDuringCreation(t *testing.T) {
	s := startServer(t, Options{})
	x, xs, xkp := manualDAVEClient(t, s, "1001")
	x.sendBinary(opKeyPackage, xkp)
	y, ys, ykp := manualDAVEClient(t, s, "1002")
	y.sendBinary(opKeyPackage, ykp)

	op, p := nextBinary(t, x, xs)
	if op != opProposals || p[0] != dave.ProposalsAppend {
		t.Fatalf("x got op %d type %d, want an append", op, p[0])
	}
	if out, err := xs.HandleBinary(op, p); err != nil || len(out) != 1 || out[0].Op != opCommitWelcome {
		t.Fatalf("x on Add(y): %v %+v", err, out) // commit held back
	}
	if op, _ = nextBinary(t, y, ys); op != opProposals {
		t.Fatalf("y got op %d", op)
	}

	// y restarts (a fresh MLS state) and sends a new key package, wrapped.
	ys2, err := dave.NewSession(dave.SessionOptions{UserID: "1002", ChannelID: daveChannel})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range y.log {
		if m.op == opClientsConnect {
			_, _ = ys2.HandleJSON(m.op, m.d)
		}
	}
	out, err := ys2.Start(1)
	if err != nil {
		t.Fatal(err)
	}
	ext := s.extSender(t)
	if _, err := ys2.HandleBinary(opExternalSender, ext); err != nil {
		t.Fatal(err)
	}
	wrapped := append([]byte{0, 1, 0, 5}, out[0].Binary...)
	y.sendBinary(opKeyPackage, wrapped)

	if op, p = nextBinary(t, x, xs); op != opProposals || p[0] != dave.ProposalsRevoke {
		t.Fatalf("x got op %d type %d, want a revoke", op, p[0])
	}
	if out, err := xs.HandleBinary(op, p); err != nil || len(out) != 0 {
		t.Fatalf("x on the revoke: %v %+v", err, out)
	}
	if op, p = nextBinary(t, x, xs); op != opProposals || p[0] != dave.ProposalsAppend {
		t.Fatalf("x got op %d type %d, want the new Add", op, p[0])
	}
	out, err = xs.HandleBinary(op, p)
	if err != nil || len(out) != 1 || out[0].Op != opCommitWelcome {
		t.Fatalf("x on the new Add: %v %+v", err, out)
	}
	sendOutbound(x, out) // x's commit creates the group

	// y gets x's Add again for its new state, then the Welcome.
	if op, p = nextBinary(t, y, ys2); op != opProposals {
		t.Fatalf("y got op %d, want x's Add", op)
	}
	if _, err := ys2.HandleBinary(op, p); err != nil {
		t.Fatal(err)
	}
	if op, p = nextBinary(t, y, ys2); op != opWelcome {
		t.Fatalf("y got op %d, want the Welcome", op)
	}
	out, err = ys2.HandleBinary(op, p)
	if err != nil {
		t.Fatal(err)
	}
	sendOutbound(y, out)
	if op, p = nextBinary(t, x, xs); op != opAnnounceCommit {
		t.Fatalf("x got op %d, want its commit announced", op)
	}
	out, err = xs.HandleBinary(op, p)
	if err != nil {
		t.Fatal(err)
	}
	sendOutbound(x, out)
	// Op 22 follows both op 23s; nextBinary feeds it while waiting for a
	// binary message, so wait for the sessions instead.
	for _, c := range []struct {
		c    *rawClient
		sess *dave.Session
	}{{x, xs}, {y, ys2}} {
		m := c.c.expect(opExecuteTransition)
		if _, err := c.sess.HandleJSON(m.op, m.d); err != nil {
			t.Fatal(err)
		}
	}
	if xs.PrivacyCode() == "" || xs.PrivacyCode() != ys2.PrivacyCode() {
		t.Fatalf("privacy codes %q and %q", xs.PrivacyCode(), ys2.PrivacyCode())
	}
	if info, _ := s.DAVE(daveGuild, daveChannel); info.Epoch != 1 || !slices.Equal(info.Members, []string{"1001", "1002"}) {
		t.Fatalf("server's view %+v", info)
	}
}

// extSender returns the test channel's op 25 payload.
func (s *Server) extSender(t *testing.T) []byte {
	t.Helper()
	var b []byte
	_ = s.withCall(daveGuild, daveChannel, false, func(c *call) { b = c.xs.Marshal() })
	if b == nil {
		t.Fatal("no call in the test channel")
	}
	return b
}

// BenchmarkDAVEMemberJoin measures one simulated member joining a DAVE
// group of eight and leaving it again: two epochs, each with proposals,
// every member's commit, the winner's announce (and Welcome), op 23s and
// op 22.
func BenchmarkDAVEMemberJoin(b *testing.B) {
	s, err := Start(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for i := range 8 {
		if _, err := s.AddMember(MemberOptions{UserID: fmt.Sprint(3000 + i), GuildID: daveGuild, ChannelID: daveChannel}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m, err := s.AddMember(MemberOptions{UserID: "4000", GuildID: daveGuild, ChannelID: daveChannel})
		if err != nil {
			b.Fatal(err)
		}
		if m.PrivacyCode() == "" {
			b.Fatal("member not in the group")
		}
		m.Leave()
	}
}

// BenchmarkDAVEMemberSendOpus measures a member's send path: DAVE
// encryption, RTP packetization and the relay to another member.
func BenchmarkDAVEMemberSendOpus(b *testing.B) {
	s, err := Start(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var ms []*Member
	for i := range 2 {
		m, err := s.AddMember(MemberOptions{UserID: fmt.Sprint(3000 + i), GuildID: daveGuild, ChannelID: daveChannel})
		if err != nil {
			b.Fatal(err)
		}
		ms = append(ms, m)
	}
	frame := bytes.Repeat([]byte{0xFC, 0x11}, 60)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := ms[0].SendOpus(frame); err != nil {
			b.Fatal(err)
		}
	}
}
