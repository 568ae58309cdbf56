package gateway

import (
	"strings"
	"testing"

	"github.com/bwmarrin/discordgo"
)

func TestCategoryPermissions(t *testing.T) {
	const guild, bot, botRole, other = "1", "2", "3", "4"
	everyone := &discordgo.Role{ID: guild, Permissions: PermViewChannel | PermConnect | PermSpeak}
	role := &discordgo.Role{ID: botRole, Permissions: PermManageChannels}
	ow := func(id string, typ discordgo.PermissionOverwriteType, allow, deny int64) *discordgo.PermissionOverwrite {
		return &discordgo.PermissionOverwrite{ID: id, Type: typ, Allow: allow, Deny: deny}
	}
	roleOW, memberOW := discordgo.PermissionOverwriteTypeRole, discordgo.PermissionOverwriteTypeMember
	cases := []struct {
		name       string
		roles      []*discordgo.Role
		overwrites []*discordgo.PermissionOverwrite
		want       int64
	}{
		{"roles only", []*discordgo.Role{everyone, role}, nil, PermViewChannel | PermConnect | PermSpeak | PermManageChannels},
		{"administrator", []*discordgo.Role{everyone, {ID: botRole, Permissions: permAdministrator}},
			[]*discordgo.PermissionOverwrite{ow(guild, roleOW, 0, PermConnect)}, -1},
		{"@everyone deny", []*discordgo.Role{everyone, role}, []*discordgo.PermissionOverwrite{ow(guild, roleOW, 0, PermConnect)},
			PermViewChannel | PermSpeak | PermManageChannels},
		{"role allow beats @everyone deny", []*discordgo.Role{everyone, role},
			[]*discordgo.PermissionOverwrite{ow(guild, roleOW, 0, PermConnect), ow(botRole, roleOW, PermConnect|PermMoveMembers, 0)},
			PermViewChannel | PermConnect | PermSpeak | PermManageChannels | PermMoveMembers},
		{"member deny beats role allow", []*discordgo.Role{everyone, role},
			[]*discordgo.PermissionOverwrite{ow(botRole, roleOW, PermMoveMembers, 0), ow(bot, memberOW, 0, PermMoveMembers|PermSpeak)},
			PermViewChannel | PermConnect | PermManageChannels},
		{"another role's overwrite", []*discordgo.Role{everyone, role}, []*discordgo.PermissionOverwrite{ow(other, roleOW, PermMoveMembers, 0)},
			PermViewChannel | PermConnect | PermSpeak | PermManageChannels},
	}
	for _, c := range cases {
		got := categoryPermissions(guild, bot, c.roles, []string{botRole}, &discordgo.Channel{ID: "9", PermissionOverwrites: c.overwrites})
		if got != c.want {
			t.Errorf("%s: permissions %b, want %b", c.name, got, c.want)
		}
	}
	rep := permissionReport(PermViewChannel|PermConnect|PermSpeak, bot, "9")
	if len(rep.Missing) != 2 || !strings.HasPrefix(rep.Missing[0], "Manage Channels") || !strings.HasPrefix(rep.Missing[1], "Move Members") ||
		!strings.Contains(rep.Fix, "Manage Channels, Move Members") || !strings.Contains(rep.Fix, InviteURL(bot)) {
		t.Fatalf("report %+v", rep)
	}
	if got := InviteURL("42"); got != "https://discord.com/oauth2/authorize?client_id=42&scope=bot&permissions=19923984" {
		t.Fatalf("invite URL %s", got)
	}
	if rep := permissionReport(-1, bot, "9"); len(rep.Missing) != 0 || rep.Fix != "" {
		t.Fatalf("administrator report %+v", rep)
	}
}
