package voice

import (
	"testing"
	"time"

	"github.com/pion/rtp/codecs"
)

// opusFrameLen is a typical 20 ms Opus frame at 64 kbit/s.
const opusFrameLen = 160

// BenchmarkDecryptParse measures opening and parsing one received Opus
// packet per mode; the steady state must not allocate.
func BenchmarkDecryptParse(b *testing.B) {
	payload := make([]byte, opusFrameLen)
	for _, m := range Modes() {
		b.Run(string(m), func(b *testing.B) {
			tx, _ := NewCipher(m, katKey())
			rx, _ := NewCipher(m, katKey())
			h := Header{PayloadType: PayloadTypeOpus, Sequence: 1, Timestamp: 960, SSRC: 42}
			pkt, err := tx.SealRTP(nil, &h, payload)
			if err != nil {
				b.Fatal(err)
			}
			dst := make([]byte, 0, 1500)
			b.SetBytes(int64(len(pkt)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, _, err := rx.OpenRTP(dst, pkt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncryptPacketize measures building and sealing one outgoing
// Opus packet per mode; the steady state must not allocate.
func BenchmarkEncryptPacketize(b *testing.B) {
	payload := make([]byte, opusFrameLen)
	for _, m := range Modes() {
		b.Run(string(m), func(b *testing.B) {
			tx, _ := NewCipher(m, katKey())
			h := Header{PayloadType: PayloadTypeOpus, SSRC: 42}
			dst := make([]byte, 0, 1500)
			b.SetBytes(int64(opusFrameLen))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				h.Sequence++
				h.Timestamp += 960
				var err error
				if dst, err = tx.SealRTP(dst, &h, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVP8PacketizeSeal measures splitting a 20 kB VP8 frame and
// sealing its packets with the preferred mode.
func BenchmarkVP8PacketizeSeal(b *testing.B) {
	frame := make([]byte, 20000)
	tx, _ := NewCipher(ModeAES256GCMRTPSize, katKey())
	p := codecs.VP8Payloader{EnablePictureID: true}
	h := Header{PayloadType: PayloadTypeVP8, SSRC: 43}
	dst := make([]byte, 0, 1500)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		payloads := p.Payload(DefaultVP8MaxPayload, frame)
		for i, payload := range payloads {
			h.Sequence++
			h.Marker = i == len(payloads)-1
			var err error
			if dst, err = tx.SealRTP(dst, &h, payload); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkReorderBuffer measures one push and pop with a swap every
// 20 packets.
func BenchmarkReorderBuffer(b *testing.B) {
	r := NewReorderBuffer[int](AudioReorderDepth, AudioReorderDelay)
	now := time.Unix(0, 0)
	b.ReportAllocs()
	var seq uint16
	for b.Loop() {
		s := seq
		if seq%20 == 1 {
			s++
		} else if seq%20 == 2 {
			s--
		}
		r.Push(s, now, int(s))
		for {
			if _, ok := r.Pop(); !ok {
				break
			}
		}
		seq++
		now = now.Add(frameDuration)
	}
}
