package media

import (
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// loopRecorder is an interceptor that records what it was bound to.
type loopRecorder struct {
	interceptor.NoOp
	writers []interceptor.RTCPWriter
	streams []uint32
}

func (r *loopRecorder) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	r.writers = append(r.writers, w)
	return w
}

func (r *loopRecorder) BindRemoteStream(info *interceptor.StreamInfo, rd interceptor.RTPReader) interceptor.RTPReader {
	r.streams = append(r.streams, info.SSRC)
	return rd
}

type recorderFactory struct{ r *loopRecorder }

func (f recorderFactory) NewInterceptor(string) (interceptor.Interceptor, error) { return f.r, nil }

// A connection that only receives (sends) streams never starts the NACK
// generator's loop; the first received stream with NACK starts it once,
// with the connection's RTCP writer.
func TestLazyLoopStartsAtFirstStreamItServes(t *testing.T) {
	rec := &loopRecorder{}
	in, err := lazyLoop{recorderFactory{rec}, wantsNACK}.NewInterceptor("")
	if err != nil {
		t.Fatal(err)
	}
	w := interceptor.RTCPWriterFunc(func(_ []rtcp.Packet, a interceptor.Attributes) (int, error) { return 0, nil })
	in.BindRTCPWriter(w)
	in.BindLocalStream(&interceptor.StreamInfo{SSRC: 1}, nil)
	in.BindRemoteStream(&interceptor.StreamInfo{SSRC: 2, MimeType: webrtc.MimeTypeOpus}, nil)
	if len(rec.writers) != 0 || len(rec.streams) != 0 {
		t.Fatalf("started by a stream without NACK: writers %d, streams %v", len(rec.writers), rec.streams)
	}
	nack := []interceptor.RTCPFeedback{{Type: "goog-remb"}, {Type: "nack", Parameter: "pli"}, {Type: "nack"}}
	in.BindRemoteStream(&interceptor.StreamInfo{SSRC: 3, MimeType: webrtc.MimeTypeVP8, RTCPFeedback: nack}, nil)
	in.BindRemoteStream(&interceptor.StreamInfo{SSRC: 4, MimeType: webrtc.MimeTypeVP8, RTCPFeedback: nack}, nil)
	if len(rec.writers) != 1 || len(rec.streams) != 2 || rec.streams[0] != 3 || rec.streams[1] != 4 {
		t.Fatalf("after two video streams: writers %d, streams %v; want 1 writer, streams [3 4]", len(rec.writers), rec.streams)
	}
	if !wantsNACK(&interceptor.StreamInfo{RTCPFeedback: nack}) || wantsNACK(&interceptor.StreamInfo{RTCPFeedback: nack[:2]}) {
		t.Fatal("wantsNACK: generic NACK is the one without a parameter")
	}
}
