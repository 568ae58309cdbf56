package emulator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bwmarrin/discordgo"

	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/emulator/voiceemu"
)

// Demo is the whole emulated Discord of the embedded default: the gateway
// and REST emulator with two bots (so two rooms are bridged at once), the
// voice emulator wired to it, a "Lobby" room with simulated members who
// talk, show video and echo what they hear, and a second room, "Table 2",
// with a member of its own who talks.
type Demo struct {
	Discord *discordemu.Server
	Voice   *voiceemu.Server
	Lobby   *discordgo.Channel

	// Talker, Camera and Echo are the simulated members in the Lobby.
	Talker, Camera, Echo *voiceemu.Member
	// Table is the second room; TableTalker talks in it.
	Table       *discordgo.Channel
	TableTalker *voiceemu.Member

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// DemoOptions configures StartDemo. Discord.Voice is set by StartDemo.
type DemoOptions struct {
	Discord discordemu.Options
	Voice   voiceemu.Options
	// EchoDelay is how long the echo member waits before playing back
	// what it heard; default 1 s.
	EchoDelay time.Duration
	// Record is how many of the latest frames each demo member keeps of
	// what it hears (voiceemu.MemberOptions.Record), for tests that read
	// them; 0 keeps none, so the embedded default holds flat memory.
	Record int
	Logger *slog.Logger
}

// Simulated members of the demo, by user id.
const (
	DemoTalkerID = "400000000000000001"
	DemoCameraID = "400000000000000002"
	DemoEchoID   = "400000000000000003"
	// DemoTableTalkerID talks in the second room.
	DemoTableTalkerID = "400000000000000004"
	// DemoSecondBotID is the demo's second bot, with token
	// DemoSecondBotToken; Options.ExtraBots replaces it.
	DemoSecondBotID    = "100000000000000002"
	DemoSecondBotToken = "emulator-bot-token-2"
)

// StartDemo starts both emulators and populates the Lobby. The members play
// until Close.
func StartDemo(opts DemoOptions) (d *Demo, err error) {
	if opts.EchoDelay <= 0 {
		opts.EchoDelay = time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Each emulator adds its own component key.
	if opts.Voice.Logger == nil {
		opts.Voice.Logger = log
	}
	if opts.Discord.Logger == nil {
		opts.Discord.Logger = log
	}
	log = log.With("component", "emulator")
	speech, err := voiceemu.LoadOpusSample("speech")
	if err != nil {
		return nil, err
	}
	pattern, err := voiceemu.LoadVP8Sample("testpattern")
	if err != nil {
		return nil, err
	}

	d = &Demo{}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if d.Voice, err = voiceemu.Start(opts.Voice); err != nil {
		return nil, fmt.Errorf("voice emulator: %w", err)
	}
	opts.Discord.Voice = d.Voice
	if opts.Discord.ExtraBots == nil {
		opts.Discord.ExtraBots = []discordemu.Bot{{Token: DemoSecondBotToken, UserID: DemoSecondBotID, Name: "bridge-bot-2"}}
	}
	if d.Discord, err = discordemu.Start(opts.Discord); err != nil {
		return nil, fmt.Errorf("discord emulator: %w", err)
	}
	o := d.Discord.Options()
	if d.Lobby, err = d.Discord.CreateChannel("Lobby", int(discordgo.ChannelTypeGuildVoice), o.CategoryID); err != nil {
		return nil, err
	}
	if d.Table, err = d.Discord.CreateChannel("Table 2", int(discordgo.ChannelTypeGuildVoice), o.CategoryID); err != nil {
		return nil, err
	}
	// Unless a test reads them, the demo members keep no recordings, so a
	// demo left running for days stays at flat memory.
	record := opts.Record
	if record <= 0 {
		record = -1
	}
	addTo := func(channelID, id, name string) (*voiceemu.Member, error) {
		d.Discord.AddMember(id, name)
		m, err := d.Voice.AddMember(voiceemu.MemberOptions{UserID: id, GuildID: o.GuildID, ChannelID: channelID, Record: record})
		if err != nil {
			return nil, err
		}
		return m, d.Discord.SetVoiceState(id, channelID)
	}
	add := func(id, name string) (*voiceemu.Member, error) { return addTo(d.Lobby.ID, id, name) }
	if d.Talker, err = add(DemoTalkerID, "Ada (talks)"); err != nil {
		return nil, err
	}
	if d.Camera, err = add(DemoCameraID, "Test Pattern"); err != nil {
		return nil, err
	}
	if d.Echo, err = add(DemoEchoID, "Echo"); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	if d.TableTalker, err = addTo(d.Table.ID, DemoTableTalkerID, "Lin (talks)"); err != nil {
		return nil, err // Close, deferred above, cancels ctx
	}
	d.wg.Add(4)
	go d.talk(ctx, d.Talker, speech)
	go d.talk(ctx, d.TableTalker, speech)
	go d.showVideo(ctx, pattern)
	queue, dropped := d.listen()
	go d.echo(ctx, queue, dropped, opts.EchoDelay, log)
	return d, nil
}

// talk plays the speech clip, pauses a second, and starts again.
func (d *Demo) talk(ctx context.Context, m *voiceemu.Member, speech [][]byte) {
	defer d.wg.Done()
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		m.PlayOpus(ctx, speech, false)
		for range 5 {
			_ = m.SendOpus(silenceFrame)
		}
		pause.Reset(time.Second)
		select {
		case <-ctx.Done():
			return
		case <-pause.C:
		}
	}
}

// showVideo loops the test pattern at its 15 frames per second.
func (d *Demo) showVideo(ctx context.Context, frames []voiceemu.VideoFrame) {
	defer d.wg.Done()
	const interval = time.Second / 15
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for n := 0; ; n++ {
		f := frames[n%len(frames)]
		_ = d.Camera.SendVP8(f.Data, f.Keyframe)
		// Absolute deadlines: the pace does not drift with send time.
		t.Reset(time.Until(start.Add(time.Duration(n+1) * interval)))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// silenceFrame is Opus's 20 ms silence frame.
var silenceFrame = []byte{0xF8, 0xFF, 0xFE}

// heardFrame is a frame the echo member heard, and when.
type heardFrame struct {
	at    time.Time
	frame []byte
}

// listen makes the echo member queue every frame it hears from a
// participant that is not simulated. The queue is bounded (10 s of
// frames): when playback falls that far behind, new frames are dropped.
func (d *Demo) listen() (<-chan heardFrame, *atomic.Int64) {
	queue := make(chan heardFrame, 500)
	dropped := new(atomic.Int64)
	simulated := map[string]bool{DemoTalkerID: true, DemoCameraID: true, DemoEchoID: true}
	d.Echo.OnOpus(func(from string, frame []byte) {
		if simulated[from] {
			return
		}
		select {
		case queue <- heardFrame{time.Now(), frame}:
		default:
			dropped.Add(1)
		}
	})
	return queue, dropped
}

// echo plays back what the echo member heard, delay later.
func (d *Demo) echo(ctx context.Context, queue <-chan heardFrame, dropped *atomic.Int64, delay time.Duration, log *slog.Logger) {
	defer d.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if n := dropped.Load(); n > 0 {
				log.Debug("echo dropped frames", "count", n)
			}
			return
		case h := <-queue:
			t.Reset(time.Until(h.at.Add(delay)))
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := d.Echo.SendOpus(h.frame); err != nil && !errors.Is(err, voiceemu.ErrClosed) {
				log.Debug("echo send", "err", err)
			}
		}
	}
}

// Close stops the members and both emulators; it is idempotent and waits.
func (d *Demo) Close() {
	d.once.Do(func() {
		if d.cancel != nil {
			d.cancel()
		}
		d.wg.Wait()
		if d.Discord != nil {
			d.Discord.Close()
		}
		if d.Voice != nil {
			d.Voice.Close()
		}
	})
}
