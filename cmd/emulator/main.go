// Command emulator runs the emulated Discord of the embedded default on its
// own: the gateway and REST emulator, the voice emulator and the demo Lobby
// with its simulated members. Several bridge instances can then share one
// emulated Discord, as they would share the real one.
//
// It prints the settings a bridge needs, one VAR=value line each, so that
//
//	go run ./cmd/emulator -addr 127.0.0.1:9000 > emulator.env
//
// gives a file to source before starting bridges. The voice emulator's TLS
// certificate is self-signed; its PEM goes to -voice-ca-file, which the
// bridge trusts through VOICE_CA_FILE.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/voicebridge/bridge/emulator"
	"github.com/voicebridge/bridge/emulator/discordemu"
	"github.com/voicebridge/bridge/emulator/voiceemu"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code once ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "listen address of the gateway and REST emulator")
	caFile := fs.String("voice-ca-file", "emulator-voice-ca.pem", "file the voice emulator's self-signed certificate (PEM) is written to, for the bridge's VOICE_CA_FILE")
	identify := fs.Duration("identify-interval", 5*time.Second, "minimum spacing of identifies (Discord's max_concurrency 1); tests use 1ns")
	heartbeat := fs.Duration("heartbeat-interval", 41250*time.Millisecond, "gateway heartbeat interval sent in Hello")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	control := fs.String("control-addr", "", "if set, a listen address (such as 127.0.0.1:0) for the emulator's own view: GET /stats and GET /connections (JSON), printed as EMULATOR_CONTROL_URL")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "emulator: -log-level %q is not a level; use debug, info, warn or error\n", *logLevel)
		return 2
	}
	for name, a := range map[string]string{"-addr": *addr, "-control-addr": *control} {
		if _, _, err := net.SplitHostPort(a); err != nil && a != "" {
			fmt.Fprintf(stderr, "emulator: %s %q is not host:port; use a form like 127.0.0.1:9000\n", name, a)
			return 2
		}
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})).With("component", "emulator")

	demo, err := emulator.StartDemo(emulator.DemoOptions{
		Discord: discordemu.Options{Addr: *addr, IdentifyInterval: *identify, HeartbeatInterval: *heartbeat},
		Logger:  log,
	})
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	defer demo.Close()
	if err := writeVoiceCA(ctx, demo.Voice, *caFile); err != nil {
		log.Error("voice certificate", "err", err)
		return 1
	}
	ca, err := filepath.Abs(*caFile)
	if err != nil {
		ca = *caFile
	}
	o := demo.Discord.Options()
	fmt.Fprintf(stdout, "DISCORD_API_BASE=%s/api/v10\nDISCORD_BOT_TOKEN=%s\nDISCORD_GUILD_ID=%s\nROOM_CATEGORY_ID=%s\nVOICE_CA_FILE=%s\n",
		demo.Discord.URL(), o.Token, o.GuildID, o.CategoryID, ca)
	if *control != "" {
		ln, err := net.Listen("tcp", *control)
		if err != nil {
			log.Error("-control-addr", "err", err)
			return 1
		}
		srv := &http.Server{Handler: controlHandler(demo.Discord), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		fmt.Fprintf(stdout, "EMULATOR_CONTROL_URL=http://%s\n", ln.Addr())
	}
	if f, ok := stdout.(*os.File); ok {
		_ = f.Sync()
	}
	log.Info("emulated Discord running; start bridges with the settings printed on stdout", "lobby", demo.Lobby.ID)
	<-ctx.Done()
	log.Info("stopping")
	return 0
}

// controlHandler serves the emulator's own view, for tests and people
// checking what a bridge did: GET /stats is discordemu.Stats (identifies,
// resumes and the primary bot's session among them), GET /connections the
// gateway connections, each saying whether it identified or resumed.
func controlHandler(d *discordemu.Server) http.Handler {
	mux := http.NewServeMux()
	serve := func(v func() any) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(v())
		}
	}
	mux.HandleFunc("GET /stats", serve(func() any { return d.Stats() }))
	mux.HandleFunc("GET /connections", serve(func() any { return d.Connections() }))
	return mux
}

// writeVoiceCA writes the certificate the voice emulator presents to path.
// The certificate is taken from a TLS handshake made with the client
// configuration the emulator hands out, so what is written is what a
// client verifying against it accepts.
func writeVoiceCA(ctx context.Context, voice *voiceemu.Server, path string) error {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	d := tls.Dialer{Config: voice.TLSConfig()}
	conn, err := d.DialContext(dctx, "tcp", voice.Endpoint())
	if err != nil {
		return fmt.Errorf("handshake with the voice emulator at %s: %w", voice.Endpoint(), err)
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return errors.New("the voice emulator presented no certificate")
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certs[0].Raw})
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("-voice-ca-file: %w", err)
	}
	return nil
}
