package gateway

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/bwmarrin/discordgo"
)

// frame is a gateway payload (Discord docs, Gateway Events, Payload
// Structure): {op, d, s, t}. s and t are set on dispatches only.
type frame struct {
	Op int
	D  json.RawMessage
	S  int64
	T  string
}

// decodeFrame parses one gateway text message.
func decodeFrame(b []byte) (frame, error) {
	var raw struct {
		Op *int            `json:"op"`
		D  json.RawMessage `json:"d"`
		S  *int64          `json:"s"`
		T  *string         `json:"t"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return frame{}, fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	if raw.Op == nil {
		return frame{}, fmt.Errorf("%w: no op field", ErrBadPayload)
	}
	f := frame{Op: *raw.Op, D: raw.D}
	if f.Op == opDispatch {
		if raw.T == nil || *raw.T == "" {
			return frame{}, fmt.Errorf("%w: dispatch without t", ErrBadPayload)
		}
		if raw.S == nil || *raw.S <= 0 {
			return frame{}, fmt.Errorf("%w: dispatch %s without a positive s", ErrBadPayload, *raw.T)
		}
		f.T, f.S = *raw.T, *raw.S
	}
	return f, nil
}

// helloData is op 10's d.
type helloData struct {
	HeartbeatInterval int64 `json:"heartbeat_interval"`
}

// maxHeartbeatInterval bounds what a server may ask for; Discord sends
// 41250 ms.
const maxHeartbeatInterval = 10 * time.Minute

func decodeHello(d json.RawMessage) (time.Duration, error) {
	var h helloData
	if err := json.Unmarshal(d, &h); err != nil {
		return 0, fmt.Errorf("%w: hello: %v", ErrBadPayload, err)
	}
	iv := time.Duration(h.HeartbeatInterval) * time.Millisecond
	if h.HeartbeatInterval <= 0 || iv > maxHeartbeatInterval {
		return 0, fmt.Errorf("%w: hello heartbeat_interval %d ms out of range", ErrBadPayload, h.HeartbeatInterval)
	}
	return iv, nil
}

// readyData is the part of READY the client keeps (Gateway Events, Ready).
type readyData struct {
	SessionID        string `json:"session_id"`
	ResumeGatewayURL string `json:"resume_gateway_url"`
	User             struct {
		ID string `json:"id"`
	} `json:"user"`
	Guilds []struct {
		ID string `json:"id"`
	} `json:"guilds"`
}

func decodeReady(d json.RawMessage) (readyData, error) {
	var r readyData
	if err := json.Unmarshal(d, &r); err != nil {
		return r, fmt.Errorf("%w: READY: %v", ErrBadPayload, err)
	}
	if r.SessionID == "" {
		return r, fmt.Errorf("%w: READY without session_id", ErrBadPayload)
	}
	return r, nil
}

// guildCreateData is the part of GUILD_CREATE the client keeps.
type guildCreateData struct {
	ID          string                  `json:"id"`
	Name        string                  `json:"name"`
	Unavailable bool                    `json:"unavailable"`
	Channels    []*discordgo.Channel    `json:"channels"`
	Roles       []*discordgo.Role       `json:"roles"`
	Members     []*discordgo.Member     `json:"members"`
	VoiceStates []*discordgo.VoiceState `json:"voice_states"`
}

func decodeGuildCreate(d json.RawMessage) (guildCreateData, error) {
	var g guildCreateData
	if err := json.Unmarshal(d, &g); err != nil {
		return g, fmt.Errorf("%w: GUILD_CREATE: %v", ErrBadPayload, err)
	}
	if g.ID == "" {
		return g, fmt.Errorf("%w: GUILD_CREATE without id", ErrBadPayload)
	}
	return g, nil
}

func decodeChannel(t string, d json.RawMessage) (*discordgo.Channel, error) {
	var ch discordgo.Channel
	if err := json.Unmarshal(d, &ch); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadPayload, t, err)
	}
	if ch.ID == "" {
		return nil, fmt.Errorf("%w: %s without id", ErrBadPayload, t)
	}
	return &ch, nil
}

func decodeVoiceState(d json.RawMessage) (*discordgo.VoiceState, error) {
	var vs discordgo.VoiceState
	if err := json.Unmarshal(d, &vs); err != nil {
		return nil, fmt.Errorf("%w: VOICE_STATE_UPDATE: %v", ErrBadPayload, err)
	}
	if vs.UserID == "" {
		return nil, fmt.Errorf("%w: VOICE_STATE_UPDATE without user_id", ErrBadPayload)
	}
	return &vs, nil
}

// voiceServerData is VOICE_SERVER_UPDATE (Gateway Events, Voice Server
// Update); endpoint is a pointer because null means "being reallocated".
type voiceServerData struct {
	Token    string  `json:"token"`
	GuildID  string  `json:"guild_id"`
	Endpoint *string `json:"endpoint"`
}

func decodeVoiceServer(d json.RawMessage) (voiceServerData, error) {
	var v voiceServerData
	if err := json.Unmarshal(d, &v); err != nil {
		return v, fmt.Errorf("%w: VOICE_SERVER_UPDATE: %v", ErrBadPayload, err)
	}
	if v.GuildID == "" {
		return v, fmt.Errorf("%w: VOICE_SERVER_UPDATE without guild_id", ErrBadPayload)
	}
	return v, nil
}

func decodeInvalidSession(d json.RawMessage) bool {
	var resumable bool
	// Anything but true (absent, null, garbage) means "not resumable".
	_ = json.Unmarshal(d, &resumable)
	return resumable
}

// Outgoing payloads.

type outFrame struct {
	Op int `json:"op"`
	D  any `json:"d"`
}

type identifyData struct {
	Token      string             `json:"token"`
	Intents    int                `json:"intents"`
	Properties identifyProperties `json:"properties"`
	// Shard is [shard_id, num_shards]; absent for one shard.
	Shard *[2]int `json:"shard,omitempty"`
}

type identifyProperties struct {
	OS      string `json:"os"`
	Browser string `json:"browser"`
	Device  string `json:"device"`
}

type resumeData struct {
	Token     string `json:"token"`
	SessionID string `json:"session_id"`
	Seq       int64  `json:"seq"`
}

type voiceStateData struct {
	GuildID   string  `json:"guild_id"`
	ChannelID *string `json:"channel_id"`
	SelfMute  bool    `json:"self_mute"`
	SelfDeaf  bool    `json:"self_deaf"`
}

// heartbeatFrame is op 1 with the last sequence, or null before the first
// dispatch (Gateway, Sending Heartbeats).
func heartbeatFrame(seq int64) outFrame {
	if seq <= 0 {
		return outFrame{Op: opHeartbeat, D: nil}
	}
	return outFrame{Op: opHeartbeat, D: seq}
}
