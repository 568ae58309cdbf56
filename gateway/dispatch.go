package gateway

import (
	"encoding/json"
	"strings"

	"github.com/bwmarrin/discordgo"
	"github.com/voicebridge/bridge/gateway/session"
)

// step is what a dispatch meant for the handshake.
type step int

const (
	stepNone         step = iota
	stepReady             // READY; the guild's GUILD_CREATE follows
	stepReadyNoGuild      // READY, but the guild is not among the bot's
	stepResumed           // RESUMED
	stepGuild             // GUILD_CREATE of the configured guild
)

// dispatch handles op 0: de-duplication by sequence, session fields, state
// changes and voice updates.
func (c *Client) dispatch(f frame, sess *sessionInfo) step {
	if f.S <= sess.seq {
		// Replayed after a Resume, already processed (Gateway, Resuming).
		c.log.Debug("dropping replayed dispatch", "t", f.T, "s", f.S, "last", sess.seq)
		return stepNone
	}
	sess.seq = f.S
	c.setStatus(func(s *Status) { s.Seq = f.S })

	var (
		changes []session.Change
		err     error
		st      = stepNone
	)
	switch f.T {
	case "READY":
		var r readyData
		if r, err = decodeReady(f.D); err != nil {
			break
		}
		sess.id, sess.resumeURL, sess.botUserID = r.SessionID, r.ResumeGatewayURL, r.User.ID
		c.state.SetSelf(r.User.ID)
		st = stepReadyNoGuild
		for _, g := range r.Guilds {
			if g.ID == c.opts.GuildID {
				st = stepReady
			}
		}
	case "RESUMED":
		st = stepResumed
	case "GUILD_CREATE":
		var g guildCreateData
		if g, err = decodeGuildCreate(f.D); err != nil || g.ID != c.opts.GuildID || g.Unavailable {
			break
		}
		changes = c.state.Reconcile(session.Snapshot{Channels: g.Channels, VoiceStates: g.VoiceStates, Members: g.Members})
		c.checkPermissions(g, sess.botUserID)
		st = stepGuild
	case "CHANNEL_CREATE", "CHANNEL_UPDATE", "CHANNEL_DELETE":
		ch, derr := decodeChannel(f.T, f.D)
		if err = derr; err != nil {
			break
		}
		switch f.T {
		case "CHANNEL_DELETE":
			changes, err = c.state.ChannelDelete(ch)
		default:
			changes, err = c.state.ChannelUpdate(ch)
		}
	case "VOICE_STATE_UPDATE":
		vs, derr := decodeVoiceState(f.D)
		if err = derr; err != nil {
			break
		}
		changes, err = c.state.VoiceState(vs)
		if vs.UserID == sess.botUserID && vs.GuildID != "" {
			c.publishVoice(vs.GuildID, VoiceUpdate{SessionID: vs.SessionID, ChannelID: vs.ChannelID})
		}
	case "VOICE_SERVER_UPDATE":
		v, derr := decodeVoiceServer(f.D)
		if err = derr; err != nil {
			break
		}
		u := VoiceUpdate{Server: true, Token: v.Token, EndpointNull: v.Endpoint == nil}
		if v.Endpoint != nil {
			u.Endpoint = *v.Endpoint
		}
		c.publishVoice(v.GuildID, u)
	case "GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE":
		var m struct {
			GuildID string `json:"guild_id"`
			memberName
		}
		if json.Unmarshal(f.D, &m) == nil && m.GuildID == c.opts.GuildID && m.User != nil {
			c.state.RememberName(m.User.ID, m.name())
		}
	}
	if err != nil {
		c.log.Warn("ignoring malformed dispatch", "t", f.T, "s", f.S, "err", err)
	}
	if len(changes) > 0 && c.opts.OnEvent != nil {
		evs := make([]Event, len(changes))
		for i, ch := range changes {
			evs[i] = toEvent(c.opts.GuildID, sess.botUserID, ch)
			evs[i].Session, evs[i].Seq, evs[i].Index = sess.id, f.S, i
		}
		c.events.push(evs...)
	}
	if c.opts.OnSession != nil && sess.id != "" {
		if len(changes) > 0 || st != stepNone || c.saved == nil {
			v := c.state.Save() // the view as of this dispatch, shared read-only
			c.saved = &v
		}
		c.events.pushSession(Session{ID: sess.id, ResumeURL: sess.resumeURL, Seq: sess.seq, BotUserID: sess.botUserID, Guild: c.saved})
	}
	return st
}

// memberName is the part of a guild member that names it.
type memberName struct {
	Nick string `json:"nick"`
	User *struct {
		ID         string `json:"id"`
		Username   string `json:"username"`
		GlobalName string `json:"global_name"`
	} `json:"user"`
}

func (m memberName) name() string {
	switch {
	case m.Nick != "":
		return m.Nick
	case m.User == nil:
		return ""
	case m.User.GlobalName != "":
		return m.User.GlobalName
	}
	return m.User.Username
}

// checkPermissions computes the bot's permissions in the room category
// from a GUILD_CREATE, reports them in Status and logs what is missing
// with the fix.
func (c *Client) checkPermissions(g guildCreateData, botID string) {
	var botRoles []string
	for _, m := range g.Members {
		if m != nil && m.User != nil && m.User.ID == botID {
			botRoles = m.Roles
		}
	}
	var category *discordgo.Channel
	for _, ch := range g.Channels {
		if ch != nil && ch.ID == c.opts.CategoryID {
			category = ch
		}
	}
	perms := categoryPermissions(g.ID, botID, g.Roles, botRoles, category)
	rep := permissionReport(perms, botID, c.opts.CategoryID)
	c.mu.Lock()
	c.perms, c.permsKnown = perms, true
	c.mu.Unlock()
	c.setStatus(func(s *Status) { s.Permissions = &rep })
	if len(rep.Missing) > 0 {
		c.log.Warn("the bot lacks permissions in the room category", "missing", strings.Join(rep.Missing, "; "), "fix", rep.Fix)
	}
}
