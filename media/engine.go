package media

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Codec and header-extension choices shared by every browser connection.
const (
	// opusPayloadType is the payload type browsers use for Opus by default.
	opusPayloadType = 111
	// vp8PayloadType is the payload type offered for VP8.
	vp8PayloadType = 96
	// audioLevelURI is the RFC 6464 client-to-mixer audio level extension.
	audioLevelURI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
	// absSendTimeURI is the abs-send-time extension of WebRTC's
	// receive-side bandwidth estimation.
	absSendTimeURI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
	// opusFrameTicks is one 20 ms Opus frame at the 48 kHz RTP clock.
	opusFrameTicks = 960
)

// opusCapability is the Opus codec as negotiated with browsers: stereo
// 48 kHz, in-band FEC on (RFC 7587 §6.1 useinbandfec).
var opusCapability = webrtc.RTPCodecCapability{
	MimeType:     webrtc.MimeTypeOpus,
	ClockRate:    48000,
	Channels:     2,
	SDPFmtpLine:  "minptime=10;useinbandfec=1",
	RTCPFeedback: []webrtc.RTCPFeedback{{Type: webrtc.TypeRTCPFBTransportCC}},
}

// vp8Capability is VP8 with the feedback browsers expect from an SFU.
var vp8Capability = webrtc.RTPCodecCapability{
	MimeType:  webrtc.MimeTypeVP8,
	ClockRate: 90000,
	RTCPFeedback: []webrtc.RTCPFeedback{
		{Type: webrtc.TypeRTCPFBGoogREMB},
		{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"},
		{Type: webrtc.TypeRTCPFBNACK},
		{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
		{Type: webrtc.TypeRTCPFBTransportCC},
	},
}

// headerExtensions are the RTP header extensions negotiated with browsers,
// in the order that numbers them like Chromium does.
var headerExtensions = []struct {
	uri   string
	kinds []webrtc.RTPCodecType
}{
	{audioLevelURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio}},                                // 1, RFC 6464
	{absSendTimeURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo}},     // 2
	{sdp.TransportCCURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo}}, // 3, draft-holmer-rmcat-transport-wide-cc-extensions-01
	{sdp.SDESMidURI, []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo}},     // 4, RFC 8843 §15.2
}

// newMediaEngine registers the codecs and header extensions every browser
// connection negotiates.
func newMediaEngine() (*webrtc.MediaEngine, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: opusCapability, PayloadType: opusPayloadType,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("register opus: %w", err)
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: vp8Capability, PayloadType: vp8PayloadType,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, fmt.Errorf("register vp8: %w", err)
	}
	// Pion numbers header extensions 1, 2, 3... in the order they are first
	// registered, across both kinds, and reuses an id when a URI is
	// registered again. Registering these four first gives Chromium's
	// default ids (1 audio level, 2 abs-send-time, 3 transport-cc, 4 mid),
	// so offers from either side agree; RegisterDefaultInterceptors adds
	// rid and repaired-rid (video) after them.
	for _, e := range headerExtensions {
		for _, kind := range e.kinds {
			if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: e.uri}, kind); err != nil {
				return nil, fmt.Errorf("register header extension %s: %w", e.uri, err)
			}
		}
	}
	return me, nil
}

// engine is the one webrtc.API the manager builds and what it must close.
type engine struct {
	api    *webrtc.API
	mux    ice.UDPMux // nil unless Options.ICEUDPListen is set
	tcpMux ice.TCPMux // nil unless Options.ICETCPListen is set
	// inlineWrites: inline writes are possible at all, through the
	// batched mux socket; each session decides for its own candidate pair
	// (inlinePair).
	inlineWrites bool
	batch        *batchConn // the mux's socket; nil without the mux
}

// newEngine builds the API: media engine, default interceptors (NACK
// generator and responder, RTCP sender and receiver reports, TWCC
// feedback) and the SettingEngine tuned from opts.
func newEngine(opts *Options, log *slog.Logger) (*engine, error) {
	me, err := newMediaEngine()
	if err != nil {
		return nil, err
	}
	reg, err := newInterceptors(me)
	if err != nil {
		return nil, err
	}

	se := webrtc.SettingEngine{}
	loggers := pionLoggers{log: log}
	se.LoggerFactory = loggers
	// Browsers often hide host addresses behind mDNS names; the server
	// does not resolve them (peer-reflexive candidates cover that case),
	// and leaving mDNS off keeps the server off the multicast group.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	networks := opts.NetworkTypes
	if len(networks) == 0 {
		networks = []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
		if opts.ICETCPListen != "" {
			networks = append(networks, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
		}
	}
	se.SetNetworkTypes(networks)
	if opts.IPFilter != nil {
		se.SetIPFilter(opts.IPFilter)
	}
	if opts.InterfaceFilter != nil {
		se.SetInterfaceFilter(opts.InterfaceFilter)
	}
	se.SetIncludeLoopbackCandidate(opts.IncludeLoopback)
	if len(opts.PublicIPs) > 0 {
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        opts.PublicIPs,
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			return nil, fmt.Errorf("%w: PublicIPs: %w", ErrInvalidOptions, err)
		}
	}
	// The session removes a browser that stays disconnected for
	// ICEFailTimeout; pion must notice "disconnected" well before that.
	disconnected := min(5*time.Second, opts.ICEFailTimeout/2)
	se.SetICETimeouts(disconnected, 25*time.Second, min(2*time.Second, disconnected/2))

	var mux ice.UDPMux
	var batch *batchConn
	if opts.ICEUDPListen != "" {
		conn, err := net.ListenPacket("udp", opts.ICEUDPListen)
		if err != nil {
			return nil, fmt.Errorf("%w: ICEUDPListen %q: %w", ErrInvalidOptions, opts.ICEUDPListen, err)
		}
		// Every browser's media leaves through this socket: batch its sends.
		batch = newBatchConn(conn.(*net.UDPConn), batchMaxPending, log)
		mux = webrtc.NewICEUDPMux(loggers.NewLogger("ice"), batch)
		se.SetICEUDPMux(mux)
		logOffered(log, opts, mux)
	}

	tcpMux, err := listenICETCP(&se, opts.ICETCPListen, loggers, log)
	if err != nil {
		if mux != nil {
			_ = mux.Close()
		}
		return nil, err
	}

	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg),
		webrtc.WithSettingEngine(se))
	return &engine{api: api, mux: mux, tcpMux: tcpMux, batch: batch, inlineWrites: batch != nil}, nil
}

// close releases the shared UDP socket and TCP listener.
func (e *engine) close() error {
	var errs []error
	if e.mux != nil {
		errs = append(errs, e.mux.Close())
	}
	if e.tcpMux != nil {
		errs = append(errs, e.tcpMux.Close())
	}
	return errors.Join(errs...)
}
