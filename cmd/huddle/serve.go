package main

import (
	"context"
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
	// Startup is bounded; the first start runs initdb, later ones reuse the data.
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	a, err := app.Start(startCtx, cfg, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
