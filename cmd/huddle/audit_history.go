package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"time"

	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/audit"
)

// auditHistoryUsage documents the offline counterparts of the audit API; audit.go prints it
// with the verify usage.
const auditHistoryUsage = `
       huddle audit events --clinic C --conversation ID [--after V] [--limit N]
       huddle audit state  --clinic C --conversation ID [--at RFC3339]
       huddle audit export --clinic C --conversation ID [--format jsonl|csv] [--out FILE]

events prints a conversation's stored events as JSON lines (deleted conversations included),
state prints the conversation as it stood at an instant (replayed with the domain's own code),
export writes the full history as JSON lines or CSV, streamed. They read the event store, not
read models, and each read is recorded as an AuditRead event in the clinic's audit stream,
attributed to --as (default: cli:<your login>).`

// auditReader opens the store and names the auditor for one offline audit command.
func auditReader(ctx context.Context, clinic, as string) (*audit.Service, audit.Auditor, func(), error) {
	if clinic == "" {
		return nil, audit.Auditor{}, nil, usagef("--clinic is required: audits are scoped to one clinic")
	}
	if as == "" {
		as = "cli"
		if u, err := user.Current(); err == nil {
			as = "cli:" + u.Username
		}
	}
	_, _, db, err := openDatabase(ctx)
	if err != nil {
		return nil, audit.Auditor{}, nil, err
	}
	closeDB := func() { db.Close(context.WithoutCancel(ctx)) }
	return audit.New(eventstore.New(db.Pool)), audit.Auditor{UserID: as, ClinicID: clinic, CorrelationID: "cli"}, closeDB, nil
}

func auditNotFound(err error, clinic, conversation string) error {
	if errors.Is(err, audit.ErrNotFound) {
		return fmt.Errorf("clinic %s has no conversation %s", clinic, conversation)
	}
	return err
}

func auditEventsCmd(ctx context.Context, args []string) error {
	fs := newFlagSet(commands["audit"])
	clinic := fs.String("clinic", "", "clinic id (required)")
	conv := fs.String("conversation", "", "conversation id (required)")
	as := fs.String("as", "", "auditor name recorded with the read (default cli:<login>)")
	after := fs.Int64("after", 0, "start after this stream version")
	limit := fs.Int("limit", 0, "print at most this many events (0: all)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *conv == "" || fs.NArg() > 0 {
		return usagef("usage: huddle audit events --clinic C --conversation ID")
	}
	svc, who, done, err := auditReader(ctx, *clinic, *as)
	if err != nil {
		return err
	}
	defer done()
	enc := json.NewEncoder(stdout)
	printed := 0
	for {
		page := 500
		if *limit > 0 && *limit-printed < page {
			page = *limit - printed
		}
		events, more, err := svc.Events(ctx, who, *conv, *after, page)
		if err != nil {
			return auditNotFound(err, *clinic, *conv)
		}
		for _, e := range events {
			if err := enc.Encode(audit.ToJSON(e)); err != nil {
				return err
			}
			*after = e.StreamVersion
			printed++
		}
		if !more || (*limit > 0 && printed >= *limit) {
			return nil
		}
	}
}

func auditStateCmd(ctx context.Context, args []string) error {
	fs := newFlagSet(commands["audit"])
	clinic := fs.String("clinic", "", "clinic id (required)")
	conv := fs.String("conversation", "", "conversation id (required)")
	as := fs.String("as", "", "auditor name recorded with the read (default cli:<login>)")
	atRaw := fs.String("at", "", "instant (RFC 3339); default now")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *conv == "" || fs.NArg() > 0 {
		return usagef("usage: huddle audit state --clinic C --conversation ID [--at RFC3339]")
	}
	at := time.Now()
	if *atRaw != "" {
		var err error
		if at, err = time.Parse(time.RFC3339Nano, *atRaw); err != nil {
			return usagef("--at %q: not an RFC 3339 time (e.g. 2026-11-25T12:00:00Z)", *atRaw)
		}
	}
	svc, who, done, err := auditReader(ctx, *clinic, *as)
	if err != nil {
		return err
	}
	defer done()
	st, err := svc.StateAt(ctx, who, *conv, at)
	if err != nil {
		return auditNotFound(err, *clinic, *conv)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(st)
}

func auditExportCmd(ctx context.Context, args []string) error {
	fs := newFlagSet(commands["audit"])
	clinic := fs.String("clinic", "", "clinic id (required)")
	conv := fs.String("conversation", "", "conversation id (required)")
	as := fs.String("as", "", "auditor name recorded with the read (default cli:<login>)")
	format := fs.String("format", audit.FormatJSONL, "jsonl or csv")
	out := fs.String("out", "", "write to this file instead of standard output")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *conv == "" || fs.NArg() > 0 {
		return usagef("usage: huddle audit export --clinic C --conversation ID [--format jsonl|csv] [--out FILE]")
	}
	if *format != audit.FormatJSONL && *format != audit.FormatCSV {
		return usagef("--format must be jsonl or csv")
	}
	svc, who, done, err := auditReader(ctx, *clinic, *as)
	if err != nil {
		return err
	}
	defer done()
	if err := svc.CheckExport(ctx, who, *conv); err != nil {
		return auditNotFound(err, *clinic, *conv)
	}
	var w io.Writer = stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	counter := &countingWriter{w: w}
	if err := svc.Export(ctx, who, *conv, *format, counter); err != nil {
		return err
	}
	if *out != "" {
		fmt.Fprintf(stderr, "exported conversation %s to %s (%d bytes)\n", *conv, *out, counter.n)
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
