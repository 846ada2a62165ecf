package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/app"
	"github.com/huddle-chat/huddle/internal/audit"
)

func init() {
	register(&Command{
		Name:    "audit",
		Summary: "read exact history (events, state, export) and check the hash chains",
		Usage: `Usage: huddle audit verify [--stream STREAM] [--feed]` + auditHistoryUsage + `

verify recomputes every stream's sha256 hash chain from the stored events (or one stream's,
with --stream) and prints, per broken stream, the first version that does not match and why.
A chain cannot show its own newest events removed; --feed also reads every event still in the
HUDDLE_EVENTS JetStream stream (its retention) and checks each is in the store under the same
id and hash, printing those that are not. It exits 1 when anything is broken, 0 when all
holds. It reads the events table directly, so it checks the record itself, not a projection of
it. Uses HUDDLE_DATABASE_URL, or the managed cluster in HUDDLE_DATA_DIR, and for --feed
HUDDLE_NATS_URL or the embedded server's nats.url.`,
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
	feed := fs.Bool("feed", false, "also check every event still in the HUDDLE_EVENTS JetStream stream against the store (finds removed events)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	cfg, _, db, err := openDatabase(ctx)
	if err != nil {
		return err
	}
	defer db.Close(context.WithoutCancel(ctx))
	store := eventstore.New(db.Pool)

	broken, err := verifyChains(ctx, store, *stream)
	if err != nil {
		return err
	}
	var chainErr error
	if broken != "" {
		chainErr = errors.New(broken)
	}
	if !*feed {
		return chainErr
	}
	url, err := app.NATSURL(cfg)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(url, nats.Name("huddle-audit-verify"))
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	defer nc.Close()
	p := newProgress(stderr, "verify feed")
	rep, err := audit.VerifyFeed(ctx, db.Pool, nc, func(seq, last uint64) { p.update(int64(seq), int64(last)) })
	p.finish(err == nil)
	if err != nil {
		return errors.Join(chainErr, err)
	}
	for _, b := range rep.Bad {
		fmt.Fprintf(stdout, "FEED %s@%d (event %s, JetStream seq %d): %s\n", b.StreamID, b.StreamVersion, b.EventID, b.Seq, b.Reason)
	}
	if !rep.OK() {
		return errors.Join(chainErr, fmt.Errorf("%d of %d published events are not in the store as published", len(rep.Bad), rep.Checked))
	}
	fmt.Fprintf(stdout, "ok: feed, %d published events (JetStream seq %d..%d) all in the store as published\n", rep.Checked, rep.FirstSeq, rep.LastSeq)
	return chainErr
}

// verifyChains checks one stream's hash chain, or all of them, and prints the outcome. broken
// says what is broken ("" when every chain holds); err is what stopped the check.
func verifyChains(ctx context.Context, store *eventstore.Store, stream string) (broken string, err error) {
	if stream != "" {
		r, err := store.Verify(ctx, stream)
		if err != nil {
			return "", err
		}
		if r.Events == 0 {
			return "", fmt.Errorf("stream %s has no events", stream)
		}
		if !r.OK {
			printBad(r)
			return fmt.Sprintf("hash chain of %s is broken at version %d", r.StreamID, r.FirstBadVersion), nil
		}
		fmt.Fprintf(stdout, "ok: %s, %d events, hash chain intact\n", r.StreamID, r.Events)
		return "", nil
	}
	sum, err := store.VerifyAll(ctx)
	if err != nil {
		return "", err
	}
	for _, r := range sum.Bad {
		printBad(r)
	}
	if !sum.OK() {
		return fmt.Sprintf("%d of %d streams have a broken hash chain", len(sum.Bad), sum.Streams), nil
	}
	fmt.Fprintf(stdout, "ok: %d streams, %d events, every hash chain intact\n", sum.Streams, sum.Events)
	return "", nil
}

func printBad(r eventstore.VerifyResult) {
	fmt.Fprintf(stdout, "BROKEN %s: first bad version %d (%d events checked): %s\n", r.StreamID, r.FirstBadVersion, r.Events, r.Reason)
}
