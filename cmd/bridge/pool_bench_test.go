package main

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/internal/audiotest"
)

// BenchmarkPoolRoomsBridgedAtOnce bridges N rooms at once with N bots of
// the embedded default's guild; each room has one simulated Discord member
// speaking a 440 Hz tone and two pion browsers, one of which speaks a
// 1 kHz tone to Discord. Once a bot is in every room and every browser
// hears its room's member, it measures over 3 s:
//   - cpu-%/room: the process's CPU use (user + system, in % of one core)
//     less its use before any room was bridged, per room;
//   - heap-KB/room: live heap growth (after a GC) per room.
//
// The process holds the emulators and the browsers too, so both are upper
// bounds for the bridge alone. ns/op means nothing. See BENCHMARKS.md
// (Pool).
func BenchmarkPoolRoomsBridgedAtOnce(b *testing.B) {
	for _, n := range []int{1, 8, 32} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for range b.N {
				benchPoolRooms(b, n)
			}
		})
	}
}

func benchPoolRooms(b *testing.B, n int) {
	var extra []discordemu.Bot
	for i := 2; i <= n; i++ {
		extra = append(extra, discordemu.Bot{Token: fmt.Sprintf("bench-bot-%d", i), UserID: fmt.Sprintf("1000000000000001%02d", i)})
	}
	ta := startTestApp(b, poolTuning(extra), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := ta.gw.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	idle := cpuRate(b, 2*time.Second)
	heap0 := liveHeap()
	tone, high := audiotest.Tone(b, 440), audiotest.Tone(b, 1000)
	type benchRoom struct {
		browsers []*e2eBrowser
		speaker  string
	}
	rooms := make([]benchRoom, n)
	bots := []string{primaryBotID}
	for _, e := range extra {
		bots = append(bots, e.UserID)
	}
	for i := range rooms {
		id := newVoiceRoom(b, ctx, ta, fmt.Sprintf("bench-%d", i))
		rooms[i].speaker = fmt.Sprintf("48000000000000%04d", i)
		playTone(b, addDiscordMember(b, ta, rooms[i].speaker, "Speaker", id), tone)
		for k := range 2 {
			br := newE2EBrowser(b, ta, fmt.Sprintf("r%db%d", i, k), browserOptions{})
			br.join(ctx, id)
			if k == 0 {
				br.publishOpus(high, loudLevel)
			}
			rooms[i].browsers = append(rooms[i].browsers, br)
		}
	}
	waitUntil(b, ctx, "a bot in every room", func() bool { return len(botRoom(ta, bots...)) == n })
	for _, r := range rooms {
		for _, br := range r.browsers {
			br.waitPackets(ctx, br.track(ctx, "discord-"+r.speaker, webrtc.RTPCodecTypeAudio), 25)
		}
	}
	busy := cpuRate(b, 3*time.Second)
	heap1 := liveHeap()
	b.ReportMetric(float64(n), "rooms")
	b.ReportMetric(100*(busy-idle)/float64(n), "cpu-%/room")
	b.ReportMetric(float64(int64(heap1)-int64(heap0))/1024/float64(n), "heap-KB/room")
}

// liveHeap is the heap in use after a collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
