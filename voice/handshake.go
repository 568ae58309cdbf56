package voice

import (
	"context"
	"fmt"

	"github.com/gorilla/websocket"
)

// Each new session gets a new DAVE session (a new MLS group membership);
// a resume keeps it.
func (c *Conn) connectNew(ctx context.Context) error {
	if err := c.newDAVESession(); err != nil {
		return err
	}
	g, err := dialGateway(ctx, c.creds.endpoint, c.opts.TLSConfig, c.opts.NetDial, -1, c.log)
	if err != nil {
		c.dropDAVESession()
		return err
	}
	tr, err := c.handshake(ctx, g)
	if err != nil {
		g.close(websocket.CloseNormalClosure)
		c.dropDAVESession()
		return err
	}
	c.gw, c.tr, c.lastSeq = g, tr, -1
	c.gwPtr.Store(g)
	c.trPtr.Store(tr)
	tr.start(c.rx)
	c.notePrivacyCode()
	return nil
}

// handshake runs Identify through Session Description on g.
func (c *Conn) handshake(ctx context.Context, g *gatewayConn) (*transport, error) {
	id := identifyData{
		ServerID:               c.guildID,
		UserID:                 c.opts.UserID,
		SessionID:              c.creds.sessionID,
		Token:                  c.creds.token,
		MaxDAVEProtocolVersion: c.maxDAVEVersion(),
	}
	if c.opts.Video {
		// Undocumented (docs/discord-protocol.md, "Video over the voice
		// connection"): only for servers known to accept it.
		id.Video, id.Streams = true, []streamSpec{{Type: "video", RID: "100", Quality: 100}}
	}
	err := g.send(OpIdentify, id)
	if err != nil {
		return nil, err
	}
	var ready readyData
	if err := c.awaitOp(ctx, g, OpReady, &ready); err != nil {
		return nil, err
	}
	mode, err := SelectMode(ready.Modes)
	if err != nil {
		return nil, err
	}
	tr, err := newTransport(c, ready, mode)
	if err != nil {
		return nil, err
	}
	ext, err := tr.discover(ctx)
	if err != nil {
		tr.close()
		return nil, err
	}
	err = g.send(OpSelectProtocol, selectProtocolData{
		Protocol: "udp",
		Data:     selectProtocolAddr{Address: ext.Addr().String(), Port: int(ext.Port()), Mode: string(mode)},
		Codecs:   c.codecs(),
	})
	if err != nil {
		tr.close()
		return nil, err
	}
	var sd sessionDescriptionData
	if err := c.awaitOp(ctx, g, OpSessionDescription, &sd); err != nil {
		tr.close()
		return nil, err
	}
	if Mode(sd.Mode) != mode {
		tr.close()
		return nil, fmt.Errorf("voice: selected %s, session description says %q: %w", mode, sd.Mode, ErrHandshake)
	}
	key, err := sd.key()
	if err == nil {
		err = tr.setKey(key)
	}
	if err == nil {
		err = c.startDAVE(g, tr, sd.DAVEProtocolVersion)
	}
	if err != nil {
		tr.close()
		return nil, err
	}
	c.log.Info("voice connected", "mode", mode, "ssrc", ready.SSRC, "dave_protocol_version", sd.DAVEProtocolVersion)
	return tr, nil
}

// awaitOp waits (handshake timeout) for op, handling other messages on
// the way, and decodes its data into v.
func (c *Conn) awaitOp(ctx context.Context, g *gatewayConn, op Opcode, v any) error {
	ctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	for {
		m, err := g.next(ctx)
		if err != nil {
			return fmt.Errorf("voice: waiting for op %d: %w", op, err)
		}
		if m.Op != op || m.Binary != nil {
			c.handle(g, m)
			continue
		}
		if v == nil {
			return nil
		}
		return decodeData(m, v)
	}
}

// resume reconnects to the same endpoint and sends Resume (op 7) with
// the last seq seen; the server answers Resumed (op 9) and replays what
// we missed, which run then handles (Discord voice docs, "Buffered
// Resume").
func (c *Conn) resume(ctx context.Context) error {
	g, err := dialGateway(ctx, c.creds.endpoint, c.opts.TLSConfig, c.opts.NetDial, c.lastSeq, c.log)
	if err != nil {
		return err
	}
	err = g.send(OpResume, resumeData{ServerID: c.guildID, SessionID: c.creds.sessionID, Token: c.creds.token, SeqAck: c.lastSeq})
	if err == nil {
		err = c.awaitOp(ctx, g, OpResumed, nil)
	}
	if err != nil {
		c.lastSeq = g.lastSeq.Load()
		g.close(websocket.CloseNormalClosure)
		return err
	}
	c.gw = g
	c.gwPtr.Store(g)
	return nil
}

// codecs is Select Protocol's undocumented codecs list: sent only with
// Options.Video, as Discord documents none.
func (c *Conn) codecs() []codecSpec {
	if !c.opts.Video {
		return nil
	}
	return ourCodecs()
}
