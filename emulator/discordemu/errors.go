package discordemu

import "errors"

// Sentinel errors returned by the Server's control methods. They are wrapped
// with %w and a description of the offending value; test with errors.Is.
var (
	// ErrInvalidOptions means Start was given options it cannot serve, such
	// as a non-numeric snowflake or a negative interval.
	ErrInvalidOptions = errors.New("discordemu: invalid options")

	// ErrClosed means the Server has been closed.
	ErrClosed = errors.New("discordemu: server closed")

	// ErrUnknownMember means the user is not a member of the emulated guild;
	// add it with AddMember first.
	ErrUnknownMember = errors.New("discordemu: unknown guild member")

	// ErrUnknownGuild means no emulated guild has that id (Discord's error
	// 10004).
	ErrUnknownGuild = errors.New("discordemu: unknown guild")
	// ErrUnknownChannel means no channel has that id (Discord's error 10003).
	ErrUnknownChannel = errors.New("discordemu: unknown channel")

	// ErrNotVoiceChannel means the channel exists but is not a voice (2) or
	// stage (13) channel, so nobody can be in it.
	ErrNotVoiceChannel = errors.New("discordemu: not a voice channel")
	// ErrNotInVoice means the bot is in no voice channel of the guild.
	ErrNotInVoice = errors.New("discordemu: the bot is not in a voice channel")

	// ErrInvalidChannel means a channel definition breaks Discord's rules
	// for Create Guild Channel (name length, type, bitrate, user limit,
	// parent); the wrapped text names the field.
	ErrInvalidChannel = errors.New("discordemu: invalid channel")

	// ErrMaxChannels means the guild already has 500 channels (Discord's
	// error 30013).
	ErrMaxChannels = errors.New("discordemu: maximum number of guild channels reached (500)")
)
