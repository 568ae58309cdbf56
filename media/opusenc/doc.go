// Package opusenc is a pure-Go Opus encoder for the bridge's audio mix: it
// turns 20 ms mono frames at 48 kHz into CELT-only Opus packets (RFC 6716
// §3 TOC configuration 31: CELT, fullband, 20 ms) of a constant size, so a
// CGO_ENABLED=0 build can send mixed audio to Discord.
//
// The decoder is the normative part of Opus; this encoder makes, for
// every symbol, the decisions RFC 6716's decoder expects: the range
// encoder (§4.1, §5.1), coarse energy with the Laplace model, fine and
// final energy (§4.3.2), the decoder's own bit allocation (§4.3.3), PVQ
// search and codeword enumeration with split angles and spreading
// (§4.3.4), and the forward MDCT with CELT's window (§4.3.7). Its tests
// check the result against two decoders it did not write: libopus's, via
// opusdec's per-packet final range (the bit-exact check), and pion/opus.
//
// Frames with an attack are coded as eight short blocks, detected and
// coded as libopus does, so an attack's noise stays within 2.5 ms of it;
// a pitch pre-filter takes a periodic voice's harmonics out before the
// transform (the decoder's post-filter puts them back), with a simpler
// pitch search than libopus's; band boosts, the allocation trim and the
// spreading are chosen as libopus chooses them. What a full CELT encoder
// does and this one leaves out: time-frequency resolution changes per band,
// which libopus analyses for each frame (here short blocks stay short in
// every band, long blocks long: a little less frequency resolution in
// transient frames); VBR (CBR only); stereo (mono only). On the tests'
// speech clip the result matches or beats libopus's own encoder at 32 to
// 128 kbit/s (segmental SNR and log-spectral distance), and its pre-echo
// on claps is within 0.5 dB of libopus's.
package opusenc
