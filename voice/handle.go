package voice

import (
	"github.com/voicebridge/bridge/voice/dave"
)

// handle applies one server message received on g.
func (c *Conn) handle(g *gatewayConn, m message) {
	if m.Binary != nil {
		c.handleDAVEBinary(g, m)
		return
	}
	switch m.Op {
	case OpSpeaking:
		var d speakingData
		if err := decodeData(m, &d); err != nil || d.UserID == "" {
			c.log.Warn("bad speaking message", "err", err)
			return
		}
		c.mapSSRC(d.UserID, Audio, d.SSRC)
		c.emit(Speaking{UserID: d.UserID, SSRC: d.SSRC, Speaking: d.Speaking != 0})
	case OpClientsConnect:
		var d clientsConnectData
		if err := decodeData(m, &d); err != nil {
			c.log.Warn("bad clients connect message", "err", err)
			return
		}
		for _, id := range d.UserIDs {
			c.emit(MemberJoined{UserID: id})
		}
		c.handleDAVEJSON(g, m)
	case OpClientDisconnect:
		var d clientDisconnectData
		if err := decodeData(m, &d); err != nil || d.UserID == "" {
			c.log.Warn("bad client disconnect message", "err", err)
			return
		}
		c.unmapUser(d.UserID)
		c.emit(MemberLeft(d))
		c.handleDAVEJSON(g, m)
	case OpVideo:
		var d videoData
		if err := decodeData(m, &d); err != nil || d.UserID == "" {
			c.log.Debug("ignoring op 12", "err", err)
			return
		}
		c.mapSSRC(d.UserID, Audio, d.AudioSSRC)
		c.mapSSRC(d.UserID, Video, d.VideoSSRC)
		for _, s := range d.Streams {
			c.mapSSRC(d.UserID, Video, s.SSRC)
		}
	case dave.OpPrepareTransition, dave.OpExecuteTransition, dave.OpPrepareEpoch:
		c.handleDAVEJSON(g, m)
	default:
		c.log.Debug("ignoring voice gateway message", "op", int(m.Op))
	}
}

func (c *Conn) mapSSRC(userID string, kind MediaKind, ssrc uint32) {
	if ssrc == 0 {
		return
	}
	c.users.Lock()
	c.ssrcs[ssrc] = ssrcOwner{userID: userID, kind: kind}
	c.users.Unlock()
	c.userGen.Add(1)
}

func (c *Conn) unmapUser(userID string) {
	c.users.Lock()
	for s, o := range c.ssrcs {
		if o.userID == userID {
			delete(c.ssrcs, s)
		}
	}
	c.users.Unlock()
	c.userGen.Add(1)
}

func (c *Conn) ssrcOwner(ssrc uint32) (ssrcOwner, bool) {
	c.users.RLock()
	defer c.users.RUnlock()
	o, ok := c.ssrcs[ssrc]
	return o, ok
}
