package voice

import (
	"encoding/json"
	"testing"

	"github.com/voicebridge/bridge/voice/dave"
)

// daveTwoMembers forms a two-member DAVE group through an external sender
// (A commits B's Add, transition 1 executes) and returns both sessions
// with media keys in force.
func daveTwoMembers(tb testing.TB) (a, b *dave.Session) {
	tb.Helper()
	const channel, userA, userB = "200000000000000002", "300000000000000003", "400000000000000004"
	must := func(outs []dave.Outbound, err error) []dave.Outbound {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
		return outs
	}
	x, err := dave.NewExternalSender(channel)
	if err != nil {
		tb.Fatal(err)
	}
	start := func(self, other string) (*dave.Session, []byte) {
		s, err := dave.NewSession(dave.SessionOptions{UserID: self, ChannelID: channel})
		if err != nil {
			tb.Fatal(err)
		}
		kp := must(s.Start(1))[0].Binary
		must(s.HandleBinary(dave.OpMLSExternalSender, x.Marshal()))
		cc, _ := json.Marshal(dave.ClientsConnect{UserIDs: []string{other}})
		must(s.HandleJSON(dave.OpClientsConnect, cc))
		return s, kp
	}
	a, kpA := start(userA, userB)
	b, kpB := start(userB, userA)
	if _, err := x.ProposeAdd(userA, kpA); err != nil {
		tb.Fatal(err)
	}
	addB, err := x.ProposeAdd(userB, kpB)
	if err != nil {
		tb.Fatal(err)
	}
	commit := must(a.HandleBinary(dave.OpMLSProposals, dave.AppendProposalsPayload(addB)))[0].Binary
	acc, err := x.AcceptCommit(userA, commit)
	if err != nil {
		tb.Fatal(err)
	}
	must(a.HandleBinary(dave.OpMLSAnnounceCommit, dave.AnnounceCommitPayload(1, acc.Commit)))
	must(b.HandleBinary(dave.OpMLSWelcome, dave.WelcomePayload(1, acc.Welcomes[userB])))
	exec, _ := json.Marshal(dave.ExecuteTransition{TransitionID: 1})
	must(a.HandleJSON(dave.OpExecuteTransition, exec))
	must(b.HandleJSON(dave.OpExecuteTransition, exec))
	if a.PrivacyCode() == "" || a.PrivacyCode() != b.PrivacyCode() {
		tb.Fatalf("group not formed: codes %q and %q", a.PrivacyCode(), b.PrivacyCode())
	}
	return a, b
}

// BenchmarkDAVESendPath measures the per-frame send path with DAVE in
// force: end-to-end encryption into the pacer's buffer, then transport
// sealing. The steady state must not allocate.
func BenchmarkDAVESendPath(b *testing.B) {
	a, _ := daveTwoMembers(b)
	c := &Conn{}
	tr := &transport{dave: a}
	sealer, err := NewCipher(ModeAES256GCMRTPSize, katKey())
	if err != nil {
		b.Fatal(err)
	}
	frame := make([]byte, opusFrameLen)
	frame[0] = 0xfc
	abuf := make([]byte, 0, maxOpusFrame+dave.MaxEncryptedOverhead)
	pkt := make([]byte, 0, maxDatagram)
	h := Header{PayloadType: PayloadTypeOpus, SSRC: 42}
	b.SetBytes(opusFrameLen)
	b.ReportAllocs()
	for b.Loop() {
		out, err := c.encryptFrame(tr, abuf[:0], Audio, frame)
		if err != nil {
			b.Fatal(err)
		}
		h.Sequence++
		h.Timestamp += samplesPerFrame
		if pkt, err = sealer.SealRTP(pkt[:0], &h, out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDAVERoundTrip measures one frame from the sender's encryption
// to the receiver's per-sender decryption through Conn.decryptFrame,
// which allocates the delivered payload.
func BenchmarkDAVERoundTrip(b *testing.B) {
	sa, sb := daveTwoMembers(b)
	rx := &Conn{}
	rx.davePtr.Store(sb)
	tr := &transport{dave: sa}
	frame := make([]byte, opusFrameLen)
	frame[0] = 0xfc
	abuf := make([]byte, 0, maxOpusFrame+dave.MaxEncryptedOverhead)
	b.SetBytes(opusFrameLen)
	b.ReportAllocs()
	for b.Loop() {
		enc, err := rx.encryptFrame(tr, abuf[:0], Audio, frame)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := rx.decryptFrame("300000000000000003", Audio, enc); err != nil {
			b.Fatal(err)
		}
	}
}
