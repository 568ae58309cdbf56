// Package media is the WebRTC side of the bridge: rooms in which browsers,
// connected with pion/webrtc, meet the people of one Discord voice channel.
//
// # Rooms
//
// A room is a Discord voice channel (its id is the channel id) plus the
// browsers that joined it. Browsers signal over the hub's WebSocket
// (see signaling.go for the protocol); the hub hands each message to
// [Manager.HandleSignal] and reports a closed socket with
// [Manager.PeerClosed]. Each browser gets one PeerConnection, built from a
// single [webrtc.API] (engine.go: Opus PT 111 with in-band FEC, VP8 PT 96
// with NACK, PLI, FIR, REMB and transport-cc feedback; the interceptors
// whose output is used, interceptors.go: NACK responder and generator,
// RTCP reports, transport-cc feedback, not pion's stats recorder). Header extensions carry Chromium's default ids (1 audio
// level, RFC 6464; 2 abs-send-time; 3 transport-wide-cc; 4 mid), so the
// server's offers and the browser's agree.
//
// A joining browser's first message is "joined" (participants, ICE
// servers, the voice privacy code); the session makes no offer before it
// is sent.
//
// # Media paths
//
//   - Browser to browser (an SFU): every track a browser publishes is
//     forwarded, RTP packet by RTP packet, to the other browsers of the
//     room. Each subscriber gets its own TrackLocalStaticRTP per forwarded
//     track. A browser whose selected ICE candidate pair is on the shared
//     UDP socket is written by the forwarding goroutine itself, and the
//     copies leave in one sendmmsg (batchconn.go): those writes end in a
//     queue append and cannot block. Any other browser (ICE-TCP, whose
//     writes can block on a slow peer; a TURN relay; no pair selected yet)
//     has its own bounded send queue served by one writer goroutine, so a
//     slow browser drops its own packets and never stalls the others. A
//     browser switches as its pair changes (ICE restart), its queue
//     drained first, so no packet is lost, doubled or reordered.
//     A picture loss indication from a subscriber is relayed to the
//     publisher; a newly bound video subscriber triggers one too, so it
//     gets a keyframe at once.
//   - Discord to browsers: each Discord user's audio becomes its own track
//     in every browser (stream "discord-<userId>", track
//     "discord-audio-<userId>"). The Opus payload is forwarded untouched;
//     sequence numbers stay contiguous and the timestamp advances 960 per
//     20 ms frame plus 960 per frame the link reports missing.
//   - Discord video to browsers: a Discord user's VP8 frames (assembled by
//     the voice client) become a second track in the user's stream
//     ("discord-video-<userId>"), from the user's first keyframe on,
//     repacketized (RFC 7741, pion's VP8 payloader, 1200-byte payloads,
//     marker on a frame's last packet) with a 90 kHz timestamp from the
//     monotonic arrival time, through the same per-browser queues. A
//     browser's keyframe request (PLI, FIR) cannot reach a Discord sender
//     and none is sent upstream: a newly bound browser's track stays silent
//     until the sender's next keyframe begins (the writer holds it back;
//     delta frames would not decode), and a browser that lost the picture
//     recovers at that keyframe too. A user's tracks go away when the link
//     reports them leaving ([UserLeft]) or the link ends.
//   - Browsers to Discord: the bot has one audio stream. With
//     [Options.Mix] it is a mix (mix.go): each browser's Opus goes through
//     a bounded queue to the room's mixer goroutine, into the browser's
//     jitter buffer (jitter.go: reordering, an adaptive bounded delay,
//     concealment that repeats the last period and fades, drift merged or
//     stretched away), is decoded with pion/opus, and the loudest
//     speakers (MaxSpeakers) are summed with their gains through a
//     limiter and encoded once per 20 ms of the mixer's own clock, then
//     handed to [DiscordLink.SendOpus]. Nobody speaking, nothing is sent
//     (the link sends its silence frames); each talk spurt begins with
//     one encoded silent frame, so the link's pacer holds a frame in
//     hand. Discord audio never enters the mix. Without a mix the loudest
//     browser (from the audio-level extension, with hysteresis: a
//     challenger must be louder for 300 ms and the current speaker is held
//     for at least 500 ms, speaker.go) is forwarded as is, without
//     transcoding. Either way the speaker choice names the browser
//     shown speaking, and the active speaker's VP8 frames are
//     reassembled and offered to [DiscordLink.SendVP8]; a link that refuses
//     video (real Discord refuses bot video) is not asked again.
//
// # Discord link lifecycle
//
// The seam to Discord is link.go: a [Joiner] makes a [DiscordLink], whose
// Receive hands the room, through one path and in order, what the call
// has for it: [DiscordFrame]s, [UserLeft] and the call's [PrivacyCode]
// (DAVE's displayable code, "" when the call is not end-to-end
// encrypted). Browsers get the code in "joined" and in a "privacy"
// message on every change; it is cleared when the link ends.
//
// The first browser to join a room makes the bot join the voice channel
// ([Joiner.Join]); when the last browser leaves, the link is closed after
// [Options.Grace]. A link that fails or ends is rejoined with capped
// exponential backoff, and browsers are told with "status" messages
// (connecting, connected, reconnecting, unavailable).
//
// Discord allows a bot at most one voice connection per guild ("A bot is in
// at most one voice channel per guild", voice-connections in Discord's
// developer documentation). The manager therefore lets as many rooms of
// the guild hold a link at once as the guild has bots (Options.Links; one
// without it). Browsers of a room beyond that still meet each other
// (browser to browser only) and are told "discord":"unavailable" with a
// message naming the rooms that hold the bots and saying they will be
// bridged when one frees; when a room lets its link go (its grace period
// ended) or a bot is added (LinksChanged), the room that has waited
// longest takes it. A bridge of several guilds says which guild each room
// is in (Options.GuildOf): links, the line and the Joiner's guild are the
// room's guild's.
//
// # Concurrency
//
// Each room has one goroutine that owns its state (room.go): the browsers
// in it and what each receives, the published tracks, the Discord users
// heard, the speaker choice, the Discord link's lifecycle and the grace
// timer. Signaling, the sessions' goroutines, the link and the manager
// post actions to its mailbox (an unbounded queue, so posting never
// blocks) and wait for the outcome only when they need it; a new kind of
// change is a new action type. Nothing in media calls a callback or does
// I/O while holding a lock; the manager's lock guards only its registry
// (which rooms and sessions exist, which room holds the guild's voice
// link).
//
// The media path does not go through the room's goroutine. A publisher's
// reader forwards each packet through the track's fanout, a copy-on-write
// list of subscribers that only the room's goroutine changes, and reads
// the forwarded speaker and the link's send queue from one atomically
// replaced route; audio levels reach the speaker choice through a bounded
// queue that drops when full. The link's reader forwards Discord frames
// the same way and waits for the room only when a user or a user's video
// first appears, so that the browsers are subscribed before the first
// frame.
//
// Each browser session has one goroutine that owns its PeerConnection's
// signaling (offers, answers, its own candidates, adding and removing the
// tracks the room chose), one writer goroutine draining its media queue
// (unless writes are inline),
// a reader per published track and an RTCP reader per sender. A room's
// Discord link has one goroutine that joins, rejoins and reads it, and
// one that writes to it. Every goroutine is tracked by a WaitGroup of its
// owner; [Manager.Close] stops them all and waits.
package media
