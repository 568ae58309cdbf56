package gateway

import (
	"context"
	"fmt"
	"sync"
)

// VoiceUpdate is one of the bot's own voice events for a guild, as the
// voice client needs them (Discord docs, Voice Connections, Retrieving
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

// voiceSubBuffer is how many updates a slow subscriber may lag behind;
// past it the oldest is dropped (the newest state is what matters).
const voiceSubBuffer = 16

type voiceSub struct {
	guildID string
	mu      sync.Mutex
	ch      chan VoiceUpdate
	closed  bool
}

// send delivers u without blocking: when the buffer is full the oldest
// update is dropped.
func (s *voiceSub) send(u VoiceUpdate) (dropped bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	for {
		select {
		case s.ch <- u:
			return dropped
		default:
		}
		select {
		case <-s.ch:
			dropped = true
		default:
		}
	}
}

func (s *voiceSub) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.ch)
	}
}

// SubscribeVoice returns the bot's VOICE_STATE_UPDATE and
// VOICE_SERVER_UPDATE for a guild, in order, and a cancel function that
// ends the subscription and closes the channel. The channel is also closed
// when the client closes. Subscribe before sending op 4, so no update is
// missed.
func (c *Client) SubscribeVoice(guildID string) (<-chan VoiceUpdate, func()) {
	s := &voiceSub{guildID: guildID, ch: make(chan VoiceUpdate, voiceSubBuffer)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		s.close()
		return s.ch, func() {}
	}
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	return s.ch, func() {
		c.mu.Lock()
		delete(c.subs, s)
		c.mu.Unlock()
		s.close()
	}
}

// publishVoice hands u to the guild's subscribers (called by the run
// goroutine; the list is copied so no client lock is held while sending).
func (c *Client) publishVoice(guildID string, u VoiceUpdate) {
	c.mu.Lock()
	var subs []*voiceSub
	for s := range c.subs {
		if s.guildID == guildID {
			subs = append(subs, s)
		}
	}
	c.mu.Unlock()
	for _, s := range subs {
		if s.send(u) {
			c.log.Warn("voice subscriber lagging: dropped its oldest update")
		}
	}
}

func (c *Client) closeSubs() {
	c.mu.Lock()
	subs := c.subs
	c.subs = make(map[*voiceSub]struct{})
	c.mu.Unlock()
	for s := range subs {
		s.close()
	}
}

// UpdateVoiceState sends Voice State Update (op 4, Gateway Events, Update
// Voice State): channelID "" leaves voice (channel_id null). It waits for
// a ready connection and for room in the gateway send limit (heartbeats'
// share stays reserved), bounded by ctx.
func (c *Client) UpdateVoiceState(ctx context.Context, guildID, channelID string, selfMute, selfDeaf bool) error {
	if guildID == "" {
		return fmt.Errorf("%w: UpdateVoiceState needs a guild id", ErrOptions)
	}
	c.mu.Lock()
	opened, closed := c.opened, c.closed
	c.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case !opened:
		return ErrNotOpen
	}
	d := voiceStateData{GuildID: guildID, SelfMute: selfMute, SelfDeaf: selfDeaf}
	if channelID != "" {
		d.ChannelID = &channelID
	}
	if err := c.limiter.wait(ctx); err != nil {
		return fmt.Errorf("gateway: op 4 waiting for the send limit: %w", err)
	}
	cmd := command{payload: outFrame{Op: opVoiceStateUpdate, D: d}, reply: make(chan error, 1)}
	select {
	case c.cmds <- cmd:
	case <-ctx.Done():
		return fmt.Errorf("gateway: op 4 waiting for a ready connection: %w", ctx.Err())
	case <-c.done:
		return ErrClosed
	}
	select {
	case err := <-cmd.reply:
		if err != nil {
			return fmt.Errorf("gateway: op 4: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("gateway: op 4: %w", ctx.Err())
	case <-c.done:
		return ErrClosed
	}
}
