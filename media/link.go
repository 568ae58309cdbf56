package media

import (
	"context"
	"time"
)

// The seam between Discord and browsers: what media needs from a voice
// connection ([DiscordLink]) and from whatever makes one ([Joiner]). The
// voice side implements it; cmd only wires the two together.

// Joiner connects the bot to a Discord voice channel.
type Joiner interface {
	// Join makes the bot join channelID of guildID and returns the live
	// link; ctx bounds the join and is cancelled when the room lets go.
	// An error wrapping [ErrNoFreeBot] makes the room wait in line for a
	// bot (see Options.Links) instead of retrying.
	Join(ctx context.Context, guildID, channelID string) (DiscordLink, error)
}

// DiscordLink is the Discord leg of a room: one voice connection.
type DiscordLink interface {
	// Receive returns the next thing the call has for media, in the order
	// it happened: a [DiscordFrame], a [UserLeft] or a [PrivacyCode]. It
	// returns ctx's error when ctx ends first (the link goes on), and an
	// error wrapping [ErrLinkEnded] once the voice connection ended, after
	// which nothing more comes. One goroutine of the room calls it.
	Receive(ctx context.Context) (LinkEvent, error)
	// SendOpus sends one 20 ms Opus frame toward Discord; the link keeps
	// its own sequence numbers, timestamps and silence frames.
	SendOpus(frame []byte) error
	// SendVP8 sends one VP8 frame; it may fail (Discord refuses bot video),
	// after which media stops offering video to this link.
	SendVP8(frame []byte, keyframe bool) error
	// Close leaves the voice channel.
	Close(ctx context.Context) error
}

// LinkEvent is what [DiscordLink.Receive] returns: a [DiscordFrame], a
// [UserLeft] or a [PrivacyCode].
type LinkEvent interface{ linkEvent() }

// FrameKind says whether a DiscordFrame carries audio or video.
type FrameKind int

// Frame kinds.
const (
	// FrameAudio is one 20 ms Opus frame.
	FrameAudio FrameKind = iota
	// FrameVideo is one VP8 frame.
	FrameVideo
)

// DiscordFrame is one codec frame received from a Discord user.
type DiscordFrame struct {
	// UserID is the Discord user who sent the frame.
	UserID string
	// Kind is audio (Opus) or video (VP8).
	Kind FrameKind
	// Payload is the codec frame; the receiver of the frame owns it.
	Payload []byte
	// Missing is how many frames of this user were lost before this one.
	Missing int
	// Keyframe marks a VP8 keyframe.
	Keyframe bool
	// Received is when the frame reached the bridge (the voice client's
	// UDP read); zero means when media takes it from Receive.
	Received time.Time
}

// UserLeft says a Discord user left the voice channel (voice gateway op
// 13, Client Disconnect): their tracks are removed from every browser.
type UserLeft struct {
	UserID string
}

// PrivacyCode is the call's new voice privacy code: DAVE's displayable
// code that people in the call compare, "" when the call is not
// end-to-end encrypted. Browsers get it in "joined" and in a "privacy"
// message on every change; it is cleared when the link ends.
type PrivacyCode struct {
	Code string
}

func (DiscordFrame) linkEvent() {}
func (UserLeft) linkEvent()     {}
func (PrivacyCode) linkEvent()  {}
