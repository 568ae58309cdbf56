package voiceemu

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

func TestParseRTP(t *testing.T) {
	base := func() rtpPacket {
		return rtpPacket{marker: true, payloadType: 120, sequence: 7, timestamp: 960, ssrc: 42, payload: []byte{1, 2, 3}}
	}
	withExt := base()
	withExt.csrcs = []uint32{5, 6}
	withExt.extProfile, withExt.extension = 0xBEDE, []byte{0x10, 0xff, 0, 0}
	for _, p := range []rtpPacket{base(), withExt} {
		got, err := parseRTP(p.marshal())
		if err != nil {
			t.Fatal(err)
		}
		if got.marker != p.marker || got.payloadType != p.payloadType || got.sequence != p.sequence ||
			got.timestamp != p.timestamp || got.ssrc != p.ssrc || len(got.csrcs) != len(p.csrcs) ||
			!bytes.Equal(got.extension, p.extension) || got.extProfile != p.extProfile || !bytes.Equal(got.payload, p.payload) {
			t.Fatalf("round trip %+v -> %+v", p, got)
		}
	}
	padded := append(base().marshal(), 0, 0, 3)
	padded[0] |= 0x20
	if got, err := parseRTP(padded); err != nil || !bytes.Equal(got.payload, []byte{1, 2, 3}) {
		t.Fatalf("padding: %v %v", got.payload, err)
	}
	bad := map[string][]byte{
		"short":          {0x80, 120, 0},
		"version 1":      append([]byte{0x40}, base().marshal()[1:]...),
		"csrc overrun":   append([]byte{0x8f}, base().marshal()[1:]...),
		"ext overrun":    {0x90, 120, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 9},
		"bad padding":    {0xa0, 120, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0},
		"padding no pay": {0xa0, 120, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	}
	for name, b := range bad {
		if _, err := parseRTP(b); !errors.Is(err, ErrBadPacket) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestTransportCipherAllModes(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	pkt := rtpPacket{payloadType: 120, sequence: 1, timestamp: 2, ssrc: 3, csrcs: []uint32{9},
		extProfile: 0xBEDE, extension: []byte{0x10, 0x7f, 0, 0}, payload: []byte("opus frame")}
	plain := pkt.marshal()
	for _, mode := range []string{ModeAES256GCM, ModeXChaCha20Poly1305, ModeXSalsa20Poly1305, ModeXSalsa20Suffix, ModeXSalsa20Lite} {
		t.Run(mode, func(t *testing.T) {
			c, err := newTransportCipher(mode, key)
			if err != nil {
				t.Fatal(err)
			}
			sealed, err := c.seal(plain)
			if err != nil {
				t.Fatal(err)
			}
			opened, err := c.open(sealed)
			if err != nil || !bytes.Equal(opened, plain) {
				t.Fatalf("open: %v", err)
			}
			hlen, _ := c.clearHeaderLen(plain)
			rtpsize := mode == ModeAES256GCM || mode == ModeXChaCha20Poly1305
			if want := map[bool]int{true: 12 + 4 + 4, false: 12}[rtpsize]; hlen != want {
				t.Fatalf("clear header %d, want %d", hlen, want)
			}
			// The extension body is never in the clear.
			if bytes.Contains(sealed, pkt.payload) || (rtpsize && bytes.Equal(sealed[hlen:hlen+4], pkt.extension)) {
				t.Fatal("plaintext visible")
			}
			// A flipped bit fails authentication: anywhere in the rtpsize
			// modes and in xsalsa20_poly1305 (whose nonce is the header);
			// only past the header in the suffix and lite modes, which do
			// not authenticate the header at all.
			for _, i := range []int{1, hlen - 1, hlen + 1, len(sealed) - 1} {
				if (mode == ModeXSalsa20Suffix || mode == ModeXSalsa20Lite) && i < hlen {
					continue
				}
				bad := append([]byte(nil), sealed...)
				bad[i] ^= 0x01
				if _, err := c.open(bad); !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrBadPacket) {
					t.Fatalf("flip at %d: %v", i, err)
				}
			}
			rr := receiverReport(5, []reportBlock{{ssrc: 3, highestSeq: 9}})
			sealedRR, err := c.seal(rr)
			if err != nil || !bytes.Equal(sealedRR[:8], rr[:8]) {
				t.Fatalf("RTCP seal: %v", err)
			}
			if got, err := c.open(sealedRR); err != nil || !bytes.Equal(got, rr) {
				t.Fatalf("RTCP open: %v", err)
			}
		})
	}
	if _, err := newTransportCipher("aead_aes256_gcm", key); !errors.Is(err, ErrUnknownMode) {
		t.Fatalf("unknown mode: %v", err)
	}
	if _, err := newTransportCipher(ModeAES256GCM, key[:16]); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("short key: %v", err)
	}
}

func TestVP8PacketizeAndAssemble(t *testing.T) {
	frame := make([]byte, 2500)
	for i := range frame {
		frame[i] = byte(i)
	}
	frame[0] = 0x10 // key frame (inverse flag clear)
	payloads := vp8Packetize(frame, 0x1234)
	if len(payloads) != 3 {
		t.Fatalf("%d packets", len(payloads))
	}
	var a vp8Assembler
	for i, pl := range payloads {
		d, err := parseVP8Descriptor(pl)
		if err != nil || d.start != (i == 0) || d.headerLen != 4 {
			t.Fatalf("descriptor %d: %+v %v", i, d, err)
		}
		f, ok := a.push(rtpPacket{sequence: uint16(100 + i), marker: i == len(payloads)-1, payload: pl})
		if ok != (i == len(payloads)-1) {
			t.Fatalf("frame completed at packet %d", i)
		}
		if ok && (!bytes.Equal(f.Data, frame) || !f.Keyframe) {
			t.Fatal("reassembled frame differs")
		}
	}
	// A lost middle packet discards the frame.
	var b vp8Assembler
	b.push(rtpPacket{sequence: 1, payload: payloads[0]})
	if _, ok := b.push(rtpPacket{sequence: 3, marker: true, payload: payloads[2]}); ok {
		t.Fatal("frame with a hole delivered")
	}
	for _, bad := range [][]byte{{}, {0x80}, {0x80, 0x80}, {0x80, 0x80, 0x80}, {0x80, 0x70}} {
		if _, err := parseVP8Descriptor(bad); !errors.Is(err, ErrBadPacket) {
			t.Errorf("descriptor %x: %v", bad, err)
		}
	}
}

func TestReplayBuffer(t *testing.T) {
	ss := &session{srv: &Server{opts: Options{ResumeBuffer: 3}}}
	if got, ok := ss.replayLocked(-1); !ok || len(got) != 0 {
		t.Fatal("nothing sent yet: resume must succeed with nothing to replay")
	}
	for range 5 {
		ss.sendJSON(opSpeaking, nil) // seqs 1..5, buffer keeps 3..5
	}
	cases := []struct {
		ack  int
		want []int
		ok   bool
	}{
		{5, nil, true}, {4, []int{5}, true}, {3, []int{4, 5}, true}, {2, []int{3, 4, 5}, true},
		{1, nil, false}, {-1, nil, false}, {9, nil, false},
	}
	for _, tc := range cases {
		got, ok := ss.replayLocked(tc.ack)
		var seqs []int
		for _, m := range got {
			seqs = append(seqs, m.seq)
		}
		if ok != tc.ok || len(seqs) != len(tc.want) {
			t.Fatalf("seq_ack %d: %v %v, want %v %v", tc.ack, seqs, ok, tc.want, tc.ok)
		}
	}
	// The wire sequence wraps at 16 bits.
	ss.seq, ss.buffer = 0xfffe, nil
	ss.sendJSON(opSpeaking, nil)
	ss.sendJSON(opSpeaking, nil)
	if got, ok := ss.replayLocked(0xffff); !ok || len(got) != 1 || wireSeq(got[0].seq) != 0 {
		t.Fatalf("wrap: %v %v", got, ok)
	}
}

func TestReceiveSequenceTracking(t *testing.T) {
	ss := &session{}
	for _, s := range []uint16{65534, 65535, 3, 2, 0x8005} {
		ss.noteReceived(s)
	}
	if ss.highSeq != 1<<16|3 {
		t.Fatalf("extended highest %x, want 10003", ss.highSeq)
	}
}

func TestDiscoveryReply(t *testing.T) {
	r := discoveryReply(77, netip.MustParseAddrPort("127.0.0.1:4242"))
	if len(r) != 74 || binary.BigEndian.Uint16(r) != 2 || binary.BigEndian.Uint16(r[2:]) != 70 ||
		binary.BigEndian.Uint32(r[4:]) != 77 || string(r[8:17]) != "127.0.0.1" || r[17] != 0 ||
		binary.BigEndian.Uint16(r[72:]) != 4242 {
		t.Fatalf("%x", r)
	}
	if !isDiscoveryRequest(append([]byte{0, 1, 0, 70}, make([]byte, 70)...)) || isDiscoveryRequest(r) {
		t.Fatal("request detection")
	}
}

func BenchmarkSealOpen(b *testing.B) {
	key := bytes.Repeat([]byte{1}, 32)
	profile, ext := relayExtension(1)
	plain := rtpPacket{payloadType: 120, ssrc: 1, extProfile: profile, extension: ext, payload: make([]byte, 160)}.marshal()
	for _, mode := range []string{ModeAES256GCM, ModeXChaCha20Poly1305, ModeXSalsa20Lite} {
		b.Run(mode, func(b *testing.B) {
			c, _ := newTransportCipher(mode, key)
			b.ReportAllocs()
			b.SetBytes(int64(len(plain)))
			for b.Loop() {
				sealed, _ := c.seal(plain)
				if _, err := c.open(sealed); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRelayToClient(b *testing.B) {
	s := startServer(b, Options{})
	c := connect(b, s, "g", "c", "client", ModeAES256GCM)
	sim, err := s.AddMember(MemberOptions{UserID: "sim", GuildID: "g", ChannelID: "c"})
	if err != nil {
		b.Fatal(err)
	}
	defer sim.Leave()
	frame := make([]byte, 120)
	frame[0] = 0xfc
	b.ReportAllocs()
	for b.Loop() {
		if err := sim.SendOpus(frame); err != nil {
			b.Fatal(err)
		}
		c.readUDP()
	}
}

func TestBinaryMessagesAreSequencedAndReplayed(t *testing.T) {
	ss := &session{srv: &Server{opts: Options{ResumeBuffer: 8}}}
	ss.sendJSON(opSpeaking, nil)
	ss.sendBinary(25, []byte{0xAA, 0xBB})
	got, ok := ss.replayLocked(1)
	if !ok || len(got) != 1 || !got[0].binary || !bytes.Equal(got[0].data, []byte{0, 2, 25, 0xAA, 0xBB}) {
		t.Fatalf("binary frame %+v %v, want seq 2, op 25, payload", got, ok)
	}
}
