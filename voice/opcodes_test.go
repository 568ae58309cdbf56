package voice

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestCloseCodeTable(t *testing.T) {
	cases := []struct {
		code int
		want closeAction
	}{
		{4001, closeNewSession}, {4002, closeNewSession}, {4003, closeNewSession}, {4004, closeNewSession},
		{4005, closeNewSession}, {4006, closeNewSession}, {4009, closeNewSession}, {4011, closeNewSession},
		{4012, closeStop}, {4014, closeAwaitServer}, {4015, closeResume}, {4016, closeStop}, {4017, closeStop},
		{4020, closeStop}, {4021, closeStop}, {4022, closeLeft},
		{4099, closeNewSession}, {1000, closeResume}, {1006, closeResume}, {0, closeResume},
	}
	for _, c := range cases {
		if got := lookupCloseCode(c.code).Action; got != c.want {
			t.Errorf("close %d: %s, want %s", c.code, got, c.want)
		}
	}
	e := &CloseError{Code: 4016, Name: closeCodes[4016].Name, err: closeCodes[4016].Err}
	if !errors.Is(e, ErrNoCommonMode) || !strings.Contains(e.Error(), "no common encryption mode") {
		t.Errorf("4016 error %q", e)
	}
	e = &CloseError{Code: 4017, Name: closeCodes[4017].Name, err: closeCodes[4017].Err}
	if !errors.Is(e, ErrDAVERequired) || !strings.Contains(e.Error(), "DAVE (E2EE) required") {
		t.Errorf("4017 error %q", e)
	}
	if actionFor(errors.New("read: connection reset")) != closeResume || actionFor(ErrZombie) != closeResume {
		t.Error("abnormal drops must resume")
	}
}

func TestGatewayURL(t *testing.T) {
	for in, want := range map[string]string{
		"sweetwater-12345.discord.media:2048": "wss://sweetwater-12345.discord.media:2048/?v=8",
		"127.0.0.1:4443":                      "wss://127.0.0.1:4443/?v=8",
		"wss://host:1/":                       "wss://host:1/?v=8",
	} {
		if got := gatewayURL(in); got != want {
			t.Errorf("gatewayURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDecodeMessages(t *testing.T) {
	m, err := decodeMessage([]byte(`{"op":5,"d":{"user_id":"9","ssrc":7,"speaking":1},"seq":12}`))
	if err != nil || m.Op != OpSpeaking || m.Seq == nil || *m.Seq != 12 {
		t.Fatalf("%+v %v", m, err)
	}
	for _, bad := range []string{``, `[]`, `{"d":1}`, `{"op":"x"}`, `{"op":1,"seq":"a"}`} {
		if _, err := decodeMessage([]byte(bad)); !errors.Is(err, ErrBadMessage) {
			t.Errorf("%q: err %v", bad, err)
		}
	}
	b, err := decodeBinaryMessage([]byte{0x01, 0x02, 25, 0xaa})
	if err != nil || b.Op != 25 || *b.Seq != 0x0102 || string(b.Binary) != "\xaa" {
		t.Fatalf("binary %+v %v", b, err)
	}
	if _, err := decodeBinaryMessage([]byte{1, 2}); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("short binary: %v", err)
	}
	sd := sessionDescriptionData{SecretKey: make([]int, 31)}
	if _, err := sd.key(); !errors.Is(err, ErrBadKey) {
		t.Fatalf("31-byte key: %v", err)
	}
	sd.SecretKey = append(sd.SecretKey, 256)
	if _, err := sd.key(); !errors.Is(err, ErrBadKey) {
		t.Fatalf("byte 256: %v", err)
	}
}

// TestHandleMapsUsers checks ops 5, 12 and 13 maintain the SSRC → user map
// and raise events.
func TestHandleMapsUsers(t *testing.T) {
	c := &Conn{log: slog.New(slog.DiscardHandler), events: make(chan Event, eventBuffer), ssrcs: map[uint32]ssrcOwner{}}
	for _, raw := range []string{
		`{"op":11,"d":{"user_ids":["u1","u2"]}}`,
		`{"op":5,"d":{"user_id":"u1","ssrc":10,"speaking":1}}`,
		`{"op":12,"d":{"user_id":"u1","audio_ssrc":10,"video_ssrc":11,"rtx_ssrc":12,"streams":[{"type":"video","rid":"100","ssrc":11}]}}`,
		`{"op":18,"d":{"anything":true}}`,
		`{"op":13,"d":{"user_id":"u2"}}`,
	} {
		m, err := decodeMessage([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		c.handle(nil, m)
	}
	if o, _ := c.ssrcOwner(11); o.userID != "u1" || o.kind != Video {
		t.Fatalf("video ssrc owner %+v", o)
	}
	want := []Event{MemberJoined{"u1"}, MemberJoined{"u2"}, Speaking{"u1", 10, true}, MemberLeft{"u2"}}
	for i, w := range want {
		if got := <-c.events; got != w {
			t.Fatalf("event %d = %+v, want %+v", i, got, w)
		}
	}
	if len(c.events) != 0 {
		t.Fatalf("%d extra events", len(c.events))
	}
	m, _ := decodeMessage([]byte(`{"op":13,"d":{"user_id":"u1"}}`))
	c.handle(nil, m)
	if _, ok := c.ssrcOwner(10); ok {
		t.Fatal("op 13 left the user's SSRC mapped")
	}
}

func FuzzVoiceGatewayMessage(f *testing.F) {
	for _, s := range []string{
		`{"op":8,"d":{"heartbeat_interval":41250}}`,
		`{"op":2,"d":{"ssrc":1,"ip":"127.0.0.1","port":1234,"modes":["aead_aes256_gcm_rtpsize"]},"seq":1}`,
		`{"op":4,"d":{"mode":"aead_aes256_gcm_rtpsize","secret_key":[1,2,3],"dave_protocol_version":1}}`,
		`{"op":5,"d":{"user_id":"1","ssrc":2,"speaking":1},"seq":3}`,
		`{"op":6,"d":{"t":1501184119561}}`,
		`{"op":11,"d":{"user_ids":["1"]}}`,
		`{"op":12,"d":{"user_id":"1","audio_ssrc":2,"video_ssrc":3,"rtx_ssrc":4,"streams":[]}}`,
		`{"op":13,"d":{"user_id":"1"}}`,
		`{"op":21,"d":{"transition_id":1,"protocol_version":0}}`,
		"\x00\x05\x19binary",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c := &Conn{log: slog.New(slog.DiscardHandler), events: make(chan Event, eventBuffer), ssrcs: map[uint32]ssrcOwner{}}
		for _, dec := range []func([]byte) (message, error){decodeMessage, decodeBinaryMessage} {
			m, err := dec(b)
			if err != nil {
				continue
			}
			c.handle(nil, m)
			var h helloData
			var r readyData
			var sd sessionDescriptionData
			_ = decodeData(m, &h)
			_ = decodeData(m, &r)
			if decodeData(m, &sd) == nil {
				if k, err := sd.key(); err == nil && len(k) != 32 {
					t.Fatalf("key of %d bytes accepted", len(k))
				}
			}
		}
	})
}

// FuzzDAVEGatewayMessage feeds server messages, as text and as binary
// frames, to a connection whose DAVE session runs protocol 1, and checks
// that nothing panics and that while a DAVE protocol is in force an
// outgoing frame is either refused or end-to-end encrypted, never sent as
// it was given.
func FuzzDAVEGatewayMessage(f *testing.F) {
	for _, s := range []string{
		`{"op":11,"d":{"user_ids":["400000000000000004"]},"seq":1}`,
		`{"op":13,"d":{"user_id":"400000000000000004"},"seq":2}`,
		`{"op":21,"d":{"transition_id":3,"protocol_version":0},"seq":3}`,
		`{"op":21,"d":{"transition_id":0,"protocol_version":1},"seq":3}`,
		`{"op":22,"d":{"transition_id":3},"seq":4}`,
		`{"op":24,"d":{"protocol_version":1,"epoch":1},"seq":5}`,
		"\x00\x06\x19\x41\x04binary",
		"\x00\x07\x1b\x00\x05\x00\x01\x00\x02",
		"\x00\x08\x1d\x00\x03\x00\x01",
		"\x00\x09\x1e\x00\x03",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c := &Conn{log: slog.New(slog.DiscardHandler), events: make(chan Event, eventBuffer), ssrcs: map[uint32]ssrcOwner{},
			opts: Options{UserID: "300000000000000003"}, creds: credentials{channelID: "200000000000000002"}}
		if err := c.newDAVESession(); err != nil {
			t.Fatal(err)
		}
		tr := &transport{}
		if err := c.startDAVE(nil, tr, 1); err != nil {
			t.Fatal(err)
		}
		for _, dec := range []func([]byte) (message, error){decodeMessage, decodeBinaryMessage} {
			m, err := dec(b)
			if err != nil {
				continue
			}
			c.handle(nil, m)
			frame := []byte{0xfc, 0x01, 0x02, 0x03}
			out, err := c.encryptFrame(tr, nil, Audio, frame)
			if c.DAVEVersion() >= 1 && err == nil && string(out) == string(frame) {
				t.Fatalf("protocol %d: frame sent unencrypted after %q", c.DAVEVersion(), b)
			}
		}
		c.dropDAVESession()
	})
}
