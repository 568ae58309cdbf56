package dave

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/voicebridge/bridge/voice/mls"
)

// SessionOptions configure a Session.
type SessionOptions struct {
	// UserID is our Discord user id (decimal snowflake). Required.
	UserID string
	// ChannelID is the voice channel id (decimal snowflake); it is the MLS
	// group id. Required.
	ChannelID string
	// Logger receives protocol events; nil discards them.
	Logger *slog.Logger
	// Clock is the time source for key expiry; nil means time.Now.
	Clock func() time.Time
}

// Outbound is a message the voice client must send back on the voice
// gateway: JSON data for ops 23 and 31 ({"op": Op, "d": JSON}), or a binary
// payload for ops 26 and 28 (sent as one byte Op, then Binary).
type Outbound struct {
	Op     int
	JSON   any
	Binary []byte
}

// Session is one member's DAVE state for one voice connection: the MLS
// group (through voice/mls), protocol transitions (ops 21-24), and the
// media encryptor and per-sender decryptors keyed from the group (DAVE
// whitepaper, "Voice Gateway Opcodes" and "Protocol Version Changes";
// libdave's session manager behaviour as docs/dave.md describes it).
//
// All methods are safe for concurrent use: gateway handling, the sender and
// receivers may run on different goroutines. A media call holds the
// session lock for the duration of one frame's crypto (about a
// microsecond).
type Session struct {
	log       *slog.Logger
	now       func() time.Time
	userID    uint64
	userIDStr string

	mu  sync.Mutex
	mls *mlsSession
	// protocol is the protocol version in force for sending; target is the
	// version the server is moving to (op 21 or op 24), adopted when the
	// transition executes.
	protocol int
	target   int
	// pending is the transition awaiting op 22, if any.
	pending    *PrepareTransition
	downgraded bool
	// kpSent records that this init cycle already sent its key package.
	kpSent     bool
	recognized map[uint64]bool

	enc Encryptor
	// encAuth is the epoch authenticator of the epoch enc's ratchet came
	// from.
	encAuth []byte
	decs    map[uint64]*Decryptor
	// Receive passthrough policy applied to every decryptor, including
	// those created later.
	passForever bool
	passUntil   time.Time

	privacyCode string
	// notes are log records made under mu, written after unlocking so no
	// log I/O happens under the lock.
	notes []note
}

// note is a deferred log record.
type note struct {
	level slog.Level
	msg   string
	args  []any
}

// note queues a log record; unlockAndLog writes it.
func (s *Session) note(level slog.Level, msg string, args ...any) {
	s.notes = append(s.notes, note{level: level, msg: msg, args: args})
}

// unlockAndLog releases mu, then writes the queued log records.
func (s *Session) unlockAndLog() {
	notes := s.notes
	s.notes = nil
	s.mu.Unlock()
	for _, n := range notes {
		s.log.Log(context.Background(), n.level, n.msg, n.args...)
	}
}

// MaxEncryptedOverhead is the most bytes EncryptFrame adds to a frame: the
// tag, a 5-byte nonce, one range, the size byte and the marker.
const MaxEncryptedOverhead = TagSize + maxNonceLen + 2*maxLEB128Len + 1 + 2

// NewSession returns a session for one voice connection. It starts at
// protocol version 0 (no end-to-end encryption, receive passthrough on);
// call Start with the dave_protocol_version of the voice server's Session
// Description.
func NewSession(opts SessionOptions) (*Session, error) {
	uid, err := parseSnowflake("user id", opts.UserID)
	if err != nil {
		return nil, err
	}
	cid, err := parseSnowflake("channel id", opts.ChannelID)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Clock
	if now == nil {
		now = time.Now
	}
	log = log.With("user_id", opts.UserID, "channel_id", opts.ChannelID)
	ms, err := newMLSSession(uid, cid)
	if err != nil {
		return nil, err
	}
	return &Session{
		log:         log,
		now:         now,
		userID:      uid,
		userIDStr:   opts.UserID,
		mls:         ms,
		recognized:  make(map[uint64]bool),
		decs:        make(map[uint64]*Decryptor),
		passForever: true,
	}, nil
}

// Start sets the initial protocol version from the voice server's Session
// Description (op 4). For version 1 it initializes MLS and returns the key
// package (op 26) to send.
func (s *Session) Start(protocolVersion int) ([]Outbound, error) {
	s.mu.Lock()
	defer s.unlockAndLog()
	if protocolVersion < 0 || protocolVersion > ProtocolVersion {
		return nil, fmt.Errorf("%w: protocol version %d (this client speaks 0 to %d)", ErrBadArgument, protocolVersion, ProtocolVersion)
	}
	s.protocol, s.target = protocolVersion, protocolVersion
	if protocolVersion == 0 {
		s.setPassthrough(true, 0)
		return nil, nil
	}
	s.setPassthrough(false, 0)
	return s.reinit()
}

// ProtocolVersion returns the DAVE protocol version in force for sending:
// 0 means media goes out without end-to-end encryption.
func (s *Session) ProtocolVersion() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.protocol
}

// PrivacyCode returns the voice privacy code (30 digits) of the epoch whose
// keys are in use, or "" when there is none.
func (s *Session) PrivacyCode() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.privacyCode
}

// Epoch returns the MLS epoch of the established group, or 0 when there is
// none.
func (s *Session) Epoch() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mls.epoch()
}

// Members returns the user ids of the established group, or nil.
func (s *Session) Members() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for uid := range s.mls.roster() {
		out = append(out, strconv.FormatUint(uid, 10))
	}
	return out
}

// VerificationCode returns the 45-digit code to compare with userID out of
// band. It runs scrypt (tens of milliseconds) outside the session lock.
func (s *Session) VerificationCode(userID string) (string, error) {
	uid, err := parseSnowflake("user id", userID)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	theirs, ok := s.mls.roster()[uid]
	mine := s.mls.ownSignatureKey()
	s.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("%w: user %s is not in the group", ErrBadArgument, userID)
	}
	return VerificationCode(mine, s.userID, theirs, uid)
}

// Stats returns per-user media counters, keyed by user id; our own entry
// counts encrypted frames.
func (s *Session) Stats() map[string]SenderStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]SenderStats, len(s.decs)+1)
	out[s.userIDStr] = s.enc.Stats()
	for uid, d := range s.decs {
		out[strconv.FormatUint(uid, 10)] = d.Stats()
	}
	return out
}

// HandleJSON processes a DAVE-related JSON voice gateway message (ops 11,
// 13, 21, 22, 24) and returns what to send back. Other ops are an error.
func (s *Session) HandleJSON(op int, data json.RawMessage) ([]Outbound, error) {
	s.mu.Lock()
	defer s.unlockAndLog()
	switch op {
	case OpClientsConnect:
		var m ClientsConnect
		if err := decodeJSON(op, data, &m); err != nil {
			return nil, err
		}
		for _, id := range m.UserIDs {
			uid, err := parseSnowflake("op 11 user id", id)
			if err != nil {
				return nil, err
			}
			s.recognized[uid] = true
		}
		return nil, nil
	case OpClientDisconnect:
		var m ClientDisconnect
		if err := decodeJSON(op, data, &m); err != nil {
			return nil, err
		}
		uid, err := parseSnowflake("op 13 user id", m.UserID)
		if err != nil {
			return nil, err
		}
		delete(s.recognized, uid)
		return nil, nil
	case OpPrepareTransition:
		var m PrepareTransition
		if err := decodeJSON(op, data, &m); err != nil {
			return nil, err
		}
		return s.prepareTransition(m)
	case OpExecuteTransition:
		var m ExecuteTransition
		if err := decodeJSON(op, data, &m); err != nil {
			return nil, err
		}
		s.executeTransition(m.TransitionID)
		return nil, nil
	case OpPrepareEpoch:
		var m PrepareEpoch
		if err := decodeJSON(op, data, &m); err != nil {
			return nil, err
		}
		return s.prepareEpoch(m)
	}
	return nil, fmt.Errorf("%w: op %d is not a DAVE JSON op", ErrBadMessage, op)
}

// HandleBinary processes a binary DAVE message (ops 25, 27, 29, 30);
// payload is what follows the sequence number and opcode. Unprocessable
// commits and welcomes are answered with op 31 and a fresh key package
// rather than an error; errors report messages that could not be read.
func (s *Session) HandleBinary(op int, payload []byte) ([]Outbound, error) {
	s.mu.Lock()
	defer s.unlockAndLog()
	switch op {
	case OpMLSExternalSender:
		return s.externalSender(payload)
	case OpMLSProposals:
		return s.proposals(payload)
	case OpMLSAnnounceCommit:
		tid, commit, err := splitTransition(op, payload)
		if err != nil {
			return nil, err
		}
		return s.commit(tid, commit)
	case OpMLSWelcome:
		tid, welcome, err := splitTransition(op, payload)
		if err != nil {
			return nil, err
		}
		return s.welcome(tid, welcome)
	}
	return nil, fmt.Errorf("%w: op %d is not a DAVE binary op", ErrBadMessage, op)
}

// EncryptFrame appends the frame to send for our own media of kind to dst.
// At protocol 0 the frame is appended unchanged. While a DAVE protocol is
// in force it is encrypted, and when no key is available yet it returns an
// error wrapping ErrNoKey instead of ever sending plaintext: drop the frame.
func (s *Session) EncryptFrame(dst []byte, kind MediaKind, frame []byte) ([]byte, error) {
	codec := kind.Codec()
	if codec == 0 {
		return dst, fmt.Errorf("%w: media kind %d", ErrUnknownCodec, kind)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.protocol == 0 {
		return append(dst, frame...), nil
	}
	return s.enc.Encrypt(dst, codec, frame)
}

// DecryptFrame appends the plaintext of a frame from userID to dst. Frames
// of senders we hold no keys for pass only while passthrough is allowed.
func (s *Session) DecryptFrame(dst []byte, userID string, kind MediaKind, frame []byte) ([]byte, error) {
	uid, err := parseSnowflake("user id", userID)
	if err != nil {
		return dst, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.decryptor(uid).Decrypt(dst, kind, frame)
}

// decryptor returns (creating if needed) the decryptor of uid, under the
// session's passthrough policy.
func (s *Session) decryptor(uid uint64) *Decryptor {
	d, ok := s.decs[uid]
	if !ok {
		d = NewDecryptor(s.now)
		s.applyPassthrough(d)
		s.decs[uid] = d
	}
	return d
}

// setPassthrough changes the receive passthrough policy: allowed forever,
// or allowed for at most expiry more.
func (s *Session) setPassthrough(allowed bool, expiry time.Duration) {
	if allowed {
		s.passForever = true
	} else {
		until := s.now().Add(expiry)
		if s.passForever || until.Before(s.passUntil) {
			s.passUntil = until
		}
		s.passForever = false
	}
	for _, d := range s.decs {
		d.TransitionToPassthrough(allowed, expiry)
	}
}

func (s *Session) applyPassthrough(d *Decryptor) {
	if s.passForever {
		d.TransitionToPassthrough(true, 0)
		return
	}
	d.TransitionToPassthrough(false, s.passUntil.Sub(s.now()))
}

// reinit resets MLS and returns a fresh key package (op 26).
func (s *Session) reinit() ([]Outbound, error) {
	s.mls.reset()
	s.kpSent = false
	return s.keyPackage()
}

func (s *Session) keyPackage() ([]Outbound, error) {
	kp, err := s.mls.keyPackage()
	if err != nil {
		return nil, err
	}
	s.kpSent = true
	return []Outbound{{Op: OpMLSKeyPackage, Binary: kp}}, nil
}

// externalSender handles op 25: remember the voice server's MLS identity
// and create our pending one-member group.
func (s *Session) externalSender(payload []byte) ([]Outbound, error) {
	if err := s.mls.setExternalSender(payload); err != nil {
		return nil, err
	}
	if s.target == 0 || s.kpSent {
		return nil, nil
	}
	return s.keyPackage()
}

// proposals handles op 27 and returns op 28 when there is something to
// commit. Unprocessable proposals trigger recovery like a bad commit.
func (s *Session) proposals(payload []byte) ([]Outbound, error) {
	out, err := s.mls.processProposals(payload, s.recognized)
	switch {
	case errors.Is(err, errIgnored):
		s.note(slog.LevelDebug, "dave: proposals ignored", "reason", err)
		return nil, nil
	case err != nil:
		s.note(slog.LevelWarn, "dave: proposals rejected", "err", err)
		return nil, err
	case out == nil:
		return nil, nil
	}
	return []Outbound{{Op: OpMLSCommitWelcome, Binary: out}}, nil
}

// commit handles op 29.
func (s *Session) commit(tid uint16, commit []byte) ([]Outbound, error) {
	err := s.mls.processCommit(commit)
	if errors.Is(err, errIgnored) {
		s.note(slog.LevelDebug, "dave: commit ignored", "transition", tid, "reason", err)
		return nil, nil
	}
	if errors.Is(err, mls.ErrRemoved) {
		return s.removed(tid)
	}
	if err != nil {
		return s.recover(tid, err)
	}
	return s.groupChanged(tid)
}

// removed handles a valid commit that removed us: our keys stop (the
// sender has nothing to send with until we are added again), received
// keys expire as after any epoch change, and a fresh key package lets the
// voice server add us back.
func (s *Session) removed(tid uint16) ([]Outbound, error) {
	s.note(slog.LevelInfo, "dave: removed from the group", "transition", tid, "epoch", s.mls.epoch())
	s.enc.SetRatchet(nil)
	s.privacyCode = ""
	for _, d := range s.decs {
		d.TransitionToRatchet(nil, TransitionExpiry)
	}
	return s.reinit()
}

// welcome handles op 30.
func (s *Session) welcome(tid uint16, welcome []byte) ([]Outbound, error) {
	if err := s.mls.processWelcome(welcome); err != nil {
		return s.recover(tid, err)
	}
	return s.groupChanged(tid)
}

// recover answers an unprocessable commit or welcome: op 31, then a fresh
// key package after resetting MLS.
func (s *Session) recover(tid uint16, cause error) ([]Outbound, error) {
	s.note(slog.LevelWarn, "dave: invalid commit or welcome; recovering", "transition", tid, "err", cause)
	kp, err := s.reinit()
	if err != nil {
		return nil, err
	}
	out := []Outbound{{Op: OpMLSInvalidCommitWelcome, JSON: TransitionReady{TransitionID: tid}}}
	return append(out, kp...), nil
}

// groupChanged prepares the decryptors for the new epoch and either
// executes at once (transition 0) or reports readiness (op 23).
func (s *Session) groupChanged(tid uint16) ([]Outbound, error) {
	if err := s.prepareDecryptors(); err != nil {
		return nil, err
	}
	s.note(slog.LevelInfo, "dave: group epoch ready", "epoch", s.mls.epoch(), "transition", tid, "members", len(s.mls.roster()))
	if tid == initTransitionID {
		s.pending = &PrepareTransition{TransitionID: tid, ProtocolVersion: s.target}
		s.executeTransition(tid)
		return nil, nil
	}
	s.pending = &PrepareTransition{TransitionID: tid, ProtocolVersion: s.target}
	return []Outbound{{Op: OpReadyForTransition, JSON: TransitionReady{TransitionID: tid}}}, nil
}

// prepareDecryptors gives every other member's decryptor the new epoch's
// ratchet (previous ones stay for TransitionExpiry) and retires members who
// left.
func (s *Session) prepareDecryptors() error {
	roster := s.mls.roster()
	for uid := range roster {
		if uid == s.userID {
			continue
		}
		r, err := s.mls.ratchet(uid)
		if err != nil {
			return err
		}
		s.decryptor(uid).TransitionToRatchet(r, TransitionExpiry)
	}
	for uid, d := range s.decs {
		if _, ok := roster[uid]; !ok {
			d.TransitionToRatchet(nil, TransitionExpiry)
		}
	}
	return nil
}

// prepareTransition handles op 21.
func (s *Session) prepareTransition(m PrepareTransition) ([]Outbound, error) {
	if m.ProtocolVersion < 0 || m.ProtocolVersion > ProtocolVersion {
		return nil, fmt.Errorf("%w: op 21 protocol version %d", ErrBadMessage, m.ProtocolVersion)
	}
	s.pending = &m
	s.target = m.ProtocolVersion
	if m.TransitionID == initTransitionID {
		s.executeTransition(m.TransitionID)
		return nil, nil
	}
	if m.ProtocolVersion == 0 {
		// Downgrade: accept plaintext from members already switched.
		s.setPassthrough(true, 0)
	}
	return []Outbound{{Op: OpReadyForTransition, JSON: TransitionReady{TransitionID: m.TransitionID}}}, nil
}

// executeTransition handles op 22 (and transitions executed at once).
func (s *Session) executeTransition(tid uint16) {
	if s.pending == nil || s.pending.TransitionID != tid {
		s.note(slog.LevelDebug, "dave: execute for unknown transition ignored", "transition", tid)
		return
	}
	old := s.protocol
	s.protocol = s.pending.ProtocolVersion
	s.pending = nil
	if s.protocol == 0 {
		if old != 0 {
			s.downgraded = true
		}
		// The encryptor keeps its ratchet and counter (unused at protocol
		// 0), so returning to the same epoch can never reuse a nonce.
		s.privacyCode = ""
		s.setPassthrough(true, 0)
		s.note(slog.LevelInfo, "dave: transition executed", "transition", tid, "from", old, "to", 0)
		return
	}
	if s.downgraded || old == 0 {
		// Upgrade: members still switching may send plaintext for a while.
		s.downgraded = false
		s.setPassthrough(false, TransitionExpiry)
	}
	if s.mls.established() {
		// A new ratchet restarts the nonce counter, so only a new epoch
		// (told apart by its authenticator, as epoch numbers restart with
		// each new group) may install one; a transition that keeps the
		// epoch keeps the running counter.
		auth := s.mls.epochAuthenticator()
		if !bytes.Equal(auth, s.encAuth) {
			r, err := s.mls.ratchet(s.userID)
			if err != nil {
				s.note(slog.LevelError, "dave: own key ratchet", "err", err)
				s.enc.SetRatchet(nil)
			} else {
				s.enc.SetRatchet(r)
			}
			s.encAuth = auth
		}
		s.privacyCode, _ = VoicePrivacyCode(auth)
	}
	s.note(slog.LevelInfo, "dave: transition executed", "transition", tid, "from", old, "to", s.protocol, "epoch", s.mls.epoch())
}

// prepareEpoch handles op 24.
func (s *Session) prepareEpoch(m PrepareEpoch) ([]Outbound, error) {
	if m.ProtocolVersion < 0 || m.ProtocolVersion > ProtocolVersion {
		return nil, fmt.Errorf("%w: op 24 protocol version %d", ErrBadMessage, m.ProtocolVersion)
	}
	s.target = m.ProtocolVersion
	if m.Epoch != 1 {
		// A version change on the existing group: nothing to rebuild.
		return nil, nil
	}
	if m.ProtocolVersion == 0 {
		s.mls.reset()
		return nil, nil
	}
	return s.reinit()
}
