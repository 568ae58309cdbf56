package main

import (
	"context"
	"sync"

	"github.com/voicebridge/bridge/gateway"
	"github.com/voicebridge/bridge/voice"
)

// voiceSignaler presents the main gateway client as the voice client's
// Signaler: the two packages declare their own voice update type, so
// voice does not depend on gateway.
type voiceSignaler struct{ gw *gateway.Client }

var _ voice.Signaler = voiceSignaler{}

func (s voiceSignaler) UpdateVoiceState(ctx context.Context, guildID, channelID string, selfMute, selfDeaf bool) error {
	return s.gw.UpdateVoiceState(ctx, guildID, channelID, selfMute, selfDeaf)
}

// SubscribeVoice relays the gateway's updates for guildID, converted, until
// the returned function is called or the gateway client closes; then the
// channel closes and the relay goroutine has ended or is ending.
func (s voiceSignaler) SubscribeVoice(guildID string) (<-chan voice.VoiceUpdate, func()) {
	in, unsub := s.gw.SubscribeVoice(guildID)
	out := make(chan voice.VoiceUpdate, cap(in))
	done := make(chan struct{})
	go func() {
		defer close(out)
		for {
			select {
			case u, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- voice.VoiceUpdate(u):
				case <-done:
					return
				}
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return out, func() {
		once.Do(func() {
			close(done)
			unsub()
		})
	}
}
