package gateway

import (
	"fmt"
	"strings"

	"github.com/bwmarrin/discordgo"
)

// Permission bits the bridge needs in the room category (Discord docs,
// Permissions, "Permission Flags").
const (
	PermManageChannels int64 = 1 << 4
	PermViewChannel    int64 = 1 << 10
	PermConnect        int64 = 1 << 20
	PermSpeak          int64 = 1 << 21
	PermMoveMembers    int64 = 1 << 24
	permAdministrator  int64 = 1 << 3
)

// NeededPermissions is every permission the bot needs in the room
// category: the invite URL asks for these bits.
const NeededPermissions = PermViewChannel | PermManageChannels | PermConnect | PermSpeak | PermMoveMembers

// neededPermissions names each bit and what it is for, in the order of the
// report.
var neededPermissions = []struct {
	bit        int64
	name, need string
}{
	{PermViewChannel, "View Channel", "to see the rooms"},
	{PermManageChannels, "Manage Channels", "to create and end rooms"},
	{PermConnect, "Connect", "to join a room's voice channel"},
	{PermSpeak, "Speak", "to carry browser audio into the call"},
	{PermMoveMembers, "Move Members", "to join a room whose user limit is reached"},
}

// PermissionReport is what the bot may do in the room category, computed
// from the guild's roles and the category's overwrites at GUILD_CREATE.
type PermissionReport struct {
	// Missing names the needed permissions the bot lacks, each with what
	// it is for; empty when it has them all.
	Missing []string `json:"missing"`
	// Fix says what to do when something is missing.
	Fix string `json:"fix,omitempty"`
}

// InviteURL is the OAuth2 URL that adds the bot to a server with the
// bridge's permissions (Discord docs, OAuth2, "Bot Authorization Flow");
// a bot's application id is its user id.
func InviteURL(botUserID string) string {
	return fmt.Sprintf("https://discord.com/oauth2/authorize?client_id=%s&scope=bot&permissions=%d", botUserID, NeededPermissions)
}

// categoryPermissions computes the bot's permissions in the category as
// Discord does (Permissions, "Permission Overwrites"): @everyone and the
// bot's roles, Administrator grants all, then the category's @everyone
// overwrite, its role overwrites together, and the bot's member overwrite.
func categoryPermissions(guildID, botID string, roles []*discordgo.Role, botRoles []string, category *discordgo.Channel) int64 {
	has := map[string]bool{guildID: true}
	for _, id := range botRoles {
		has[id] = true
	}
	var p int64
	for _, r := range roles {
		if r != nil && has[r.ID] {
			p |= r.Permissions
		}
	}
	if p&permAdministrator != 0 {
		return -1
	}
	if category == nil {
		return p
	}
	apply := func(match func(*discordgo.PermissionOverwrite) bool) {
		var allow, deny int64
		for _, o := range category.PermissionOverwrites {
			if o != nil && match(o) {
				allow, deny = allow|o.Allow, deny|o.Deny
			}
		}
		p = p&^deny | allow
	}
	apply(func(o *discordgo.PermissionOverwrite) bool {
		return o.Type == discordgo.PermissionOverwriteTypeRole && o.ID == guildID
	})
	apply(func(o *discordgo.PermissionOverwrite) bool {
		return o.Type == discordgo.PermissionOverwriteTypeRole && o.ID != guildID && has[o.ID]
	})
	apply(func(o *discordgo.PermissionOverwrite) bool {
		return o.Type == discordgo.PermissionOverwriteTypeMember && o.ID == botID
	})
	return p
}

// permissionReport lists what perms lacks of NeededPermissions.
func permissionReport(perms int64, botID, categoryID string) PermissionReport {
	rep := PermissionReport{Missing: []string{}}
	var names []string
	for _, n := range neededPermissions {
		if perms&n.bit == 0 {
			rep.Missing = append(rep.Missing, n.name+" ("+n.need+")")
			names = append(names, n.name)
		}
	}
	if len(names) > 0 {
		rep.Fix = fmt.Sprintf("grant the bot's role %s in the room category %s (Server Settings > Roles, or the category's permissions), or invite the bot again with %s",
			strings.Join(names, ", "), categoryID, InviteURL(botID))
	}
	return rep
}

// CheckJoin tells why the bot cannot join a room's voice channel: the
// room is full (its user limit reached by others) and the bot lacks Move
// Members, which Discord answers with no voice update at all. It returns
// nil when the join may go ahead or the permissions are not known yet.
func (c *Client) CheckJoin(channelID string) error {
	for _, g := range c.guilds {
		if err := c.checkJoinIn(g, channelID); err != nil {
			return err
		}
	}
	return nil
}

func (c *Client) checkJoinIn(g *guildView, channelID string) error {
	c.mu.Lock()
	perms, known := g.perms, g.permsKnown
	c.mu.Unlock()
	if !known || perms&PermMoveMembers != 0 {
		return nil
	}
	for _, r := range g.state.Rooms() {
		if r.ChannelID != channelID || r.UserLimit == 0 {
			continue
		}
		others := 0
		for _, m := range r.Members {
			if !m.Bot {
				others++
			}
		}
		if others >= r.UserLimit {
			return fmt.Errorf("%w: room %q has %d of %d users and the bot lacks Move Members: grant the bot's role Move Members in the room category, or raise the room's user limit",
				ErrRoomFull, r.Name, others, r.UserLimit)
		}
	}
	return nil
}
