// Command bridge runs the voice-media bridge: the Discord gateway client,
// the room REST API, the event hub and the web UI in one process. With no
// DISCORD_BOT_TOKEN it starts the Discord emulator in process and connects
// to it, so the whole bridge can be tried with one command.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-print-env-example" || args[0] == "--print-env-example") {
		fmt.Fprint(stdout, envExample())
		return 0
	}
	cfg, err := loadConfig(args, getenv)
	if err != nil {
		// One line per problem, each naming the variable and the fix.
		fmt.Fprintln(stderr, err)
		return 2
	}
	logger := newLogger(cfg, stderr)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	a, err := newApp(ctx, cfg, logger)
	if err != nil {
		// One line naming what failed and the fix, as for config errors.
		fmt.Fprintln(stderr, err)
		return 1
	}
	logger.Info("listening", "addr", a.Addr(), "url", a.URL())
	if cfg.Embedded && cfg.LogFormat == "json" {
		logger.Info("embedded default: open " + a.URL() + " in a browser; stop with Ctrl+C")
	} else if cfg.Embedded {
		fmt.Fprintf(stderr, "\n  Voice Bridge is running: open %s in a browser.\n"+
			"  Running: an emulated Discord server with a Lobby where members talk (no DISCORD_BOT_TOKEN),\n"+
			"  and sign-in by name for anyone who can reach this machine (dev auth).\n"+
			"  Stop: Ctrl+C.\n\n", a.URL())
	}

	select {
	case <-ctx.Done():
		logger.Info("shutting down", "signal", "received")
	case err := <-a.Done():
		if err != nil && !errors.Is(err, context.Canceled) {
			logger.Error("server stopped", "err", err)
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := a.Shutdown(shutdownCtx); err != nil {
		logger.Error("shutdown", "err", err)
		return 1
	}
	logger.Info("stopped")
	return 0
}

func newLogger(cfg *Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated in loadConfig
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
