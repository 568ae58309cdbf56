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
	stepReady             // READY; the served guilds' GUILD_CREATEs follow
	stepReadyNoGuild      // READY, but no served guild is among the bot's
	stepResumed           // RESUMED
	stepGuild             // the last awaited GUILD_CREATE of a served guild
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
		evGuild string // the guild the changes are of
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
		sess.awaiting = map[string]bool{}
		for _, g := range c.guilds {
			g.state.SetSelf(r.User.ID)
		}
		for _, g := range r.Guilds {
			if c.guild(g.ID) != nil && g.ID != "" {
				sess.awaiting[g.ID] = true
			}
		}
		sess.missing = sess.missing[:0]
		absent := map[string]bool{}
		for _, g := range c.guilds {
			if !sess.awaiting[g.id] {
				sess.missing = append(sess.missing, g.id)
				absent[g.id] = true
			}
		}
		c.mu.Lock()
		c.absent = absent
		c.mu.Unlock()
		st = stepReadyNoGuild
		if len(sess.awaiting) > 0 {
			st = stepReady
		}
	case "RESUMED":
		st = stepResumed
	case "GUILD_CREATE":
		var g guildCreateData
		if g, err = decodeGuildCreate(f.D); err != nil || g.Unavailable {
			break
		}
		view := c.guild(g.ID)
		if view == nil || g.ID == "" {
			break
		}
		changes = view.state.Reconcile(session.Snapshot{Channels: g.Channels, VoiceStates: g.VoiceStates, Members: g.Members})
		c.mu.Lock()
		view.loaded = true // before the changes are queued: whoever gets them sees the view loaded
		if g.Name != "" {
			view.name = g.Name
		}
		c.mu.Unlock()
		c.checkPermissions(view, g, sess.botUserID)
		evGuild = view.id
		if sess.awaiting[g.ID] {
			delete(sess.awaiting, g.ID)
			if len(sess.awaiting) == 0 {
				st = stepGuild
			}
		}
	case "GUILD_UPDATE":
		var g struct{ ID, Name string }
		if json.Unmarshal(f.D, &g) == nil && g.Name != "" {
			if view := c.guild(g.ID); view != nil && g.ID != "" {
				c.mu.Lock()
				view.name = g.Name
				c.mu.Unlock()
			}
		}
	case "CHANNEL_CREATE", "CHANNEL_UPDATE", "CHANNEL_DELETE":
		ch, derr := decodeChannel(f.T, f.D)
		if err = derr; err != nil {
			break
		}
		view := c.guild(ch.GuildID)
		if view == nil {
			break // a guild the client does not serve
		}
		evGuild = view.id
		switch f.T {
		case "CHANNEL_DELETE":
			changes, err = view.state.ChannelDelete(ch)
		default:
			changes, err = view.state.ChannelUpdate(ch)
		}
	case "VOICE_STATE_UPDATE":
		vs, derr := decodeVoiceState(f.D)
		if err = derr; err != nil {
			break
		}
		if view := c.guild(vs.GuildID); view != nil {
			evGuild = view.id
			changes, err = view.state.VoiceState(vs)
		}
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
		if json.Unmarshal(f.D, &m) == nil && m.User != nil && m.GuildID != "" {
			if view := c.guild(m.GuildID); view != nil {
				view.state.RememberName(m.User.ID, m.name())
			}
		}
	}
	if err != nil {
		c.log.Warn("ignoring malformed dispatch", "t", f.T, "s", f.S, "err", err)
	}
	if len(changes) > 0 && c.opts.OnEvent != nil {
		evs := make([]Event, len(changes))
		for i, ch := range changes {
			evs[i] = toEvent(evGuild, sess.botUserID, ch)
			evs[i].Session, evs[i].Seq, evs[i].Index = sess.id, f.S, i
		}
		c.events.push(evs...)
	}
	if c.opts.OnSession != nil && sess.id != "" {
		if len(changes) > 0 || st != stepNone || c.saved == nil {
			// The views as of this dispatch, shared read-only: a new map,
			// with a new view of each guild that changed (all of them at
			// a session step or the first time).
			next := make(map[string]*session.Saved, len(c.guilds))
			for _, g := range c.guilds {
				if old, ok := c.saved[g.id]; ok && st == stepNone && g.id != evGuild {
					next[g.id] = old
					continue
				}
				v := g.state.Save()
				next[g.id] = &v
			}
			c.saved = next
		}
		c.events.pushSession(Session{ID: sess.id, ResumeURL: sess.resumeURL, Seq: sess.seq, BotUserID: sess.botUserID, Guilds: c.saved})
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

// checkPermissions computes the bot's permissions in a guild's room
// category from its GUILD_CREATE, reports them in Status (the first
// guild that lacks some, else the home guild) and logs what is missing
// with the fix.
func (c *Client) checkPermissions(view *guildView, g guildCreateData, botID string) {
	var botRoles []string
	for _, m := range g.Members {
		if m != nil && m.User != nil && m.User.ID == botID {
			botRoles = m.Roles
		}
	}
	var category *discordgo.Channel
	for _, ch := range g.Channels {
		if ch != nil && ch.ID == view.categoryID {
			category = ch
		}
	}
	perms := categoryPermissions(g.ID, botID, g.Roles, botRoles, category)
	rep := permissionReport(perms, botID, view.categoryID)
	c.mu.Lock()
	view.perms, view.permsKnown = perms, true
	var shown *PermissionReport
	for _, v := range c.guilds {
		if !v.permsKnown {
			continue
		}
		r := permissionReport(v.perms, botID, v.categoryID)
		if shown == nil || (len(shown.Missing) == 0 && len(r.Missing) > 0) {
			shown = &r
		}
	}
	c.mu.Unlock()
	c.setStatus(func(s *Status) { s.Permissions = shown })
	if len(rep.Missing) > 0 {
		c.log.Warn("the bot lacks permissions in the room category", "guild_id", view.id, "missing", strings.Join(rep.Missing, "; "), "fix", rep.Fix)
	}
}
