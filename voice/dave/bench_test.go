package dave

import "testing"

// A 20 ms Opus frame at about 48 kbit/s is 120 bytes.
const benchOpusSize = 120

func BenchmarkEncryptOpusFrame(b *testing.B) {
	e := &Encryptor{}
	e.SetRatchet(testRatchet(b, 1))
	frame := opusFrame(benchOpusSize)
	dst := make([]byte, 0, benchOpusSize+64)
	b.ReportAllocs()
	b.SetBytes(benchOpusSize)
	for b.Loop() {
		var err error
		if dst, err = e.Encrypt(dst[:0], CodecOpus, frame); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecryptOpusFrame(b *testing.B) {
	clk := newFakeClock()
	e, d := pair(b, clk)
	frame := opusFrame(benchOpusSize)
	// Every frame must carry a fresh nonce, so encrypt batches with the
	// timer stopped and decrypt them in order.
	const batch = 4096
	frames := make([][]byte, batch)
	for i := range frames {
		frames[i] = make([]byte, 0, benchOpusSize+64)
	}
	refill := func() {
		for i := range frames {
			var err error
			if frames[i], err = e.Encrypt(frames[i][:0], CodecOpus, frame); err != nil {
				b.Fatal(err)
			}
		}
	}
	refill()
	// Warm up the decryptor's scratch buffers and generation cipher.
	dst := make([]byte, 0, benchOpusSize+64)
	if _, err := d.Decrypt(dst, Audio, frames[0]); err != nil {
		b.Fatal(err)
	}
	next := 1
	b.ReportAllocs()
	b.SetBytes(benchOpusSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if next == batch {
			b.StopTimer()
			refill()
			next = 0
			b.StartTimer()
		}
		out, err := d.Decrypt(dst[:0], Audio, frames[next])
		if err != nil || len(out) != benchOpusSize {
			b.Fatalf("frame %d: %v", i, err)
		}
		next++
	}
}
