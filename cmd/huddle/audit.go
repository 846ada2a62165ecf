package main

import (
	"context"
	"fmt"

	"github.com/huddle-chat/huddle/eventstore"
)

func init() {
	register(&Command{
		Name:    "audit",
		Summary: "read exact history (events, state, export) and check the hash chains",
		Usage: `Usage: huddle audit verify [--stream STREAM]` + auditHistoryUsage + `

verify recomputes every stream's sha256 hash chain from the stored events (or one stream's,
with --stream) and prints, per broken stream, the first version that does not match and why.
It exits 1 when any chain is broken, 0 when all hold. It reads the events table directly, so
it checks the record itself, not a projection of it. Uses HUDDLE_DATABASE_URL, or the managed
cluster in HUDDLE_DATA_DIR.`,
		Run: auditCmd,
	})
}

func auditCmd(ctx context.Context, args []string) error {
	c := commands["audit"]
	if len(args) > 0 {
		switch args[0] {
		case "events":
			return auditEventsCmd(ctx, args[1:])
		case "state":
			return auditStateCmd(ctx, args[1:])
		case "export":
			return auditExportCmd(ctx, args[1:])
		}
	}
	if len(args) == 0 || args[0] != "verify" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fs := newFlagSet(c)
			return parseFlags(fs, args)
		}
		return usagef("expected a subcommand: verify, events, state or export")
	}
	fs := newFlagSet(c)
	stream := fs.String("stream", "", "verify only this stream (e.g. conversation-<id>)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	_, _, db, err := openDatabase(ctx)
	if err != nil {
		return err
	}
	defer db.Close(context.WithoutCancel(ctx))
	store := eventstore.New(db.Pool)

	if *stream != "" {
		r, err := store.Verify(ctx, *stream)
		if err != nil {
			return err
		}
		if r.Events == 0 {
			return fmt.Errorf("stream %s has no events", *stream)
		}
		if !r.OK {
			printBad(r)
			return fmt.Errorf("hash chain of %s is broken at version %d", r.StreamID, r.FirstBadVersion)
		}
		fmt.Fprintf(stdout, "ok: %s, %d events, hash chain intact\n", r.StreamID, r.Events)
		return nil
	}
	sum, err := store.VerifyAll(ctx)
	if err != nil {
		return err
	}
	for _, r := range sum.Bad {
		printBad(r)
	}
	if !sum.OK() {
		return fmt.Errorf("%d of %d streams have a broken hash chain", len(sum.Bad), sum.Streams)
	}
	fmt.Fprintf(stdout, "ok: %d streams, %d events, every hash chain intact\n", sum.Streams, sum.Events)
	return nil
}

func printBad(r eventstore.VerifyResult) {
	fmt.Fprintf(stdout, "BROKEN %s: first bad version %d (%d events checked): %s\n", r.StreamID, r.FirstBadVersion, r.Events, r.Reason)
}
