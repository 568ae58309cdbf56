package media

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// feedDiscordVideo sends VP8 frames as one Discord user's video at 15 fps,
// flagging keyframes as the voice client does.
func feedDiscordVideo(l *fakeLink, userID string, frames [][]byte, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(time.Second / 15)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		f := frames[i%len(frames)]
		if !l.send(DiscordFrame{UserID: userID, Kind: FrameVideo, Payload: f, Keyframe: f[0]&1 == 0}) {
			return
		}
	}
}

// waitTrackID waits for a received track with the given track id.
func (b *browser) waitTrackID(id string) recvTrack {
	b.t.Helper()
	deadline := time.After(waitLong)
	for {
		select {
		case tr := <-b.track:
			if tr.remote.ID() == id {
				return tr
			}
		case <-deadline:
			b.t.Fatalf("browser %s: no track %s within %s", b.peer.id, id, waitLong)
		}
	}
}

// TestDiscordVideoReachesBrowsers: a Discord user's VP8 frames, delivered
// assembled by the voice link, reach every browser as a video track in the
// user's stream (beside the audio), byte-identical once reassembled, with
// the sender's keyframes, and the user's participant shows the camera on.
func TestDiscordVideoReachesBrowsers(t *testing.T) {
	j := newFakeJoiner()
	m, ev := newTestManager(t, j, nil)
	frames := readIVF(t, testIVF)
	if frames[1][0]&1 == 0 {
		t.Fatal("the test needs a sample whose second frame is a delta frame")
	}
	set := frameSet(frames)

	a := newBrowser(t, m, "a", "201", false)
	b := newBrowser(t, m, "b", "202", false)
	a.join("300")
	a.next(isType("joined"), "joined")
	link := waitLink(t, j)
	b.join("300")
	b.next(isType("joined"), "joined")

	// Start mid-stream: the first frames are deltas, which must not open
	// the track.
	stop, done := make(chan struct{}), make(chan struct{})
	go feedDiscordVideo(link, "400", append(frames[1:], frames[0]), stop, done)
	defer func() { close(stop); <-done }()

	for _, br := range []*browser{a, b} {
		tr := br.waitTrackID("discord-video-400")
		if tr.remote.StreamID() != "discord-400" || tr.remote.Kind() != webrtc.RTPCodecTypeVideo {
			t.Fatalf("browser %s: track in stream %s of kind %s", br.peer.id, tr.remote.StreamID(), tr.remote.Kind())
		}
		ch := make(chan []byte, 256)
		go assembleVP8(tr.remote, ch)
		// Every frame is intact; a keyframe arrives and frames follow it.
		deadline := time.After(waitLong)
		afterKey := -1
		for n := 0; afterKey < 10; n++ {
			select {
			case f, ok := <-ch:
				if !ok {
					t.Fatalf("browser %s: video track ended", br.peer.id)
				}
				if !set[string(f)] {
					t.Fatalf("browser %s: frame %d (%d bytes) is not one of the frames sent", br.peer.id, n, len(f))
				}
				switch {
				case f[0]&1 == 0:
					afterKey = 0
				case afterKey >= 0:
					afterKey++
				}
			case <-deadline:
				t.Fatalf("browser %s: %d frames, %d after a keyframe", br.peer.id, n, afterKey)
			}
		}
		p := br.next(func(m serverMsg) bool {
			return m.Type == "participant" && m.Participant.UserID == "400" && m.Participant.Camera
		}, "discord participant with camera")
		var kinds []string
		for _, tr := range p.Participant.Tracks {
			kinds = append(kinds, tr.Kind+":"+tr.TrackID)
		}
		if len(kinds) != 2 || kinds[1] != "video:discord-video-400" {
			t.Fatalf("browser %s: participant tracks %v", br.peer.id, kinds)
		}
	}
	if !ev.has(EventCamera, "discord-400") {
		t.Fatalf("events %v lack the discord user's camera", ev.list)
	}
}
