package voice

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/voicebridge/bridge/voice/dave"
)

// This file joins the voice client to package voice/dave: one dave.Session
// per voice session, the routing of DAVE opcodes 11, 13, 21-31 (Discord
// voice docs, "Opcodes and Status Codes"; DAVE whitepaper, "Voice Gateway
// Opcodes"), and the FrameEncryptor/FrameDecryptor seam.

// DAVEStats counts end-to-end encryption over the connection's life,
// earlier voice sessions included; zero while DAVE is off.
type DAVEStats struct {
	// Senders holds per user id what happened to that user's frames: our
	// own entry counts the frames we encrypted, the others' entries count
	// decryption successes, passthrough and silence frames, and failures
	// by reason.
	Senders map[string]dave.SenderStats
	// NoKeyDropped counts our frames dropped because a DAVE protocol was
	// in force and no media key was ready yet (our group not formed, or
	// we were just removed from it). They were never sent in clear.
	NoKeyDropped uint64
	// EncryptFailures counts our frames the frame encryptor refused for
	// any other reason; they were dropped too.
	EncryptFailures uint64
	// Epochs counts the MLS epochs our DAVE sessions entered (each
	// commit or welcome that changed the group's keys).
	Epochs uint64
}

// maxDAVEVersion is Identify's max_dave_protocol_version.
func (c *Conn) maxDAVEVersion() int {
	if c.opts.DisableDAVE {
		return 0
	}
	return dave.ProtocolVersion
}

// daveKind converts a media kind to package dave's.
func daveKind(k MediaKind) dave.MediaKind {
	switch k {
	case Audio:
		return dave.Audio
	case Video:
		return dave.Video
	}
	return 0
}

// newDAVESession replaces the DAVE session for a new voice session: a new
// voice session is a new MLS group membership (docs/dave.md, "Client
// rules"), while a resume keeps the session. Called by run (or Join).
func (c *Conn) newDAVESession() error {
	c.dropDAVESession()
	if c.opts.DisableDAVE {
		return nil
	}
	// The session adds user_id and channel_id to its own log records.
	// c.log already names the channel, which may change on a move.
	var log *slog.Logger
	if c.opts.Logger != nil {
		log = c.opts.Logger.With("guild_id", c.guildID)
	}
	s, err := dave.NewSession(dave.SessionOptions{UserID: c.opts.UserID, ChannelID: c.creds.channelID, Logger: log})
	if err != nil {
		return fmt.Errorf("voice: DAVE session for user %q in channel %q: %w", c.opts.UserID, c.creds.channelID, err)
	}
	c.davePtr.Store(s)
	return nil
}

// dropDAVESession ends the current DAVE session, keeping its counters.
func (c *Conn) dropDAVESession() {
	c.stats.mu.Lock()
	defer c.stats.mu.Unlock()
	old := c.davePtr.Swap(nil)
	if old == nil {
		return
	}
	if c.stats.daveTotals == nil {
		c.stats.daveTotals = make(map[string]dave.SenderStats)
	}
	for id, st := range old.Stats() {
		c.stats.daveTotals[id] = addSenderStats(c.stats.daveTotals[id], st)
	}
}

// startDAVE applies Session Description's dave_protocol_version and sends
// what the session answers (op 26 for version 1). The transport then
// encrypts with this session for its whole life.
func (c *Conn) startDAVE(g *gatewayConn, tr *transport, version int) error {
	s := c.davePtr.Load()
	if s == nil {
		if version > 0 {
			c.log.Warn("voice server runs DAVE though we identified without it", "dave_protocol_version", version)
		}
		return nil
	}
	outs, err := s.Start(version)
	if err != nil {
		return fmt.Errorf("voice: session description dave_protocol_version %d: %v: %w", version, err, ErrHandshake)
	}
	tr.dave = s
	c.sendDAVE(g, outs)
	return nil
}

// handleDAVEJSON passes a JSON DAVE op (11, 13, 21, 22, 24) to the session.
func (c *Conn) handleDAVEJSON(g *gatewayConn, m message) {
	s := c.davePtr.Load()
	if s == nil {
		c.log.Debug("ignoring DAVE message: DAVE is off", "op", int(m.Op))
		return
	}
	outs, err := s.HandleJSON(int(m.Op), m.D)
	c.afterDAVE(g, m.Op, outs, err)
}

// handleDAVEBinary passes a binary server message (ops 25, 27, 29, 30:
// `u16 seq | u8 op | payload`, the seq already counted for seq_ack) to
// the session.
func (c *Conn) handleDAVEBinary(g *gatewayConn, m message) {
	s := c.davePtr.Load()
	switch {
	case s == nil:
		c.log.Debug("ignoring binary voice gateway message: DAVE is off", "op", int(m.Op))
		return
	case m.Op != dave.OpMLSExternalSender && m.Op != dave.OpMLSProposals &&
		m.Op != dave.OpMLSAnnounceCommit && m.Op != dave.OpMLSWelcome:
		c.log.Debug("ignoring binary voice gateway message", "op", int(m.Op))
		return
	}
	outs, err := s.HandleBinary(int(m.Op), m.Binary)
	c.afterDAVE(g, m.Op, outs, err)
}

// afterDAVE reports a DAVE error, sends the session's answers and reports
// a new privacy code. An unreadable DAVE message is not fatal: the session
// recovers through op 31 or the server's next transition.
func (c *Conn) afterDAVE(g *gatewayConn, op Opcode, outs []dave.Outbound, err error) {
	if err != nil {
		err = fmt.Errorf("voice: DAVE op %d: %w", op, err)
		c.log.Warn("DAVE message failed", "op", int(op), "err", err)
		c.emit(Error{Err: err})
	}
	c.sendDAVE(g, outs)
	c.noteEpoch()
	c.notePrivacyCode()
}

// noteEpoch counts a new DAVE epoch of the current session. Called by
// run.
func (c *Conn) noteEpoch() {
	s := c.davePtr.Load()
	if s == nil {
		return
	}
	if e := s.Epoch(); e != 0 && (s != c.lastEpochSess || e != c.lastEpoch) {
		c.lastEpoch, c.lastEpochSess = e, s
		c.stats.mu.Lock()
		c.stats.epochs++
		c.stats.mu.Unlock()
	}
}

// sendDAVE sends the session's answers: JSON as {"op","d"}, binary as
// `u8 op | payload`.
func (c *Conn) sendDAVE(g *gatewayConn, outs []dave.Outbound) {
	if g == nil && len(outs) > 0 {
		c.log.Warn("no voice gateway to send DAVE messages on", "count", len(outs))
		return
	}
	for _, o := range outs {
		var err error
		if o.Binary != nil {
			err = g.sendBinary(o.Op, o.Binary)
		} else {
			err = g.send(Opcode(o.Op), o.JSON)
		}
		if err != nil {
			// The socket is failing; run sees it end and recovers.
			c.log.Warn("sending DAVE message failed", "op", o.Op, "err", err)
			return
		}
	}
}

// notePrivacyCode emits PrivacyCodeChanged when the code differs from the
// one last reported. Called by run (or Join).
func (c *Conn) notePrivacyCode() {
	if code := c.PrivacyCode(); code != c.lastCode {
		c.lastCode = code
		c.emit(PrivacyCodeChanged{Code: code})
	}
}

// PrivacyCode returns the voice privacy code (30 digits) of the DAVE
// epoch our media keys come from, to show people so they can compare it
// (DAVE whitepaper, "Displayable Codes"); "" when DAVE is off, not yet
// established, or between voice sessions.
func (c *Conn) PrivacyCode() string {
	if s := c.davePtr.Load(); s != nil {
		return s.PrivacyCode()
	}
	return ""
}

// DAVEVersion returns the DAVE protocol version in force for the media we
// send: 0 means no end-to-end encryption (DAVE off, the server runs
// version 0, or between voice sessions), 1 means every frame we send is
// end-to-end encrypted or dropped.
func (c *Conn) DAVEVersion() int {
	if s := c.davePtr.Load(); s != nil {
		return s.ProtocolVersion()
	}
	return 0
}

// VerificationCode returns the 45-digit code to compare with userID out
// of band to verify them (DAVE whitepaper, "Verification Fingerprint").
// It runs scrypt (tens of milliseconds). It fails with ErrNoDAVE while
// there is no DAVE session, and when userID is not in our group.
func (c *Conn) VerificationCode(userID string) (string, error) {
	s := c.davePtr.Load()
	if s == nil {
		return "", ErrNoDAVE
	}
	code, err := s.VerificationCode(userID)
	if err != nil {
		return "", fmt.Errorf("voice: verification code for %s: %w", userID, err)
	}
	return code, nil
}

// encryptFrame appends an outgoing codec frame to dst through the
// encryptor in force on t: Options.Encryptor, else t's DAVE session, else
// none (a copy). An error means: drop the frame.
func (c *Conn) encryptFrame(t *transport, dst []byte, kind MediaKind, frame []byte) ([]byte, error) {
	if enc := c.opts.Encryptor; enc != nil {
		return enc.EncryptFrame(dst, kind, frame)
	}
	if t.dave != nil {
		return t.dave.EncryptFrame(dst, daveKind(kind), frame)
	}
	return append(dst, frame...), nil
}

// dropUnencrypted counts a frame dropped because it could not be
// encrypted; it is never sent in clear.
func (c *Conn) dropUnencrypted(kind MediaKind, err error) {
	noKey := errors.Is(err, dave.ErrNoKey)
	c.stats.add(func(s *connStats) {
		if noKey {
			s.noKey++
		} else {
			s.encFail++
		}
	})
	c.log.Debug("dropping a frame that could not be encrypted", "kind", kind, "err", err)
}

// decryptFrame runs a received codec frame through Options.Decryptor,
// else the current DAVE session (per sender), else returns it as is.
func (c *Conn) decryptFrame(userID string, kind MediaKind, frame []byte) ([]byte, error) {
	if dec := c.opts.Decryptor; dec != nil {
		return dec.DecryptFrame(nil, userID, kind, frame)
	}
	if s := c.davePtr.Load(); s != nil {
		return s.DecryptFrame(nil, userID, daveKind(kind), frame)
	}
	return frame, nil
}

// daveStatsLocked snapshots the DAVE counters; the caller holds
// c.stats.mu.
func (c *Conn) daveStatsLocked() DAVEStats {
	s := &c.stats
	out := DAVEStats{NoKeyDropped: s.noKey, EncryptFailures: s.encFail, Epochs: s.epochs}
	cur := c.davePtr.Load()
	if len(s.daveTotals) == 0 && cur == nil {
		return out
	}
	out.Senders = make(map[string]dave.SenderStats, len(s.daveTotals))
	for id, st := range s.daveTotals {
		out.Senders[id] = st
	}
	if cur != nil {
		for id, st := range cur.Stats() {
			out.Senders[id] = addSenderStats(out.Senders[id], st)
		}
	}
	return out
}

// addSenderStats sums two sets of counters.
func addSenderStats(a, b dave.SenderStats) dave.SenderStats {
	return dave.SenderStats{
		Encrypted:          a.Encrypted + b.Encrypted,
		EncryptFailures:    a.EncryptFailures + b.EncryptFailures,
		Decrypted:          a.Decrypted + b.Decrypted,
		Passthrough:        a.Passthrough + b.Passthrough,
		Silence:            a.Silence + b.Silence,
		FailedNotEncrypted: a.FailedNotEncrypted + b.FailedNotEncrypted,
		FailedReplay:       a.FailedReplay + b.FailedReplay,
		FailedNoKey:        a.FailedNoKey + b.FailedNoKey,
		FailedAuth:         a.FailedAuth + b.FailedAuth,
	}
}
