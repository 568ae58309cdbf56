package voiceemu

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voicebridge/bridge/voice/dave"
)

// Server-side DAVE: the voice server as MLS delivery service and external
// sender of each channel's group (DAVE whitepaper, "Delivery Service",
// "Proposal Handling", "Commit Handling", "Protocol Version Changes";
// docs/dave.md, "The voice server as external sender").
//
// Each channel with participants has a call. A client becomes a
// participant when the server answers its Select Protocol, a simulated
// member when it is added. All DAVE events of a channel run under the
// call's lock, in order. Simulated members are fed the server's messages
// in process and their answers (ops 23, 26, 28, 31) are queued and handled
// after the event that caused them, as a client's would arrive later on
// its websocket.

// Voice gateway DAVE opcodes (Discord docs, "Voice Opcodes"; DAVE
// whitepaper, "Voice Gateway Opcodes").
const (
	opPrepareTransition  = 21
	opExecuteTransition  = 22
	opReadyForTransition = 23
	opPrepareEpoch       = 24
	opExternalSender     = 25
	opKeyPackage         = 26
	opProposals          = 27
	opCommitWelcome      = 28
	opAnnounceCommit     = 29
	opWelcome            = 30
	opInvalidCommit      = 31
)

// upgradeGrace is how long after the execute (op 22) of an upgrade a
// participant's plaintext Opus is not yet counted as a leak: the op 22 is
// still on its way to the client, which sends plaintext until it arrives.
const upgradeGrace = time.Second

// e2eeGuard says from when a participant's Opus must be DAVE frames.
type e2eeGuard struct {
	from atomic.Int64 // unix nanoseconds; 0: plaintext is allowed
}

// bind requires DAVE frames from t on.
func (g *e2eeGuard) bind(t time.Time) { g.from.Store(t.UnixNano()) }

// release allows plaintext again (protocol version 0).
func (g *e2eeGuard) release() { g.from.Store(0) }

// leaks reports whether payload, an Opus frame the participant sent at
// now, is one the relay could read though it must be end-to-end
// encrypted.
func (g *e2eeGuard) leaks(now time.Time, payload []byte) bool {
	from := g.from.Load()
	return from != 0 && now.UnixNano() >= from && !isDAVEFrame(payload) && !isSilence(payload)
}

// call is the DAVE state of one voice channel.
type call struct {
	srv                *Server
	key                string
	guildID, channelID string

	mu         sync.Mutex
	dead       bool // removed from srv.calls; a new call takes over
	xs         *dave.ExternalSender
	vet        *dave.ExternalSender // validates key packages that must wait
	protocol   int                  // DAVE protocol version the channel runs (or moves to)
	parts      map[string]*participant
	order      []*participant // join order, for deterministic fan-out
	props      []*sentProposal
	trans      *transition
	lastTID    uint16
	work       []work
	notes      []note
	executed   int
	refused    int
	committers []string
}

// note is a log record made under the call's lock and written after it
// is released.
type note struct {
	level slog.Level
	msg   string
	args  []any
}

func (c *call) note(level slog.Level, msg string, args ...any) {
	c.notes = append(c.notes, note{level: level, msg: msg, args: append([]any{"channel_id", c.channelID}, args...)})
}

// participant is a client session or a simulated member in a call.
type participant struct {
	userID string
	dave   bool     // speaks DAVE
	ss     *session // a client, or
	m      *Member  // a simulated member
	e2ee   *e2eeGuard
	bound  bool   // e2ee is bound (or scheduled to be)
	kp     []byte // key package waiting for its Add
}

// sentProposal is a proposal of the current epoch, not yet committed, and
// who received it.
type sentProposal struct {
	dave.Proposal
	add bool
	to  map[string]bool
}

// transition is a DAVE transition waiting for op 23 from its members.
type transition struct {
	id       uint16
	protocol int
	to       []string // participants that get op 22
	waiting  map[string]bool
	deadline time.Time
}

// work is a message a simulated member sends back, handled after the
// event that caused it.
type work struct {
	from    *participant
	op      int
	payload []byte
}

// DAVEInfo is the voice server's view of a channel's DAVE group: what a
// delivery service knows, never group secrets.
type DAVEInfo struct {
	// Protocol is the DAVE protocol version the channel runs or is moving
	// to: 1, or 0 while a client without DAVE is in it.
	Protocol int
	// Epoch is the group's MLS epoch; 0 while no group is established.
	Epoch uint64
	// Members lists the user ids in the group, sorted.
	Members []string
	// Transitions counts the transitions executed (op 22 sent).
	Transitions int
	// CommitsRefused counts op 28 messages that were not accepted: losers
	// of a commit race, commits for an old epoch, and invalid ones.
	CommitsRefused int
	// Committers lists, per accepted commit in order, the user id of the
	// member whose commit the server accepted and announced.
	Committers []string
}

// DAVE returns the server's view of a channel's DAVE group, if the channel
// has participants.
func (s *Server) DAVE(guildID, channelID string) (DAVEInfo, bool) {
	var info DAVEInfo
	found := false
	s.withCall(guildID, channelID, false, func(c *call) {
		found = true
		info = DAVEInfo{Protocol: c.protocol, Epoch: c.xs.Epoch(), Transitions: c.executed, CommitsRefused: c.refused,
			Committers: slices.Clone(c.committers)}
		for uid := range c.xs.Members() {
			info.Members = append(info.Members, uid)
		}
		slices.Sort(info.Members)
	})
	return info, found
}

// withCall runs f on a channel's call under its lock, creating the call if
// asked, then handles what simulated members answered. A call left with no
// participants is removed.
func (s *Server) withCall(guildID, channelID string, create bool, f func(c *call)) error {
	key := guildID + "/" + channelID
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		c := s.calls[key]
		if c == nil && create {
			xs, err := dave.NewExternalSender(channelID)
			if err != nil {
				s.mu.Unlock()
				return fmt.Errorf("voiceemu: DAVE external sender for channel %s: %w", channelID, err)
			}
			vet, err := dave.NewExternalSender(channelID)
			if err != nil {
				s.mu.Unlock()
				return fmt.Errorf("voiceemu: DAVE external sender for channel %s: %w", channelID, err)
			}
			c = &call{srv: s, key: key, guildID: guildID, channelID: channelID, xs: xs, vet: vet, parts: map[string]*participant{}}
			s.calls[key] = c
		}
		s.mu.Unlock()
		if c == nil {
			return nil
		}
		c.mu.Lock()
		if c.dead {
			c.mu.Unlock()
			continue
		}
		f(c)
		c.drain()
		if len(c.parts) == 0 {
			c.dead = true
			s.mu.Lock()
			if s.calls[key] == c {
				delete(s.calls, key)
			}
			s.mu.Unlock()
		}
		notes := c.notes
		c.notes = nil
		c.mu.Unlock()
		for _, n := range notes {
			s.log.Log(context.Background(), n.level, n.msg, n.args...)
		}
		return nil
	}
}

// joinCall makes a client (at Select Protocol) or a simulated member a
// participant of its channel's call. For a client, describe is called
// under the call's lock, before any DAVE message, with the protocol version
// to put in Session Description; a member's DAVE session is started with
// it instead (describe is nil).
func (s *Server) joinCall(guildID, channelID string, p *participant, describe func(protocol int)) error {
	return s.withCall(guildID, channelID, true, func(c *call) { c.join(p, describe) })
}

// leaveCall removes a participant (matched by its session or member) from
// its channel's call.
func (s *Server) leaveCall(guildID, channelID, userID string, ss *session, m *Member) {
	_ = s.withCall(guildID, channelID, false, func(c *call) {
		p := c.parts[userID]
		if p == nil || p.ss != ss || p.m != m {
			return
		}
		c.leave(p)
	})
}

// expireTransitions executes the transitions whose members did not all
// answer op 23 in time.
func (s *Server) expireTransitions(now time.Time) {
	s.mu.Lock()
	calls := make([]*call, 0, len(s.calls))
	for _, c := range s.calls {
		calls = append(calls, c)
	}
	s.mu.Unlock()
	for _, c := range calls {
		_ = s.withCall(c.guildID, c.channelID, false, func(c *call) {
			if c.trans != nil && !now.Before(c.trans.deadline) {
				c.note(slog.LevelInfo, "DAVE transition timed out", "transition", c.trans.id, "waiting", len(c.trans.waiting))
				c.execute()
			}
		})
	}
}

// ---- sending to participants ----

// sendJSON sends a JSON op to a participant: on a client's websocket, or
// into a simulated member's DAVE session.
func (c *call) sendJSON(p *participant, op int, d any) {
	if p.ss != nil {
		p.ss.sendJSON(op, d)
		return
	}
	raw, err := json.Marshal(d)
	if err != nil {
		return // payloads are built here from plain maps
	}
	out, err := p.m.dave.HandleJSON(op, raw)
	c.queue(p, op, out, err)
}

// sendBinary sends a binary op to a participant.
func (c *call) sendBinary(p *participant, op int, payload []byte) {
	if p.ss != nil {
		p.ss.sendBinary(byte(op), payload)
		return
	}
	out, err := p.m.dave.HandleBinary(op, payload)
	c.queue(p, op, out, err)
}

// queue keeps a simulated member's answers for drain, in the form a
// client would send them.
func (c *call) queue(p *participant, op int, out []dave.Outbound, err error) {
	if err != nil {
		c.note(slog.LevelWarn, "simulated member refused a DAVE message", "user_id", p.userID, "op", op, "err", err)
	}
	for _, o := range out {
		payload := o.Binary
		if o.JSON != nil {
			raw, err := json.Marshal(o.JSON)
			if err != nil {
				continue
			}
			payload = raw
		}
		c.work = append(c.work, work{from: p, op: o.Op, payload: payload})
	}
}

// drain handles the simulated members' answers, and theirs in turn, then
// lets members waiting to send know they can.
func (c *call) drain() {
	for len(c.work) > 0 {
		w := c.work[0]
		c.work = c.work[1:]
		if c.parts[w.from.userID] == w.from {
			c.handle(w.from, w.op, w.payload)
		}
	}
	alone := len(c.daveParticipants()) <= 1
	for _, p := range c.order {
		if p.m != nil && (c.protocol == 0 || alone || p.m.dave.PrivacyCode() != "") {
			p.m.markReady()
		}
	}
}

// ---- membership ----

func (c *call) daveParticipants() []*participant {
	var out []*participant
	for _, p := range c.order {
		if p.dave {
			out = append(out, p)
		}
	}
	return out
}

func (c *call) hasNonDAVE() bool {
	return slices.ContainsFunc(c.order, func(p *participant) bool { return !p.dave })
}

// join adds p to the call: a client without DAVE downgrades a DAVE
// channel; a DAVE participant of a DAVE channel gets the external sender
// (op 25) right after its protocol version.
func (c *call) join(p *participant, describe func(int)) {
	if old := c.parts[p.userID]; old != nil {
		if old.ss == p.ss && old.m == p.m {
			// Select Protocol again: the same participant, told again.
			c.describe(old, describe)
			return
		}
		c.leave(old)
	}
	enabled := !c.srv.opts.DisableDAVE
	switch {
	case len(c.order) == 0:
		c.protocol = 0
		if enabled && p.dave {
			c.protocol = 1
		}
	case !p.dave && c.protocol == 1:
		c.downgrade()
	}
	for _, q := range c.order {
		if q.m != nil {
			c.sendJSON(q, opClientsConnect, map[string]any{"user_ids": []string{p.userID}})
		}
	}
	if p.m != nil && len(c.order) > 0 {
		ids := make([]string, 0, len(c.order))
		for _, q := range c.order {
			ids = append(ids, q.userID)
		}
		c.sendJSON(p, opClientsConnect, map[string]any{"user_ids": ids})
	}
	c.parts[p.userID] = p
	c.order = append(c.order, p)
	c.describe(p, describe)
}

// describe tells p the protocol version and, at version 1, the external
// sender. A participant that starts at version 1 must never send
// plaintext.
func (c *call) describe(p *participant, describe func(int)) {
	protocol := 0
	if p.dave {
		protocol = c.protocol
	}
	if p.m != nil {
		out, err := p.m.dave.Start(protocol)
		c.queue(p, opSessionDescription, out, err)
	} else {
		describe(protocol)
	}
	if protocol == 1 {
		p.bound = true
		p.e2ee.bind(time.Now())
		c.sendBinary(p, opExternalSender, c.xs.Marshal())
	}
}

// leave removes p: the others hear op 13 (simulated members here; clients
// from announceLeave), its proposals are revoked, and the group either
// removes it, is reset when one member is left alone in it (the
// whitepaper's "Sole member reset") or recreated when no connected member
// is left in it, or upgrades back to DAVE when p was the last client
// without it.
func (c *call) leave(p *participant) {
	delete(c.parts, p.userID)
	c.order = slices.DeleteFunc(c.order, func(q *participant) bool { return q == p })
	for _, q := range c.order {
		if q.m != nil {
			c.sendJSON(q, opClientDisconnect, map[string]any{"user_id": p.userID})
		}
	}
	if t := c.trans; t != nil {
		delete(t.waiting, p.userID)
		t.to = slices.DeleteFunc(t.to, func(u string) bool { return u == p.userID })
	}
	switch {
	case !p.dave:
		if c.protocol == 0 && !c.hasNonDAVE() && !c.srv.opts.DisableDAVE && len(c.daveParticipants()) > 0 {
			c.upgrade()
		}
	case c.protocol == 1:
		if sp := c.pendingProposal(p.userID, true); sp != nil {
			c.revoke(sp)
		}
		parts := c.daveParticipants()
		members := c.xs.Members()
		_, inGroup := members[p.userID]
		connected := 0
		for uid := range members {
			if c.parts[uid] != nil {
				connected++
			}
		}
		switch {
		case len(parts) == 0:
		case c.xs.Epoch() > 0 && (len(parts) == 1 || connected == 0):
			c.recreate(parts)
		case inGroup:
			c.proposeRemove(p.userID)
		}
	}
	c.maybeExecute()
}

// ---- protocol version changes ----

// downgrade moves a DAVE channel to protocol version 0 because a client
// without DAVE joins: op 21 (version 0) to the DAVE participants, op 22
// when they are ready (whitepaper, "Downgrade to Transport-Only
// Encryption"). The group is dropped; an upgrade creates a new one.
func (c *call) downgrade() {
	c.protocol = 0
	c.resetGroup()
	parts := c.daveParticipants()
	tid := c.nextTransitionID()
	to := make([]string, 0, len(parts))
	for _, q := range parts {
		q.bound = false
		q.e2ee.release()
		c.sendJSON(q, opPrepareTransition, map[string]any{"transition_id": tid, "protocol_version": 0})
		to = append(to, q.userID)
	}
	c.note(slog.LevelInfo, "DAVE downgrade", "transition", tid)
	c.startTransition(tid, 0, to)
}

// upgrade moves the channel back to protocol version 1 once its last
// client without DAVE has left: op 25 and op 24 (version 1, epoch 1) to
// every participant, who answer with key packages; the group is created
// as at first, and its first commit's transition switches them to DAVE
// (whitepaper, "Upgrade from Transport-Only Encryption"). A participant
// alone is told to execute at once (op 21, transition 0).
func (c *call) upgrade() {
	c.protocol = 1
	c.resetGroup()
	parts := c.daveParticipants()
	for _, q := range parts {
		c.sendBinary(q, opExternalSender, c.xs.Marshal())
		c.sendJSON(q, opPrepareEpoch, map[string]any{"protocol_version": 1, "epoch": 1})
	}
	if len(parts) == 1 {
		c.executeAtOnce(parts[0])
	}
	c.note(slog.LevelInfo, "DAVE upgrade", "participants", len(parts))
}

// recreate starts a new group: op 24 (epoch 1) to every DAVE participant,
// and for a participant alone op 21 with transition 0 too (whitepaper,
// "Sole member reset").
func (c *call) recreate(parts []*participant) {
	c.resetGroup()
	for _, q := range parts {
		c.sendJSON(q, opPrepareEpoch, map[string]any{"protocol_version": 1, "epoch": 1})
	}
	if len(parts) == 1 {
		c.executeAtOnce(parts[0])
	}
	c.note(slog.LevelInfo, "DAVE group reset", "participants", len(parts))
}

// executeAtOnce sends op 21 with transition 0 (execute now) for version 1.
func (c *call) executeAtOnce(p *participant) {
	c.sendJSON(p, opPrepareTransition, map[string]any{"transition_id": 0, "protocol_version": 1})
	c.bind(p, time.Now().Add(upgradeGrace))
}

// bind starts counting p's plaintext Opus from t on, unless it is bound.
func (c *call) bind(p *participant, t time.Time) {
	if !p.bound {
		p.bound = true
		p.e2ee.bind(t)
	}
}

// resetGroup forgets the group, its proposals and the transition in
// progress; key packages sent for the old group are stale.
func (c *call) resetGroup() {
	c.xs.Reset()
	c.props = nil
	c.trans = nil
	for _, q := range c.order {
		q.kp = nil
	}
}

// ---- client messages ----

// handle takes one DAVE message from a participant.
func (c *call) handle(p *participant, op int, payload []byte) {
	switch op {
	case opKeyPackage:
		c.keyPackage(p, payload)
	case opCommitWelcome:
		c.commit(p, payload)
	case opReadyForTransition, opInvalidCommit:
		var m struct {
			TransitionID *uint16 `json:"transition_id"`
		}
		if err := json.Unmarshal(payload, &m); err != nil || m.TransitionID == nil {
			c.note(slog.LevelInfo, "DAVE op without a transition id ignored", "user_id", p.userID, "op", op, "data", string(payload))
			return
		}
		if op == opReadyForTransition {
			c.ready(p, *m.TransitionID)
		} else {
			c.invalid(p, *m.TransitionID)
		}
	default:
		c.note(slog.LevelDebug, "DAVE op ignored", "user_id", p.userID, "op", op)
	}
}

// keyPackage takes op 26: validated (signature, basic credential equal to
// the participant's user id, lifetime) and proposed as an Add.
func (c *call) keyPackage(p *participant, kp []byte) {
	if c.protocol != 1 || !p.dave {
		c.note(slog.LevelDebug, "key package outside DAVE ignored", "user_id", p.userID)
		return
	}
	if _, in := c.xs.Members()[p.userID]; in {
		// It flagged an invalid commit or welcome and its Remove is not
		// committed yet: vet the key package now, propose it later. A
		// group-less sender validates it (signature, credential = the
		// session's user id, lifetime) without keeping anything.
		_, err := c.vet.ProposeAdd(p.userID, kp)
		c.vet.Reset()
		if err != nil {
			c.refuseKeyPackage(p, err)
			return
		}
	}
	p.kp = kp
	c.tryAdd(p)
}

// refuseKeyPackage drops a key package that failed validation.
func (c *call) refuseKeyPackage(p *participant, err error) {
	c.note(slog.LevelWarn, "DAVE key package refused", "user_id", p.userID, "err", err)
	if p.ss != nil {
		p.ss.counters.kpRefused.Add(1)
	}
}

// tryAdd proposes adding p with its key package. While p is still in the
// group (it flagged an invalid commit or welcome and its Remove is not
// committed yet) the Add waits for the next commit. During group creation
// (epoch 0) the Add goes to the other pending members and p gets theirs;
// afterwards it goes to the group's members.
func (c *call) tryAdd(p *participant) {
	if p.kp == nil {
		return
	}
	if _, in := c.xs.Members()[p.userID]; in {
		return
	}
	if old := c.pendingProposal(p.userID, true); old != nil {
		c.revoke(old) // a pending member replaces its key package
	}
	prop, err := c.xs.ProposeAdd(p.userID, p.kp)
	p.kp = nil
	if err != nil {
		c.refuseKeyPackage(p, err)
		return
	}
	sp := &sentProposal{Proposal: prop, add: true, to: map[string]bool{}}
	if c.xs.Epoch() == 0 {
		var others []*sentProposal
		for _, q := range c.props {
			if r := c.parts[q.UserID]; q.add && r != nil {
				c.sendProposals(r, sp)
				others = append(others, q)
			}
		}
		if len(others) > 0 {
			c.sendProposals(p, others...)
		}
	} else {
		for _, r := range c.groupParticipants(p.userID) {
			c.sendProposals(r, sp)
		}
	}
	c.props = append(c.props, sp)
}

// proposeRemove proposes removing a member from the group, once.
func (c *call) proposeRemove(userID string) {
	if c.pendingProposal(userID, false) != nil {
		return
	}
	prop, err := c.xs.ProposeRemove(userID)
	if err != nil {
		c.note(slog.LevelWarn, "DAVE remove proposal", "user_id", userID, "err", err)
		return
	}
	sp := &sentProposal{Proposal: prop, to: map[string]bool{}}
	for _, r := range c.groupParticipants(userID) {
		c.sendProposals(r, sp)
	}
	c.props = append(c.props, sp)
}

// groupParticipants lists the connected members of the group, in join
// order, except one user.
func (c *call) groupParticipants(except string) []*participant {
	members := c.xs.Members()
	var out []*participant
	for _, q := range c.order {
		if _, in := members[q.userID]; in && q.userID != except {
			out = append(out, q)
		}
	}
	return out
}

func (c *call) pendingProposal(userID string, add bool) *sentProposal {
	for _, sp := range c.props {
		if sp.UserID == userID && sp.add == add {
			return sp
		}
	}
	return nil
}

// sendProposals sends an op 27 append and notes who got what.
func (c *call) sendProposals(to *participant, props ...*sentProposal) {
	ps := make([]dave.Proposal, len(props))
	for i, sp := range props {
		ps[i] = sp.Proposal
		sp.to[to.userID] = true
	}
	c.sendBinary(to, opProposals, dave.AppendProposalsPayload(ps...))
}

// revoke withdraws an uncommitted proposal from those who got it (op 27
// revoke).
func (c *call) revoke(sp *sentProposal) {
	if err := c.xs.Revoke(sp.Ref); err != nil {
		c.note(slog.LevelWarn, "DAVE revoke", "user_id", sp.UserID, "err", err)
	}
	c.props = slices.DeleteFunc(c.props, func(q *sentProposal) bool { return q == sp })
	for _, q := range c.order {
		if sp.to[q.userID] {
			c.sendBinary(q, opProposals, dave.RevokeProposalsPayload(sp.Ref))
		}
	}
}

// commit takes op 28. The first valid commit of the epoch wins
// (whitepaper, "Commit Ordering"): the group's members get op 29, the
// members it adds op 30 with their Welcome, all under a new transition id.
// Others are ignored.
func (c *call) commit(p *participant, payload []byte) {
	if c.protocol != 1 {
		return
	}
	acc, err := c.xs.AcceptCommit(p.userID, payload)
	if err != nil {
		c.refused++
		c.note(slog.LevelDebug, "DAVE commit not accepted", "user_id", p.userID, "err", err)
		return
	}
	c.committers = append(c.committers, p.userID)
	tid := c.nextTransitionID()
	members := c.xs.Members()
	c.props = nil
	var to []string
	for _, q := range c.order {
		_, in := members[q.userID]
		switch {
		case slices.Contains(acc.Added, q.userID):
			welcome := acc.Welcomes[q.userID]
			if c.srv.faults.takeWelcomeCorruption(q.userID) && len(welcome) > 0 {
				welcome = slices.Clone(welcome)
				welcome[len(welcome)-1] ^= 0xFF
			}
			c.sendBinary(q, opWelcome, dave.WelcomePayload(tid, welcome))
			to = append(to, q.userID)
		case in:
			c.sendBinary(q, opAnnounceCommit, dave.AnnounceCommitPayload(tid, acc.Commit))
			to = append(to, q.userID)
		}
		// A removed member still connected has flagged an invalid message
		// and reset its state: it waits for its Welcome, not this commit.
	}
	c.note(slog.LevelInfo, "DAVE commit accepted", "committer", p.userID, "epoch", acc.Epoch,
		"transition", tid, "added", acc.Added, "removed", acc.Removed)
	c.startTransition(tid, 1, to)
	for _, q := range slices.Clone(c.order) {
		c.tryAdd(q)
	}
}

// ready takes op 23.
func (c *call) ready(p *participant, tid uint16) {
	if c.trans == nil || c.trans.id != tid {
		return
	}
	delete(c.trans.waiting, p.userID)
	c.maybeExecute()
}

// invalid takes op 31: the member could not process a commit or welcome.
// It is proposed for removal and added again when its new key package
// arrives (whitepaper, "Recovery from Invalid Commit or Welcome").
func (c *call) invalid(p *participant, tid uint16) {
	c.note(slog.LevelInfo, "DAVE invalid commit or welcome reported", "user_id", p.userID, "transition", tid)
	if t := c.trans; t != nil && t.id == tid {
		delete(t.waiting, p.userID)
		t.to = slices.DeleteFunc(t.to, func(u string) bool { return u == p.userID })
	}
	if c.protocol == 1 {
		if _, in := c.xs.Members()[p.userID]; in {
			if len(c.groupParticipants(p.userID)) == 0 {
				c.recreate(c.daveParticipants())
			} else {
				c.proposeRemove(p.userID)
			}
		}
	}
	c.maybeExecute()
}

// ---- transitions ----

// nextTransitionID allocates a transition id; 0 means "at once" and is
// never allocated.
func (c *call) nextTransitionID() uint16 {
	c.lastTID++
	if c.lastTID == 0 {
		c.lastTID = 1
	}
	return c.lastTID
}

// startTransition waits for op 23 from the participants in to. A
// transition still waiting is superseded: clients keep one pending
// transition, and the new one's execute covers both.
func (c *call) startTransition(tid uint16, protocol int, to []string) {
	waiting := make(map[string]bool, len(to))
	for _, u := range to {
		waiting[u] = true
	}
	c.trans = &transition{id: tid, protocol: protocol, to: to, waiting: waiting, deadline: time.Now().Add(c.srv.opts.TransitionTimeout)}
	c.maybeExecute()
}

func (c *call) maybeExecute() {
	if c.trans != nil && len(c.trans.waiting) == 0 {
		c.execute()
	}
}

// execute sends op 22 to the transition's participants.
func (c *call) execute() {
	t := c.trans
	c.trans = nil
	c.executed++
	now := time.Now()
	for _, u := range t.to {
		q := c.parts[u]
		if q == nil {
			continue
		}
		c.sendJSON(q, opExecuteTransition, map[string]any{"transition_id": t.id})
		if t.protocol == 1 {
			c.bind(q, now.Add(upgradeGrace))
		}
	}
}

// isSnowflake reports whether id is a Discord id: a decimal uint64.
func isSnowflake(id string) bool {
	_, err := strconv.ParseUint(id, 10, 64)
	return err == nil
}
