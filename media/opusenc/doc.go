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
// What a full CELT encoder does and this one leaves out, and what that
// costs: no transient detection, so every frame is one long block and a
// sharp attack spreads pre-echo over up to 20 ms; no pitch pre-filter,
// so strongly periodic voices get no post-filter help; fixed spreading
// (normal), no time-frequency changes, no dynamic band boosts and the
// default allocation trim, where libopus analyses each frame to choose
// them; CBR only, no VBR; mono only. For mixed voice at 64 kbit/s these
// cost a little sharpness, measured against libopus in the tests.
package opusenc
