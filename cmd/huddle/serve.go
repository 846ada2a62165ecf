package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/huddle-chat/huddle/internal/app"
)

func init() {
	register(&Command{
		Name:    "serve",
		Summary: "run the Huddle server (HTTP API, relay, projectors)",
		Usage: `Usage: huddle serve

Runs the HTTP API, the event relay and the projectors until SIGINT or SIGTERM, then shuts down
gracefully: stops accepting, ends live streams, lets requests finish, stops Postgres cleanly.

With nothing configured it runs the embedded default: a managed PostgreSQL cluster and an
in-process NATS server, all state under HUDDLE_DATA_DIR (./huddle-data). HUDDLE_DATABASE_URL
and HUDDLE_NATS_URL use external servers instead; see README.md for every variable.`,
		Run: serve,
	})
}

func serve(ctx context.Context, args []string) error {
	fs := newFlagSet(commands["serve"])
	pprofAddr := fs.String("pprof", "", "serve Go's pprof profiles on this loopback address (e.g. 127.0.0.1:6060); off by default")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	cfg, log, err := setup()
	if err != nil {
		return err
	}
	if addr := *pprofAddr; addr != "" {
		// Profiling is for operators on the host: loopback only, never on the API's port.
		if host, _, err := net.SplitHostPort(addr); err != nil || (host != "127.0.0.1" && host != "localhost" && host != "::1") {
			return usagef("--pprof %q: want a loopback host:port, e.g. 127.0.0.1:6060", addr)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("--pprof: %w", err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		go func() { _ = http.Serve(ln, mux) }()
		log.Info("pprof listening", "addr", ln.Addr().String())
	}
	// Startup is bounded; the first start runs initdb, later ones reuse the data.
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	a, err := app.Start(startCtx, cfg, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
