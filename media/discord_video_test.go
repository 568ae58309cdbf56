package media

import (
	"bytes"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// feedDiscordVideo sends frames as one Discord user's video at 15 fps,
// looping, and flags keyframes as the voice client does.
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
		if !l.send(DiscordFrame{UserID: userID, Kind: FrameVideo, Payload: f, Keyframe: isVP8Keyframe(f)}) {
			return
		}
	}
}

// isVP8Keyframe reads the VP8 frame tag (RFC 6386 §9.1: bit 0 clear).
func isVP8Keyframe(f []byte) bool { return len(f) > 0 && f[0]&1 == 0 }

// waitTrackID waits for a received track with the given track id.
func (b *browser) waitTrackID(id string) recvTrack {
	b.t.Helper()
	return b.waitTrackWhere(func(r *webrtc.TrackRemote) bool { return r.ID() == id }, "track "+id)
}

// assertFramesInOrder reads n reassembled frames from ch and checks that
// the first is a keyframe and that they are, byte for byte, consecutive
// frames of the looped sequence sent.
func assertFramesInOrder(t *testing.T, who string, ch <-chan []byte, sent [][]byte, n int) {
	t.Helper()
	var cands []int // positions in sent the frames so far can start at
	deadline := time.After(waitLong)
	for k := 0; k < n; k++ {
		var f []byte
		select {
		case got, ok := <-ch:
			if !ok {
				t.Fatalf("%s: video track ended after %d frames", who, k)
			}
			f = got
		case <-deadline:
			t.Fatalf("%s: %d of %d frames within %s", who, k, n, waitLong)
		}
		if k == 0 {
			if !isVP8Keyframe(f) {
				t.Fatalf("%s: the first frame (%d bytes) is a delta frame, want a keyframe", who, len(f))
			}
			for i, s := range sent {
				if bytes.Equal(s, f) {
					cands = append(cands, i)
				}
			}
		} else {
			next := cands[:0]
			for _, c := range cands {
				if bytes.Equal(sent[(c+k)%len(sent)], f) {
					next = append(next, c)
				}
			}
			cands = next
		}
		if len(cands) == 0 {
			t.Fatalf("%s: frame %d (%d bytes, key %v) is not the frame sent at that place", who, k, len(f), isVP8Keyframe(f))
		}
	}
}

// TestDiscordVideoReachesBrowsers: a Discord user's VP8 frames, delivered
// assembled by the voice link and starting mid-stream with delta frames,
// reach every browser as a video track in the user's stream (beside the
// audio). Each browser's picture starts at a keyframe and every frame is
// the one sent, byte for byte and in order; a browser joining later also
// starts at a keyframe and sees the video in "joined". When the user leaves
// the voice channel, the track ends and browsers are told.
func TestDiscordVideoReachesBrowsers(t *testing.T) {
	j := newFakeJoiner()
	m, ev := newTestManager(t, j, nil)
	frames := readIVF(t, testIVF)
	// Start mid-stream: the deltas before the first keyframe must not
	// open the track.
	sent := append(append([][]byte{}, frames[1:]...), frames[0])
	if isVP8Keyframe(sent[0]) {
		t.Fatal("the test needs a sample whose second frame is a delta frame")
	}

	a := newBrowser(t, m, "a", "201", false)
	b := newBrowser(t, m, "b", "202", false)
	a.join("300")
	a.next(isType("joined"), "joined")
	link := waitLink(t, j)
	b.join("300")
	b.next(isType("joined"), "joined")

	stop, done := make(chan struct{}), make(chan struct{})
	go feedDiscordVideo(link, "400", sent, stop, done)
	defer func() {
		close(stop)
		<-done
	}()

	tracks := map[*browser]chan []byte{}
	for _, br := range []*browser{a, b} {
		tr := br.waitTrackID("discord-video-400")
		if tr.remote.StreamID() != "discord-400" || tr.remote.Kind() != webrtc.RTPCodecTypeVideo {
			t.Fatalf("browser %s: track in stream %s of kind %s", br.peer.id, tr.remote.StreamID(), tr.remote.Kind())
		}
		ch := make(chan []byte, 256)
		go assembleVP8(tr.remote, ch)
		tracks[br] = ch
		assertFramesInOrder(t, "browser "+br.peer.id, ch, sent, len(sent)+5)
		p := br.next(func(m serverMsg) bool {
			return m.Type == "participant" && m.Participant.UserID == "400" && m.Participant.Camera
		}, "discord participant with camera")
		assertDiscordTracks(t, "browser "+br.peer.id, p.Participant)
		assertExtmapIDs(t, "server offer to browser "+br.peer.id, br.LastSDP())
	}
	if !ev.has(EventCamera, "discord-400") {
		t.Fatalf("events %v lack the discord user's camera", ev.list)
	}

	// A later browser learns of the video in "joined" and its picture
	// starts at the sender's next keyframe.
	c := newBrowser(t, m, "c", "203", false)
	c.join("300")
	joined := c.next(isType("joined"), "joined")
	var found bool
	for _, p := range joined.Participants {
		if p.UserID == "400" {
			found = true
			assertDiscordTracks(t, "c's joined", p)
		}
	}
	if !found {
		t.Fatalf("c's joined lacks the discord user: %s", joined.raw)
	}
	trc := c.waitTrackID("discord-video-400")
	chc := make(chan []byte, 256)
	go assembleVP8(trc.remote, chc)
	assertFramesInOrder(t, "browser c", chc, sent, len(sent)+5)

	// The user leaves: every browser's video track ends.
	close(stop)
	<-done
	stop = make(chan struct{}) // for the deferred close
	if !link.send(UserLeft{UserID: "400"}) {
		t.Fatal("link closed")
	}
	tracks[c] = chc
	for br, ch := range tracks {
		br.next(func(m serverMsg) bool {
			return m.Type == "participant" && m.Event == "left" && m.Participant.UserID == "400"
		}, "discord user left")
		deadline := time.After(waitLong)
		for open := true; open; {
			select {
			case _, open = <-ch:
			case <-deadline:
				t.Fatalf("browser %s: the video track did not end", br.peer.id)
			}
		}
	}
	if !ev.has(EventParticipantLeft, "discord-400") {
		t.Fatalf("events %v lack the discord user leaving", ev.list)
	}
}

// assertDiscordTracks checks a Discord participant lists its audio and its
// video track, both in the user's stream.
func assertDiscordTracks(t *testing.T, who string, p Participant) {
	t.Helper()
	want := []TrackInfo{
		{TrackID: "discord-audio-400", StreamID: "discord-400", Kind: "audio"},
		{TrackID: "discord-video-400", StreamID: "discord-400", Kind: "video"},
	}
	if len(p.Tracks) != len(want) || p.Tracks[0] != want[0] || p.Tracks[1] != want[1] || !p.Camera {
		t.Fatalf("%s: discord participant %+v, want camera on and tracks %+v", who, p, want)
	}
}
