package voiceemu

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"time"
)

const maxDatagram = 1500

// readUDP is the one reader of the media socket.
func (s *Server) readUDP() {
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := s.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("udp read", "err", err)
			continue
		}
		s.handleDatagram(append([]byte(nil), buf[:n]...), netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
	}
}

// handleDatagram classifies one datagram from a client: IP discovery,
// RTCP, RTP, or anything else (keepalives). It must accept any bytes.
func (s *Server) handleDatagram(pkt []byte, from netip.AddrPort) {
	if isDiscoveryRequest(pkt) {
		ssrc := binary.BigEndian.Uint32(pkt[4:])
		ss := s.sessionFor(ssrc, from)
		if ss != nil {
			ss.counters.packetsIn.Add(1)
			ss.counters.discoveries.Add(1)
			ss.mu.Lock()
			ss.addr = from
			ss.mu.Unlock()
		} else {
			s.unknown.Add(1)
		}
		if s.writeUDP(discoveryReply(ssrc, from), from) && ss != nil {
			ss.counters.packetsOut.Add(1)
		}
		return
	}
	rtcp := len(pkt) >= rtcpClearSize && pkt[0]>>6 == 2 && isRTCP(pkt)
	rtp := !rtcp && len(pkt) >= rtpFixedHeaderSize && pkt[0]>>6 == 2
	var ssrc uint32
	switch {
	case rtcp:
		ssrc = binary.BigEndian.Uint32(pkt[4:])
	case rtp:
		ssrc = binary.BigEndian.Uint32(pkt[8:])
	default:
		// Keepalive or noise: counted, and echoed as some clients expect.
		ss := s.sessionFor(0, from)
		if ss == nil {
			s.unknown.Add(1)
			return
		}
		ss.counters.packetsIn.Add(1)
		ss.counters.keepalivesIn.Add(1)
		if s.writeUDP(pkt, from) {
			ss.counters.packetsOut.Add(1)
		}
		return
	}
	ss := s.sessionFor(ssrc, from)
	if ss == nil {
		s.unknown.Add(1)
		return
	}
	ss.counters.packetsIn.Add(1)
	ss.mu.Lock()
	tc := ss.cipher
	ss.mu.Unlock()
	if tc == nil {
		ss.counters.decryptFailures.Add(1)
		return
	}
	plain, err := tc.open(pkt)
	if err != nil {
		ss.counters.decryptFailures.Add(1)
		return
	}
	ss.mu.Lock()
	ss.addr = from // latch onto where authentic packets come from
	ss.mu.Unlock()
	if rtcp {
		ss.counters.rtcpIn.Add(1)
		return
	}
	p, err := parseRTP(plain)
	if err != nil {
		ss.counters.badPackets.Add(1)
		return
	}
	ss.counters.mediaIn.Add(1)
	ss.mu.Lock()
	allowed := ss.declared[p.payloadType]
	ss.mu.Unlock()
	if !allowed {
		ss.counters.undeclared.Add(1)
		return
	}
	if p.payloadType == payloadTypeOpus && !s.spoke(ss) {
		return
	}
	if p.payloadType == payloadTypeOpus && ss.e2ee.leaks(time.Now(), p.payload) {
		ss.counters.plaintextOpus.Add(1)
		s.plaintext.Add(1)
	}
	if p.payloadType == payloadTypeOpus {
		ss.noteOpus(p.payload)
	}
	ss.noteReceived(p.sequence)
	s.relay(ss.guildID, ss.channelID, ss.userID, p)
}

// sessionFor finds the session that owns an SSRC, else the one whose
// client sends from addr.
func (s *Server) sessionFor(ssrc uint32, from netip.AddrPort) *session {
	s.mu.Lock()
	ss := s.bySSRC[ssrc]
	if ss != nil {
		s.mu.Unlock()
		return ss
	}
	candidates := make([]*session, 0, len(s.sessions))
	for _, x := range s.sessions {
		candidates = append(candidates, x)
	}
	s.mu.Unlock()
	for _, x := range candidates {
		x.mu.Lock()
		match := x.addr == from
		x.mu.Unlock()
		if match {
			return x
		}
	}
	return nil
}

// noteOpus counts one Opus packet from the client, and the run of
// silence frames it ends or extends, for SpeakingEvent.
func (ss *session) noteOpus(payload []byte) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.opusIn++
	if isSilence(payload) {
		ss.silenceRun++
	} else {
		ss.silenceRun = 0
	}
}

// noteReceived tracks the extended highest sequence number (RFC 3550
// §A.1, without the probation) for receiver reports.
func (ss *session) noteReceived(seq uint16) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if !ss.seqInit {
		ss.highSeq, ss.seqInit = uint32(seq), true
		return
	}
	cycles := ss.highSeq &^ 0xffff
	if delta := seq - uint16(ss.highSeq); delta < 0x8000 {
		if seq < uint16(ss.highSeq) {
			cycles += 1 << 16
		}
		ss.highSeq = cycles | uint32(seq)
	}
}

// relay sends a media packet from one member of a channel to every other
// member: sealed per receiver for clients, in process for simulated
// members. Packets to clients carry the SFU's header extension.
func (s *Server) relay(guildID, channelID, fromUser string, p rtpPacket) {
	sessions, members := s.channelPeers(guildID, channelID, fromUser)
	for _, m := range members {
		m.deliver(fromUser, p)
	}
	if len(sessions) == 0 {
		return
	}
	out := p
	out.extProfile, out.extension = relayExtension(p.sequence)
	plain := out.marshal()
	for _, r := range sessions {
		s.sendMedia(r, plain, p)
	}
}

// sendMedia seals one relayed packet for a client and sends it through the
// faults.
func (s *Server) sendMedia(r *session, plain []byte, p rtpPacket) {
	r.mu.Lock()
	tc, addr := r.cipher, r.addr
	if tc != nil && addr.IsValid() {
		src := r.sources[p.ssrc]
		if src == nil {
			src = &sourceCount{}
			r.sources[p.ssrc] = src
		}
		src.packets++
		src.octets += uint32(len(p.payload))
		src.lastTS = p.timestamp
	}
	r.mu.Unlock()
	if tc == nil || !addr.IsValid() {
		return // not ready for media yet
	}
	sealed, err := tc.seal(plain)
	if err != nil {
		r.log.Warn("seal relayed packet", "err", err)
		return
	}
	r.counters.relayed.Add(1)
	for _, b := range s.applyFaults(r, sealed) {
		if s.writeUDP(b, addr) {
			r.counters.packetsOut.Add(1)
		}
	}
}

// sendReports sends each ready client an RTCP sender report for every
// source relayed to it and a receiver report about its own stream, sealed
// like media, so that a client learns to tell RTCP from RTP.
func (s *Server) sendReports(now time.Time) {
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	for _, ss := range sessions {
		var reports [][]byte
		ss.mu.Lock()
		tc, addr := ss.cipher, ss.addr
		for ssrc, src := range ss.sources {
			reports = append(reports, senderReport(ssrc, now, src.lastTS, src.packets, src.octets))
		}
		var blocks []reportBlock
		if ss.seqInit {
			blocks = append(blocks, reportBlock{ssrc: ss.ssrc, highestSeq: ss.highSeq})
		}
		ss.mu.Unlock()
		if tc == nil || !addr.IsValid() {
			continue
		}
		reports = append(reports, receiverReport(serverSSRC, blocks))
		for _, r := range reports {
			sealed, err := tc.seal(r)
			if err != nil {
				continue
			}
			if s.writeUDP(sealed, addr) {
				ss.counters.rtcpOut.Add(1)
				ss.counters.packetsOut.Add(1)
			}
		}
	}
}

// speakingGrace is how long audio may come from a connection before its
// Speaking (op 5) is seen: the two travel on different sockets, and a
// burst of packets can overtake the websocket message.
const speakingGrace = time.Second

// spoke checks an audio packet against Speaking: Discord requires op 5
// before audio (Discord voice docs, "Speaking"); video has its own
// announcement (op 12). Audio without op 5 for longer than speakingGrace
// ends the session with 4002, and false is returned.
func (s *Server) spoke(ss *session) bool {
	now := time.Now()
	ss.mu.Lock()
	ok := ss.announced
	if !ok && ss.unannounced.IsZero() {
		ss.unannounced = now
	}
	since := ss.unannounced
	ss.mu.Unlock()
	if ok {
		return true
	}
	ss.counters.beforeSpeaking.Add(1)
	if now.Sub(since) <= speakingGrace {
		return true
	}
	ss.log.Warn("audio from an SSRC that sent no Speaking (op 5): disconnecting", "since", now.Sub(since))
	s.endSession(ss, 4002)
	return false
}
