package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/app"
	"github.com/huddle-chat/huddle/internal/tail"
)

func init() {
	register(&Command{
		Name:    "tail",
		Summary: "print events as CloudEvents JSON lines: history from the store, then live",
		Usage: `Usage: huddle tail [--from beginning|now|<position>] [--type T]... [--clinic C] [--no-follow]

Prints Huddle's events, one CloudEvents 1.0 JSON object per line (id, type, source, time,
subject, data, plus streamid, streamversion, position and the metadata). It reads history
from the event store, then follows live events from NATS JetStream, with no gap and no
duplicate at the seam. With the server's environment it finds the server's database and NATS
(the embedded NATS records its address in HUDDLE_DATA_DIR); else set HUDDLE_DATABASE_URL and
HUDDLE_NATS_URL. See docs/events.md for the event types.

Examples:
  huddle tail --from beginning --no-follow > history.jsonl
  huddle tail --clinic c1 --type MessageSent --type FileShared`,
		Run: runTail,
	})
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runTail(ctx context.Context, args []string) error {
	fs := newFlagSet(commands["tail"])
	from := fs.String("from", "now", "where to start: beginning, now, or a global position (events after it)")
	clinic := fs.String("clinic", "", "only this clinic's events")
	noFollow := fs.Bool("no-follow", false, "print history and stop instead of following live events")
	var types stringList
	fs.Var(&types, "type", "only events of this type (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	if *noFollow && *from == "now" {
		return usagef("--no-follow with --from now prints nothing: give --from beginning or a position")
	}
	cfg, _, db, err := openDatabase(ctx)
	if err != nil {
		return err
	}
	defer db.Close(context.WithoutCancel(ctx))

	var nc *nats.Conn
	if !*noFollow {
		url, err := app.NATSURL(cfg)
		if err != nil {
			return err
		}
		nc, err = nats.Connect(url, nats.Name("huddle-tail"))
		if err != nil {
			return fmt.Errorf("connect to NATS at %s: %w", url, err)
		}
		defer nc.Close()
	}
	t, err := tail.New(eventstore.New(db.Pool), nc, stdout, tail.Options{From: *from, Types: types, Clinic: *clinic, Follow: !*noFollow})
	if err != nil {
		return usagef("%v", err)
	}
	return t.Run(ctx)
}
