package discordemu

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bwmarrin/discordgo"
)

// Channel types the emulator creates (developers/resources/channel.mdx
// "Channel Types").
const (
	channelTypeText     = 0
	channelTypeVoice    = 2
	channelTypeCategory = 4
	channelTypeStage    = 13
)

// Limits from Create Guild Channel (developers/resources/guild.mdx) and the
// channel object (developers/resources/channel.mdx).
const (
	maxChannels         = 500
	maxNameLen          = 100
	maxTopicLen         = 1024
	minBitrate          = 8000
	maxBitrate          = 384000
	defaultBitrate      = 64000
	maxVoiceUserLimit   = 99
	maxStageUserLimit   = 10000
	maxRateLimitPerUser = 21600
	// ownerID is the guild owner, a user who is not otherwise modelled.
	ownerID = "100000000000000000"
)

type channel struct {
	id               string
	typ              int
	name             string
	parentID         string
	position         int
	bitrate          int
	userLimit        int
	topic            string
	nsfw             bool
	rateLimitPerUser int
}

type member struct {
	id       string
	username string
	bot      bool
	joinedAt time.Time
}

type voiceState struct {
	userID    string
	channelID string
	sessionID string
	selfMute  bool
	selfDeaf  bool
}

// guildState is the one emulated guild; guarded by Server.mu.
type guildState struct {
	id, name       string
	created        time.Time
	channels       map[string]*channel
	channelOrder   []string
	members        map[string]*member
	memberOrder    []string
	voice          map[string]*voiceState
	manageChannels bool
	botPerms       int64
	catID          string
	catOverwrites  []PermissionOverwrite
}

// Permission bits (developers/topics/permissions.mdx) the emulator checks.
const (
	PermAdministrator  int64 = 1 << 3
	PermManageChannels int64 = 1 << 4
	PermViewChannel    int64 = 1 << 10
	PermConnect        int64 = 1 << 20
	PermSpeak          int64 = 1 << 21
	PermMoveMembers    int64 = 1 << 24
	// BotRolePermissions is the bot role's default: what the bridge asks
	// for in its invite.
	BotRolePermissions = PermViewChannel | PermManageChannels | PermConnect | PermSpeak | PermMoveMembers
	// everyonePermissions is Discord's default @everyone permission set.
	everyonePermissions int64 = 1071698660929
	// botRoleID is the id of the bot's managed role.
	botRoleID = "600000000000000001"
)

// PermissionOverwrite is a channel permission overwrite (Discord docs,
// "Overwrite Object"): Type 0 for a role, 1 for a member.
type PermissionOverwrite struct {
	ID          string
	Type        int
	Allow, Deny int64
}

// botPermissionsLocked computes the bot's permissions in the room category
// as Discord does (permissions.mdx, "Permission Overwrites"): @everyone
// and the bot's role, then the category's @everyone, role and member
// overwrites in that order.
func (g *guildState) botPermissionsLocked(botID string) int64 {
	p := everyonePermissions | g.botPerms
	if p&PermAdministrator != 0 {
		return -1
	}
	apply := func(match func(PermissionOverwrite) bool) {
		var allow, deny int64
		for _, o := range g.catOverwrites {
			if match(o) {
				allow, deny = allow|o.Allow, deny|o.Deny
			}
		}
		p = p&^deny | allow
	}
	apply(func(o PermissionOverwrite) bool { return o.Type == 0 && o.ID == g.id })
	apply(func(o PermissionOverwrite) bool { return o.Type == 0 && o.ID == botRoleID })
	apply(func(o PermissionOverwrite) bool { return o.Type == 1 && o.ID == botID })
	return p
}

func overwritesJSON(ows []PermissionOverwrite) []any {
	out := make([]any, 0, len(ows))
	for _, o := range ows {
		out = append(out, map[string]any{"id": o.ID, "type": o.Type,
			"allow": strconv.FormatInt(o.Allow, 10), "deny": strconv.FormatInt(o.Deny, 10)})
	}
	return out
}

func newGuildState(spec Guild, o Options, now time.Time) *guildState {
	g := &guildState{
		id:             spec.ID,
		name:           spec.Name,
		created:        now,
		channels:       make(map[string]*channel),
		members:        make(map[string]*member),
		voice:          make(map[string]*voiceState),
		manageChannels: true,
		botPerms:       o.BotPermissions,
		catID:          spec.CategoryID,
		catOverwrites:  append([]PermissionOverwrite(nil), o.CategoryOverwrites...),
	}
	if g.botPerms == 0 {
		g.botPerms = BotRolePermissions
	}
	g.addChannel(&channel{id: spec.CategoryID, typ: channelTypeCategory, name: "Rooms"})
	for i, id := range spec.VoiceChannels {
		g.addChannel(&channel{id: id, typ: channelTypeVoice, name: fmt.Sprintf("Voice %d", i+1), parentID: spec.CategoryID, position: i, bitrate: 64000})
	}
	added := func(userID string) bool { return len(spec.Bots) == 0 || slices.Contains(spec.Bots, userID) }
	if added(o.BotUserID) {
		g.addMember(&member{id: o.BotUserID, username: o.BotName, bot: true, joinedAt: now})
	}
	for _, b := range o.ExtraBots {
		if added(b.UserID) {
			g.addMember(&member{id: b.UserID, username: b.Name, bot: true, joinedAt: now})
		}
	}
	return g
}

// hasBot reports whether the bot user is a member of the guild.
func (g *guildState) hasBot(userID string) bool {
	m, ok := g.members[userID]
	return ok && m.bot
}

// guildLocked is the guild with this id; nil when none.
func (s *Server) guildLocked(id string) *guildState {
	for _, g := range s.guilds {
		if g.id == id {
			return g
		}
	}
	return nil
}

// channelGuildLocked finds the guild holding a channel; nils when none.
func (s *Server) channelGuildLocked(channelID string) (*guildState, *channel) {
	for _, g := range s.guilds {
		if c, ok := g.channels[channelID]; ok {
			return g, c
		}
	}
	return nil, nil
}

func (g *guildState) addChannel(c *channel) {
	g.channels[c.id] = c
	g.channelOrder = append(g.channelOrder, c.id)
}

func (g *guildState) addMember(m *member) {
	if _, ok := g.members[m.id]; !ok {
		g.memberOrder = append(g.memberOrder, m.id)
	}
	g.members[m.id] = m
}

func (g *guildState) removeChannel(id string) {
	delete(g.channels, id)
	for i, cid := range g.channelOrder {
		if cid == id {
			g.channelOrder = append(g.channelOrder[:i], g.channelOrder[i+1:]...)
			break
		}
	}
}

func (g *guildState) orderedChannels() []*channel {
	out := make([]*channel, 0, len(g.channelOrder))
	for _, id := range g.channelOrder {
		out = append(out, g.channels[id])
	}
	return out
}

// nextPosition puts a new channel after its siblings of the same kind.
func (g *guildState) nextPosition(typ int) int {
	pos := 0
	for _, c := range g.channels {
		if (c.typ == channelTypeCategory) == (typ == channelTypeCategory) && c.position >= pos {
			pos = c.position + 1
		}
	}
	return pos
}

func isVoiceType(typ int) bool { return typ == channelTypeVoice || typ == channelTypeStage }

// channelSpec is a channel definition before validation; nil fields take
// Discord's defaults.
type channelSpec struct {
	name             *string
	typ              *int
	bitrate          *int
	userLimit        *int
	parentID         *string
	position         *int
	topic            *string
	nsfw             *bool
	rateLimitPerUser *int
}

// fieldError is one entry of Discord's "errors" object for code 50035
// (developers/reference "Error Messages").
type fieldError struct {
	field, code, message string
}

func (e fieldError) String() string { return e.field + ": " + e.message }

// validateLocked applies Create Guild Channel's rules and returns the
// channel to create, or the field errors.
func (g *guildState) validateLocked(spec channelSpec) (*channel, []fieldError) {
	var errs []fieldError
	c := &channel{typ: channelTypeText}
	if spec.typ != nil {
		c.typ = *spec.typ
	}
	switch c.typ {
	case channelTypeText, channelTypeVoice, channelTypeCategory, channelTypeStage:
	default:
		errs = append(errs, fieldError{"type", "BASE_TYPE_CHOICES", fmt.Sprintf("Value must be one of {%d, %d, %d, %d}.", channelTypeText, channelTypeVoice, channelTypeCategory, channelTypeStage)})
	}
	if spec.name == nil {
		errs = append(errs, fieldError{"name", "BASE_TYPE_REQUIRED", "This field is required"})
	} else {
		c.name = strings.TrimSpace(*spec.name)
		if n := utf8.RuneCountInString(c.name); n < 1 || n > maxNameLen {
			errs = append(errs, fieldError{"name", "BASE_TYPE_BAD_LENGTH", fmt.Sprintf("Must be between 1 and %d in length.", maxNameLen)})
		}
	}
	if isVoiceType(c.typ) {
		c.bitrate = defaultBitrate
		if spec.bitrate != nil {
			c.bitrate = *spec.bitrate
			if c.bitrate < minBitrate {
				errs = append(errs, fieldError{"bitrate", "NUMBER_TYPE_MIN", fmt.Sprintf("int value should be greater than or equal to %d.", minBitrate)})
			} else if c.bitrate > maxBitrate {
				errs = append(errs, fieldError{"bitrate", "NUMBER_TYPE_MAX", fmt.Sprintf("int value should be less than or equal to %d.", maxBitrate)})
			}
		}
		if spec.userLimit != nil {
			c.userLimit = *spec.userLimit
			limit := maxVoiceUserLimit
			if c.typ == channelTypeStage {
				limit = maxStageUserLimit
			}
			if c.userLimit < 0 {
				errs = append(errs, fieldError{"user_limit", "NUMBER_TYPE_MIN", "int value should be greater than or equal to 0."})
			} else if c.userLimit > limit {
				errs = append(errs, fieldError{"user_limit", "NUMBER_TYPE_MAX", fmt.Sprintf("int value should be less than or equal to %d.", limit)})
			}
		}
	}
	if spec.parentID != nil && *spec.parentID != "" {
		parent, ok := g.channels[*spec.parentID]
		switch {
		case c.typ == channelTypeCategory:
			errs = append(errs, fieldError{"parent_id", "CHANNEL_PARENT_INVALID_TYPE", "Categories cannot have subcategories."})
		case !ok:
			errs = append(errs, fieldError{"parent_id", "CHANNEL_PARENT_INVALID", "Category does not exist."})
		case parent.typ != channelTypeCategory:
			errs = append(errs, fieldError{"parent_id", "CHANNEL_PARENT_INVALID_TYPE", "Not a category."})
		default:
			c.parentID = parent.id
		}
	}
	if spec.topic != nil {
		c.topic = *spec.topic
		if utf8.RuneCountInString(c.topic) > maxTopicLen {
			errs = append(errs, fieldError{"topic", "BASE_TYPE_MAX_LENGTH", fmt.Sprintf("Must be %d or fewer in length.", maxTopicLen)})
		}
	}
	if spec.rateLimitPerUser != nil {
		c.rateLimitPerUser = *spec.rateLimitPerUser
		if c.rateLimitPerUser < 0 || c.rateLimitPerUser > maxRateLimitPerUser {
			errs = append(errs, fieldError{"rate_limit_per_user", "NUMBER_TYPE_MAX", fmt.Sprintf("int value should be between 0 and %d.", maxRateLimitPerUser)})
		}
	}
	if spec.nsfw != nil {
		c.nsfw = *spec.nsfw
	}
	if spec.position != nil {
		c.position = *spec.position
	} else {
		c.position = g.nextPosition(c.typ)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// --- wire forms (JSON as Discord sends it) ---

func userJSON(m *member) map[string]any {
	u := map[string]any{
		"id":            m.id,
		"username":      m.username,
		"discriminator": "0",
		"global_name":   nil,
		"avatar":        nil,
		"public_flags":  0,
		"flags":         0,
	}
	if m.bot {
		u["bot"] = true
	}
	return u
}

func memberJSON(m *member) map[string]any {
	roles := []string{}
	if m.bot {
		roles = append(roles, botRoleID)
	}
	return map[string]any{
		"user":          userJSON(m),
		"nick":          nil,
		"avatar":        nil,
		"banner":        nil,
		"roles":         roles,
		"joined_at":     m.joinedAt.UTC().Format(time.RFC3339Nano),
		"premium_since": nil,
		"deaf":          false,
		"mute":          false,
		"flags":         0,
		"pending":       false,
	}
}

func (g *guildState) channelJSON(c *channel) map[string]any {
	out := map[string]any{
		"id":                    c.id,
		"type":                  c.typ,
		"guild_id":              g.id,
		"name":                  c.name,
		"position":              c.position,
		"permission_overwrites": []any{},
		"flags":                 0,
		"parent_id":             nil,
	}
	if c.typ == channelTypeCategory && c.id == g.catID {
		out["permission_overwrites"] = overwritesJSON(g.catOverwrites)
	}
	if c.parentID != "" {
		out["parent_id"] = c.parentID
	}
	switch c.typ {
	case channelTypeText:
		out["topic"] = nil
		if c.topic != "" {
			out["topic"] = c.topic
		}
		out["nsfw"] = c.nsfw
		out["last_message_id"] = nil
		out["rate_limit_per_user"] = c.rateLimitPerUser
	case channelTypeVoice, channelTypeStage:
		out["bitrate"] = c.bitrate
		out["user_limit"] = c.userLimit
		out["rtc_region"] = nil
		out["nsfw"] = c.nsfw
		out["last_message_id"] = nil
		out["rate_limit_per_user"] = c.rateLimitPerUser
		if c.typ == channelTypeStage {
			out["topic"] = nil
		}
	}
	return out
}

// voiceStateJSON is a voice state object (developers/resources/voice.mdx).
// GUILD_CREATE's voice_states lack guild_id; VOICE_STATE_UPDATE carries it
// and the member.
func (g *guildState) voiceStateJSON(vs *voiceState, full bool) map[string]any {
	out := map[string]any{
		"channel_id":                 nil,
		"user_id":                    vs.userID,
		"session_id":                 vs.sessionID,
		"deaf":                       false,
		"mute":                       false,
		"self_deaf":                  vs.selfDeaf,
		"self_mute":                  vs.selfMute,
		"self_video":                 false,
		"suppress":                   false,
		"request_to_speak_timestamp": nil,
	}
	if vs.channelID != "" {
		out["channel_id"] = vs.channelID
	}
	if full {
		out["guild_id"] = g.id
		if m, ok := g.members[vs.userID]; ok {
			out["member"] = memberJSON(m)
		}
	}
	return out
}

func everyoneRoleJSON(guildID string) map[string]any {
	return roleJSON(guildID, "@everyone", 0, everyonePermissions, false)
}

func roleJSON(id, name string, position int, perms int64, managed bool) map[string]any {
	return map[string]any{
		"id": id, "name": name, "color": 0, "colors": map[string]any{"primary_color": 0, "secondary_color": nil, "tertiary_color": nil},
		"hoist": false, "icon": nil, "unicode_emoji": nil, "position": position,
		"permissions": strconv.FormatInt(perms, 10), "managed": managed, "mentionable": false, "flags": 0,
	}
}

// guildJSON is the guild object of GET /guilds/{id}
// (developers/resources/guild.mdx "Guild Object").
func (g *guildState) guildJSON() map[string]any {
	return map[string]any{
		"id": g.id, "name": g.name, "icon": nil, "splash": nil, "discovery_splash": nil,
		"owner_id": ownerID, "afk_channel_id": nil, "afk_timeout": 300,
		"widget_enabled": false, "widget_channel_id": nil, "verification_level": 0,
		"default_message_notifications": 0, "explicit_content_filter": 0,
		"roles": []any{everyoneRoleJSON(g.id), roleJSON(botRoleID, "bridge-bot", 1, g.botPerms, true)}, "emojis": []any{}, "stickers": []any{}, "features": []string{},
		"mfa_level": 0, "application_id": nil, "system_channel_id": nil, "system_channel_flags": 0,
		"rules_channel_id": nil, "vanity_url_code": nil, "description": nil, "banner": nil,
		"premium_tier": 0, "premium_subscription_count": 0, "preferred_locale": "en-US",
		"public_updates_channel_id": nil, "max_video_channel_users": 25, "max_stage_video_channel_users": 50,
		"nsfw_level": 0, "premium_progress_bar_enabled": false, "safety_alerts_channel_id": nil,
		"max_members": 500000, "max_presences": nil, "hub_type": nil, "incidents_data": nil,
	}
}

// guildCreateJSON is GUILD_CREATE's payload
// (developers/events/gateway-events.mdx "Guild Create"). Without the
// GUILD_PRESENCES intent the member list holds only the bot and members in
// voice.
func (g *guildState) guildCreateJSON(botID string, presences bool) map[string]any {
	out := g.guildJSON()
	channels := make([]any, 0, len(g.channelOrder))
	for _, c := range g.orderedChannels() {
		channels = append(channels, g.channelJSON(c))
	}
	members := []any{}
	for _, id := range g.memberOrder {
		_, inVoice := g.voice[id]
		if presences || inVoice || id == botID {
			members = append(members, memberJSON(g.members[id]))
		}
	}
	voiceStates := []any{}
	for _, id := range g.memberOrder {
		if vs, ok := g.voice[id]; ok {
			voiceStates = append(voiceStates, g.voiceStateJSON(vs, false))
		}
	}
	out["joined_at"] = g.created.UTC().Format(time.RFC3339Nano)
	out["large"] = false
	out["unavailable"] = false
	out["member_count"] = len(g.members)
	out["voice_states"] = voiceStates
	out["members"] = members
	out["channels"] = channels
	out["threads"] = []any{}
	out["presences"] = []any{}
	out["stage_instances"] = []any{}
	out["guild_scheduled_events"] = []any{}
	out["soundboard_sounds"] = []any{}
	return out
}

// toDiscordgo converts through the wire form, so what tests see is what a
// client decoding the JSON sees.
func (g *guildState) toDiscordgo(c *channel) *discordgo.Channel {
	raw, err := json.Marshal(g.channelJSON(c))
	if err != nil {
		return &discordgo.Channel{ID: c.id, Name: c.name, Type: discordgo.ChannelType(c.typ)}
	}
	var out discordgo.Channel
	if err := json.Unmarshal(raw, &out); err != nil {
		return &discordgo.Channel{ID: c.id, Name: c.name, Type: discordgo.ChannelType(c.typ)}
	}
	return &out
}

// --- public state API ---

// AddMember makes a user a member of the guild (the bot is one from the
// start). Adding an existing member renames it. Discord would dispatch
// GUILD_MEMBER_ADD only with the privileged GUILD_MEMBERS intent, which the
// emulated bot never has, so nothing is dispatched.
func (s *Server) AddMember(userID, username string) {
	_ = s.AddMemberTo(s.opts.GuildID, userID, username)
}

// AddMemberTo is AddMember in the guild guildID; a bot added so joins the
// guild, as an invite does (the guild reaches its session at the next
// identify).
func (s *Server) AddMemberTo(guildID, userID, username string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.guildLocked(guildID)
	if g == nil {
		return fmt.Errorf("%w: %s", ErrUnknownGuild, guildID)
	}
	if m, ok := g.members[userID]; ok {
		m.username = username
		return nil
	}
	g.addMember(&member{id: userID, username: username, bot: s.botByUserLocked(userID) != nil, joinedAt: time.Now()})
	return nil
}

// SetVoiceState joins, moves or (channelID "") disconnects a member's voice
// and dispatches VOICE_STATE_UPDATE. Moving the bot also allocates a voice
// server (VOICE_SERVER_UPDATE); disconnecting it releases one.
func (s *Server) SetVoiceState(userID, channelID string) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if channelID == "" {
		// Leave voice in every guild the member is in voice in.
		member := false
		for _, g := range s.guilds {
			if _, ok := g.members[userID]; ok {
				member = true
				if vs, ok := g.voice[userID]; ok {
					s.setVoiceLocked(g, userID, "", vs.selfMute, vs.selfDeaf)
				}
			}
		}
		s.mu.Unlock()
		if !member {
			return fmt.Errorf("%w: %s", ErrUnknownMember, userID)
		}
		return nil
	}
	g, c := s.channelGuildLocked(channelID)
	if c == nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrUnknownChannel, channelID)
	}
	if _, ok := g.members[userID]; !ok {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s in guild %s", ErrUnknownMember, userID, g.id)
	}
	if !isVoiceType(c.typ) {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s has type %d", ErrNotVoiceChannel, channelID, c.typ)
	}
	selfMute, selfDeaf := false, false
	if vs, ok := g.voice[userID]; ok {
		selfMute, selfDeaf = vs.selfMute, vs.selfDeaf
	}
	s.setVoiceLocked(g, userID, channelID, selfMute, selfDeaf)
	s.mu.Unlock()
	return nil
}

// VoiceStates maps each member in voice in the primary guild to their
// channel.
func (s *Server) VoiceStates() map[string]string { return s.VoiceStatesIn(s.opts.GuildID) }

// VoiceStatesIn maps each member in voice in guildID to their channel;
// nil for an unknown guild.
func (s *Server) VoiceStatesIn(guildID string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.guildLocked(guildID)
	if g == nil {
		return nil
	}
	out := make(map[string]string, len(g.voice))
	for id, vs := range g.voice {
		out[id] = vs.channelID
	}
	return out
}

// CreateChannel creates a channel as a guild administrator would (no
// permission check), validated like POST /guilds/{id}/channels, and
// dispatches CHANNEL_CREATE. parentID "" means no category.
func (s *Server) CreateChannel(name string, typ int, parentID string) (*discordgo.Channel, error) {
	return s.CreateChannelIn(s.opts.GuildID, name, typ, parentID)
}

// CreateChannelIn is CreateChannel in the guild guildID.
func (s *Server) CreateChannelIn(guildID, name string, typ int, parentID string) (*discordgo.Channel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	g := s.guildLocked(guildID)
	if g == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownGuild, guildID)
	}
	c, errs := s.createChannelLocked(g, channelSpec{name: &name, typ: &typ, parentID: &parentID})
	if errs != nil {
		return nil, errs
	}
	return g.toDiscordgo(c), nil
}

// createChannelLocked validates, stores and dispatches a new channel.
func (s *Server) createChannelLocked(g *guildState, spec channelSpec) (*channel, error) {
	if len(g.channels) >= maxChannels {
		return nil, ErrMaxChannels
	}
	c, ferrs := g.validateLocked(spec)
	if ferrs != nil {
		parts := make([]string, len(ferrs))
		for i, fe := range ferrs {
			parts[i] = fe.String()
		}
		return nil, &formError{fields: ferrs, err: fmt.Errorf("%w: %s", ErrInvalidChannel, strings.Join(parts, "; "))}
	}
	c.id = s.ids.next(time.Now())
	g.addChannel(c)
	s.dispatchLocked(g, "CHANNEL_CREATE", intentGuilds, g.channelJSON(c))
	return c, nil
}

// formError carries field errors for REST's 50035 answer.
type formError struct {
	fields []fieldError
	err    error
}

func (e *formError) Error() string { return e.err.Error() }
func (e *formError) Unwrap() error { return e.err }

// DeleteChannel deletes a channel and dispatches CHANNEL_DELETE; members in
// a deleted voice channel are disconnected (VOICE_STATE_UPDATE with a null
// channel), and a deleted category's children lose their parent
// (CHANNEL_UPDATE), as Discord does.
func (s *Server) DeleteChannel(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	_, err := s.deleteChannelLocked(id)
	return err
}

func (s *Server) deleteChannelLocked(id string) (*channel, error) {
	g, c := s.channelGuildLocked(id)
	if c == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownChannel, id)
	}
	payload := g.channelJSON(c)
	g.removeChannel(id)
	s.dispatchLocked(g, "CHANNEL_DELETE", intentGuilds, payload)
	if c.typ == channelTypeCategory {
		for _, child := range g.orderedChannels() {
			if child.parentID == id {
				child.parentID = ""
				s.dispatchLocked(g, "CHANNEL_UPDATE", intentGuilds, g.channelJSON(child))
			}
		}
	}
	var inChannel []string
	for uid, vs := range g.voice {
		if vs.channelID == id {
			inChannel = append(inChannel, uid)
		}
	}
	sort.Strings(inChannel)
	for _, uid := range inChannel {
		s.setVoiceLocked(g, uid, "", false, false)
	}
	return c, nil
}

// Channel returns the channel with that id.
func (s *Server) Channel(id string) (*discordgo.Channel, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, c := s.channelGuildLocked(id)
	if c == nil {
		return nil, false
	}
	return g.toDiscordgo(c), true
}

// Channels returns every channel of the guild in creation order.
func (s *Server) Channels() []*discordgo.Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*discordgo.Channel, 0, len(s.guild.channelOrder))
	for _, c := range s.guild.orderedChannels() {
		out = append(out, s.guild.toDiscordgo(c))
	}
	return out
}

// SetBotPermissions sets the permissions of the bot's role (0 restores
// BotRolePermissions). Clients see the change in the next GUILD_CREATE.
func (s *Server) SetBotPermissions(perms int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if perms == 0 {
		perms = BotRolePermissions
	}
	s.guild.botPerms = perms
}

// SetManageChannels grants or revokes the bot's Manage Channels permission.
// Without it, REST channel create and delete answer 403 with code 50013.
func (s *Server) SetManageChannels(allowed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.guild.manageChannels = allowed
}

// --- voice ---

// voiceEffect is a VoiceBackend call owed after a voice-state change.
type voiceEffect struct {
	guildID                      string
	userID, channelID, sessionID string
	allocate, release, renew     bool
	// voiceServer, when set, is a scripted VOICE_SERVER_UPDATE to dispatch
	// in order with the backend's effects.
	voiceServer *voiceServerUpdate
}

type voiceServerUpdate struct {
	userID   string // the bot it goes to
	guildID  string
	endpoint *string
	token    string
}

// setVoiceLocked changes a member's voice state, dispatches
// VOICE_STATE_UPDATE and queues the backend calls. Caller has validated
// member and channel.
func (s *Server) setVoiceLocked(g *guildState, userID, channelID string, selfMute, selfDeaf bool) {
	prev, had := g.voice[userID]
	if !had && channelID == "" {
		return
	}
	isBot := s.botByUserLocked(userID) != nil
	var vs *voiceState
	switch {
	case channelID == "":
		vs = &voiceState{userID: userID, sessionID: prev.sessionID, selfMute: selfMute, selfDeaf: selfDeaf}
		delete(g.voice, userID)
	case had:
		vs = prev
		vs.selfMute, vs.selfDeaf = selfMute, selfDeaf
		if isBot {
			// A voice session per join, move or repeated join, so a
			// client must take the id from the newest voice state.
			vs.sessionID = randomHex(16)
		}
	default:
		vs = &voiceState{userID: userID, sessionID: randomHex(16), selfMute: selfMute, selfDeaf: selfDeaf}
		g.voice[userID] = vs
	}
	moved := !had || prev.channelID != channelID
	vs.channelID = channelID
	s.dispatchLocked(g, "VOICE_STATE_UPDATE", intentGuildVoiceStates, g.voiceStateJSON(vs, true))
	eff := voiceEffect{guildID: g.id, userID: userID, channelID: channelID, sessionID: vs.sessionID}
	if isBot {
		eff.allocate = channelID != "" && moved
		eff.release = channelID == ""
		eff.renew = channelID != "" && !moved
	}
	s.queueEffectLocked(eff)
}

func (s *Server) queueEffectLocked(e voiceEffect) {
	s.effects = append(s.effects, e)
	select {
	case s.effectWake <- struct{}{}:
	default:
	}
}

// runEffects calls the VoiceBackend in order of the state changes; it owns
// the backend calls so none happens under the Server's lock.
func (s *Server) runEffects() {
	for {
		select {
		case <-s.stop:
			return
		case <-s.effectWake:
		}
		s.mu.Lock()
		batch := s.effects
		s.effects = nil
		s.mu.Unlock()
		for _, e := range batch {
			select {
			case <-s.stop:
				return
			default:
			}
			s.runEffect(e)
		}
	}
}

func (s *Server) runEffect(e voiceEffect) {
	guildID := e.guildID
	if e.voiceServer != nil {
		s.mu.Lock()
		s.dispatchVoiceServerLocked(*e.voiceServer)
		s.mu.Unlock()
		return
	}
	backend := s.opts.Voice
	if backend != nil {
		backend.MemberVoiceState(guildID, e.userID, e.channelID)
	}
	switch {
	case e.renew:
		if backend != nil {
			backend.Renew(guildID, e.userID, e.sessionID)
		}
	case e.allocate:
		endpoint, token := "127.0.0.1:1", randomHex(16)
		if backend != nil {
			var err error
			endpoint, token, err = backend.Allocate(guildID, e.channelID, e.userID, e.sessionID)
			if err != nil {
				s.log.Error("voice backend allocation failed; no VOICE_SERVER_UPDATE sent", "channel_id", e.channelID, "err", err)
				return
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		// A later change superseded this join: its own effect answers it.
		g := s.guildLocked(guildID)
		if g == nil {
			return
		}
		if vs, ok := g.voice[e.userID]; !ok || vs.channelID != e.channelID || vs.sessionID != e.sessionID {
			return
		}
		s.dispatchVoiceServerLocked(voiceServerUpdate{userID: e.userID, guildID: guildID, endpoint: &endpoint, token: token})
	case e.release:
		if backend != nil {
			backend.Release(guildID, e.userID)
		}
	}
}

// dispatchVoiceServerLocked sends VOICE_SERVER_UPDATE
// (developers/events/gateway-events.mdx "Voice Server Update"); a nil
// endpoint means the voice server is being reallocated.
func (s *Server) dispatchVoiceServerLocked(u voiceServerUpdate) {
	d := map[string]any{"token": u.token, "guild_id": u.guildID, "endpoint": nil}
	if u.endpoint != nil {
		d["endpoint"] = *u.endpoint
	}
	if b := s.botByUserLocked(u.userID); b != nil {
		s.dispatchToLocked(b.sessionForLocked(u.guildID), "VOICE_SERVER_UPDATE", 0, d)
	}
}
