package main

import (
	"context"
	"fmt"

	"github.com/huddle-chat/huddle/internal/app"
)

func init() {
	register(&Command{
		Name:    "migrate",
		Summary: "apply database migrations (serve also does this on start)",
		Usage: `Usage: huddle migrate

Applies the embedded SQL migrations that the database lacks, each once, and repairs the event
store after a pg_dump/restore into another cluster (transaction ids). Safe to run while other
instances start or run. Uses HUDDLE_DATABASE_URL, or the managed cluster in HUDDLE_DATA_DIR
(attaching to it when huddle serve is running).`,
		Run: migrate,
	})
}

func migrate(ctx context.Context, args []string) error {
	fs := newFlagSet(commands["migrate"])
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	_, log, db, err := openDatabase(ctx)
	if err != nil {
		return err
	}
	defer db.Close(context.WithoutCancel(ctx))
	// app.Migrate holds every step that must run at each start (migrations, restore repair).
	if err := app.Migrate(ctx, db.Pool, log); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "database is up to date")
	return nil
}
