package voice

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// Options configures a Client.
type Options struct {
	// Signaler sends op 4 and delivers the bot's voice updates. Required.
	Signaler Signaler
	// UserID is the bot's user id. Required; with DAVE on it must be a
	// decimal snowflake, as it is the MLS credential's identity.
	UserID string
	// TLSConfig for the voice websocket; nil uses the system roots.
	TLSConfig *tls.Config
	// Logger; nil discards. The client adds component=voice and, per
	// connection, guild_id and channel_id.
	Logger *slog.Logger
	// JoinTimeout bounds waiting for the voice updates after op 4.
	// Default 10 s.
	JoinTimeout time.Duration
	// DisableDAVE turns end-to-end encryption off: Identify advertises
	// max_dave_protocol_version 0 and DAVE messages are ignored. By
	// default the client offers dave.ProtocolVersion and runs a
	// dave.Session per voice session (see doc.go, "DAVE").
	DisableDAVE bool
	// Encryptor and Decryptor, when set, transform codec frames in place
	// of the DAVE session (each for its own direction): they take
	// precedence, and the DAVE session still runs the gateway protocol
	// unless DisableDAVE is set. A custom Encryptor carries the duty
	// never to send plaintext while DAVE is in force. Without them and
	// with DAVE off, frames pass through unchanged.
	Encryptor FrameEncryptor
	Decryptor FrameDecryptor
	// Video sends the undocumented video fields (Identify video and
	// streams, Select Protocol codecs), op 12 and VP8: only for a voice
	// server known to accept them, such as the embedded emulator. Discord
	// discards bot video, and an undocumented field could one day earn a
	// close, so by default the client sends audio only and SendVP8 fails
	// with ErrVideoOff.
	Video bool
	// SelfMute and SelfDeaf go into op 4.
	SelfMute, SelfDeaf bool
	// NetDial dials the websocket's TCP connection; nil uses net.Dialer.
	NetDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// DialUDP opens the media socket to the voice server; nil uses
	// net.DialUDP.
	DialUDP func(raddr *net.UDPAddr) (*net.UDPConn, error)
	// ServerUpdateWait is how long a connection closed with 4014 waits for
	// a voice update before it starts a new session: Discord closes with
	// 4014 when the bot was removed (a voice state with a null channel
	// follows) and also when it moved the bot or its voice server (a
	// server update follows). Default 2 s.
	ServerUpdateWait time.Duration
	// MaxReconnects bounds consecutive recovery attempts after a lost
	// connection (the first half resume, the rest start new sessions)
	// before the connection stops with an error. Default 5.
	MaxReconnects int
}

// Client joins voice channels through a Signaler.
type Client struct {
	opts Options
	log  *slog.Logger
}

// NewClient returns a Client; Join reports missing options.
func NewClient(opts Options) *Client {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.JoinTimeout <= 0 {
		opts.JoinTimeout = 10 * time.Second
	}
	if opts.ServerUpdateWait <= 0 {
		opts.ServerUpdateWait = 2 * time.Second
	}
	if opts.MaxReconnects <= 0 {
		opts.MaxReconnects = 5
	}
	if opts.DialUDP == nil {
		opts.DialUDP = func(raddr *net.UDPAddr) (*net.UDPConn, error) { return net.DialUDP("udp", nil, raddr) }
	}
	opts.Logger = opts.Logger.With("component", "voice")
	return &Client{opts: opts, log: opts.Logger}
}

// credentials are what the two voice updates give: enough to identify.
type credentials struct {
	sessionID, channelID, token, endpoint string
}

// Conn is a connection to one voice channel. Its goroutines: run (owns
// the gateway session and transport), the pacer (owns outgoing audio

const (
	eventBuffer = 256
	frameBuffer = 512
)

// Join sends op 4 for channelID, waits (JoinTimeout) for the bot's voice
// state and voice server updates, and connects: voice gateway handshake,
// UDP IP discovery, Select Protocol, Session Description (Discord voice
// docs, "Connecting to Voice").
func (c *Client) Join(ctx context.Context, guildID, channelID string) (*Conn, error) {
	switch {
	case c.opts.Signaler == nil:
		return nil, fmt.Errorf("voice: Options.Signaler is nil: %w", ErrOptions)
	case c.opts.UserID == "":
		return nil, fmt.Errorf("voice: Options.UserID is empty: %w", ErrOptions)
	case guildID == "" || channelID == "":
		return nil, fmt.Errorf("voice: Join needs a guild and a channel id: %w", ErrOptions)
	}
	updates, unsub := c.opts.Signaler.SubscribeVoice(guildID)
	log := c.log.With("guild_id", guildID, "channel_id", channelID)
	if err := c.opts.Signaler.UpdateVoiceState(ctx, guildID, channelID, c.opts.SelfMute, c.opts.SelfDeaf); err != nil {
		unsub()
		return nil, fmt.Errorf("voice: op 4 join: %w", err)
	}
	fail := func(err error) (*Conn, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
		defer cancel()
		if lerr := c.opts.Signaler.UpdateVoiceState(lctx, guildID, "", c.opts.SelfMute, c.opts.SelfDeaf); lerr != nil {
			log.Warn("op 4 leave after failed join", "err", lerr)
		}
		unsub()
		return nil, err
	}
	creds, err := awaitCredentials(ctx, updates, c.opts.JoinTimeout, credentials{})
	if err != nil {
		return fail(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	conn := &Conn{
		opts:     c.opts,
		log:      log,
		guildID:  guildID,
		updates:  updates,
		unsub:    unsub,
		creds:    creds,
		lastSeq:  -1,
		events:   make(chan Event, eventBuffer),
		frames:   make(chan Frame, frameBuffer),
		ssrcs:    make(map[uint32]ssrcOwner),
		cancel:   cancel,
		runDone:  make(chan struct{}),
		paceDone: make(chan struct{}),
	}
	conn.rx = newReceiver(conn)
	conn.sender = newSender(conn)
	conn.emit(StateChanged{StateConnecting})
	if err := conn.connectNew(ctx); err != nil {
		cancel()
		conn.teardown()
		return fail(err)
	}
	conn.emit(StateChanged{StateConnected})
	go conn.run(runCtx)
	go conn.sender.run(runCtx)
	return conn, nil
}

// awaitCredentials reads voice updates until it has a session id and a
// non-null endpoint, starting from have.
func awaitCredentials(ctx context.Context, updates <-chan VoiceUpdate, timeout time.Duration, have credentials) (credentials, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	var gotState, gotServer bool
	for !gotState || !gotServer {
		select {
		case u, ok := <-updates:
			if !ok {
				return have, fmt.Errorf("voice: voice update subscription closed: %w", ErrClosed)
			}
			if !u.Server {
				if u.ChannelID == "" {
					continue
				}
				have.sessionID, have.channelID, gotState = u.SessionID, u.ChannelID, true
				continue
			}
			if u.EndpointNull || u.Endpoint == "" {
				gotServer = false
				continue
			}
			have.token, have.endpoint, gotServer = u.Token, u.Endpoint, true
		case <-t.C:
			return have, fmt.Errorf("voice: state update %v, server update %v after %v: %w", gotState, gotServer, timeout, ErrJoinTimeout)
		case <-ctx.Done():
			return have, fmt.Errorf("voice: waiting for voice updates: %w", context.Cause(ctx))
		}
	}
	return have, nil
}

// Events delivers connection events; closed after the last one. Events
