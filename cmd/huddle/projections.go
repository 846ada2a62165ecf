package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/app"
	"github.com/huddle-chat/huddle/projections"
)

func init() {
	register(&Command{
		Name:    "projections",
		Summary: "rebuild read models from the event store, or show their status",
		Usage: `Usage:
  huddle projections rebuild [name...]
  huddle projections status [--json]

rebuild replays the event store into shadow tables and swaps them in atomically, for the named
projections (all when none is named: ` + strings.Join(readModelNames(), ", ") + `). It works
with the server running (readers see the old tables until the swap; live projection resumes
from the rebuilt checkpoints) or stopped. Progress goes to stderr: a bar with events/s and ETA
on a terminal, a plain line every few seconds otherwise.

status prints each projection's position, its read-your-writes watermark (everything up to it is
applied; Huddle-Min-Position reads wait for it), and its lag (events and seconds behind the store).`,
		Run: projectionsCmd,
	})
}

func projectionsCmd(ctx context.Context, args []string) error {
	c := commands["projections"]
	fs := newFlagSet(c)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("missing subcommand: rebuild or status")
	}
	sub, rest := fs.Arg(0), fs.Args()[1:]
	switch sub {
	case "rebuild":
		sfs := newFlagSet(c)
		if err := parseFlags(sfs, rest); err != nil {
			return err
		}
		for _, n := range sfs.Args() {
			if !contains(readModelNames(), n) {
				return usagef("unknown projection %q (have %s)", n, strings.Join(readModelNames(), ", "))
			}
		}
		return withEngine(ctx, func(e *projections.Engine) error { return rebuild(ctx, e, sfs.Args()) })
	case "status":
		sfs := newFlagSet(c)
		asJSON := sfs.Bool("json", false, "print JSON instead of a table")
		if err := parseFlags(sfs, rest); err != nil {
			return err
		}
		if sfs.NArg() > 0 {
			return usagef("unexpected arguments: %v", sfs.Args())
		}
		return withEngine(ctx, func(e *projections.Engine) error { return printStatus(ctx, e, *asJSON) })
	default:
		return usagef("unknown subcommand %q: want rebuild or status", sub)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// withEngine opens the database and gives fn an engine that is not consuming NATS (rebuild and
// status only need Postgres).
func withEngine(ctx context.Context, fn func(*projections.Engine) error) error {
	_, log, db, err := openDatabase(ctx)
	if err != nil {
		return err
	}
	defer db.Close(context.WithoutCancel(ctx))
	return fn(projections.NewEngine(db.Pool, eventstore.New(db.Pool), "", log, nil, app.ReadModels()))
}

// readModelNames lists the read models the engine runs.
func readModelNames() []string {
	var out []string
	for _, m := range app.ReadModels() {
		out = append(out, m.Name)
	}
	return out
}

// rebuild replays the store once for all the named projections.
func rebuild(ctx context.Context, e *projections.Engine, names []string) error {
	label := "rebuild " + strings.Join(names, ", ")
	if len(names) == 0 {
		label = "rebuild " + strings.Join(e.Names(), ", ")
	}
	p := newProgress(stderr, label)
	if err := e.Rebuild(ctx, names, p.update); err != nil {
		p.finish(false)
		return err
	}
	p.finish(true)
	return nil
}

func printStatus(ctx context.Context, e *projections.Engine, asJSON bool) error {
	st, err := e.Status(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprintf(stdout, "%-12s %12s %12s %8s %12s %10s %8s  %s\n", "PROJECTION", "POSITION", "WATERMARK", "STREAMS", "LAG_EVENTS", "LAG_SECS", "POISON", "LAST_EVENT")
	for _, s := range st {
		last := "-"
		if s.LastEventAt != nil {
			last = s.LastEventAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(stdout, "%-12s %12d %12d %8d %12d %10.1f %8d  %s\n", s.Name, s.Position, s.Watermark, s.Streams, s.LagEvents, s.LagSeconds, s.Poisoned, last)
	}
	return nil
}

// progress renders rebuild progress: a redrawn bar on a terminal, a line every 2 s otherwise.
type progress struct {
	w        io.Writer
	label    string
	tty      bool
	start    time.Time
	lastLine time.Time
	done     int64
	total    int64
}

func newProgress(w io.Writer, label string) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, label: label, tty: tty, start: time.Now()}
}

func (p *progress) update(done, total int64) {
	p.done, p.total = done, total
	now := time.Now()
	if !p.tty && now.Sub(p.lastLine) < 2*time.Second {
		return
	}
	p.lastLine = now
	elapsed := now.Sub(p.start).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(done) / elapsed
	}
	eta := "?"
	if rate > 0 && total >= done {
		eta = (time.Duration(float64(total-done)/rate) * time.Second).Round(time.Second).String()
	}
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	if p.tty {
		const width = 30
		fill := int(pct / 100 * width)
		fmt.Fprintf(p.w, "\r%s [%s%s] %5.1f%% %d/%d events  %.0f ev/s  ETA %s   ",
			p.label, strings.Repeat("#", fill), strings.Repeat("-", width-fill), pct, done, total, rate, eta)
		return
	}
	fmt.Fprintf(p.w, "%s: %d/%d events (%.1f%%), %.0f events/s, ETA %s\n", p.label, done, total, pct, rate, eta)
}

func (p *progress) finish(ok bool) {
	elapsed := time.Since(p.start)
	if p.tty {
		fmt.Fprintln(p.w)
	}
	if !ok {
		fmt.Fprintf(p.w, "%s: failed after %s\n", p.label, elapsed.Round(time.Millisecond))
		return
	}
	rate := float64(p.done) / max(elapsed.Seconds(), 1e-9)
	fmt.Fprintf(p.w, "%s: done, %d events in %s (%.0f events/s)\n", p.label, p.done, elapsed.Round(time.Millisecond), rate)
}
