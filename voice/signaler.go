package voice

import (
	"context"
)

// VoiceUpdate is one of the bot's own voice events for a guild, as the
// main gateway reports them (Discord docs, Voice Connections, Retrieving
// Voice Server Information).
type VoiceUpdate struct {
	// SessionID and ChannelID come from the bot's VOICE_STATE_UPDATE
	// (Server false); ChannelID "" means the bot left voice.
	SessionID string
	ChannelID string
	// Server is true for VOICE_SERVER_UPDATE, which sets Token and Endpoint.
	Server bool
	Token  string
	// Endpoint is host:port without scheme; EndpointNull means Discord is
	// reallocating the voice server: wait for the next update.
	Endpoint     string
	EndpointNull bool
}

// Signaler is the part of the main gateway the voice client needs:
// sending op 4 and hearing the bot's own voice updates. The main gateway client
// implements it (through a small adapter in cmd/bridge).
type Signaler interface {
	// UpdateVoiceState sends op 4; channelID "" leaves voice (null).
	UpdateVoiceState(ctx context.Context, guildID, channelID string, selfMute, selfDeaf bool) error
	// SubscribeVoice delivers the bot's voice updates for guildID until
	// the returned function is called.
	SubscribeVoice(guildID string) (<-chan VoiceUpdate, func())
}
