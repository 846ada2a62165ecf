// Package tail prints Huddle's events as CloudEvents JSON lines for integrators: history from
// the event store, then live from NATS JetStream, with no gap and no duplicate at the seam.
//
// The seam: before reading history, tail notes JetStream's last sequence S0. It then reads the
// store to its end and subscribes from S0+1. Everything committed after the history read is
// published after S0, so nothing is missed; what JetStream delivers that history already
// printed (the relay lagging behind the store) is dropped by the per-stream version it has
// seen. A version that jumps ahead (lost JetStream retention) is filled from the store.
package tail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/nats-io/nats.go"

	"github.com/huddle-chat/huddle/eventstore"
)

// StreamName is the JetStream stream the relay publishes to.
const StreamName = "HUDDLE_EVENTS"

// Options select where to start and what to print.
type Options struct {
	// From is "beginning", "now" or a global position (print events with a larger position).
	From string
	// Types keeps only these event types (all when empty).
	Types []string
	// Clinic keeps only this clinic's events (all when empty).
	Clinic string
	// Follow keeps reading live events; false stops once history is printed.
	Follow bool
}

// CloudEvent is one line of output: CloudEvents 1.0 JSON format, with Huddle's stream, version,
// position and metadata as extension attributes.
type CloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Type            string          `json:"type"`
	Source          string          `json:"source"`
	Subject         string          `json:"subject"`
	Time            time.Time       `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	StreamID        string          `json:"streamid"`
	StreamVersion   int64           `json:"streamversion"`
	Position        int64           `json:"position"`
	SchemaVersion   int             `json:"schemaversion"`
	ActorID         string          `json:"actorid,omitempty"`
	ClinicID        string          `json:"clinicid,omitempty"`
	CorrelationID   string          `json:"correlationid,omitempty"`
	CausationID     string          `json:"causationid,omitempty"`
	CommandID       string          `json:"commandid,omitempty"`
}

// ToCloudEvent renders a stored event.
func ToCloudEvent(e eventstore.RecordedEvent) CloudEvent {
	return CloudEvent{
		SpecVersion: "1.0", ID: e.EventID, Type: e.Type, Source: "huddle/" + e.Metadata.ClinicID,
		Subject: e.StreamID, Time: e.RecordedAt.UTC(), DataContentType: "application/json", Data: e.Data,
		StreamID: e.StreamID, StreamVersion: e.StreamVersion, Position: e.Position, SchemaVersion: e.SchemaVersion,
		ActorID: e.Metadata.ActorID, ClinicID: e.Metadata.ClinicID, CorrelationID: e.Metadata.CorrelationID,
		CausationID: e.Metadata.CausationID, CommandID: e.Metadata.CommandID,
	}
}

// Tailer prints events to an io.Writer.
type Tailer struct {
	store *eventstore.Store
	nc    *nats.Conn
	out   *json.Encoder
	opt   Options
	types map[string]bool
	seen  map[string]int64 // stream id -> highest version printed or skipped
}

// New returns a tailer reading history from store and live events over nc.
func New(store *eventstore.Store, nc *nats.Conn, out io.Writer, opt Options) (*Tailer, error) {
	if opt.From == "" {
		opt.From = "now"
	}
	if opt.From != "now" && opt.From != "beginning" {
		if p, err := strconv.ParseInt(opt.From, 10, 64); err != nil || p < 0 {
			return nil, fmt.Errorf("--from must be beginning, now or a non-negative position, not %q", opt.From)
		}
	}
	if strings.ContainsAny(opt.Clinic, ".*> ") {
		return nil, fmt.Errorf("--clinic %q: not a clinic id", opt.Clinic)
	}
	t := &Tailer{store: store, nc: nc, out: json.NewEncoder(out), opt: opt, seen: map[string]int64{}}
	if len(opt.Types) > 0 {
		t.types = map[string]bool{}
		for _, ty := range opt.Types {
			t.types[ty] = true
		}
	}
	return t, nil
}

// Run prints history (unless From is "now") and then, when following, live events until ctx
// ends.
func (t *Tailer) Run(ctx context.Context) error {
	var startSeq uint64 = 1
	var js nats.JetStreamContext
	if t.opt.Follow {
		var err error
		js, err = t.nc.JetStream()
		if err != nil {
			return fmt.Errorf("jetstream: %w", err)
		}
		info, err := js.StreamInfo(StreamName, nats.Context(ctx))
		if err != nil {
			return fmt.Errorf("stream %s: %w", StreamName, err)
		}
		startSeq = info.State.LastSeq + 1
	}
	if t.opt.From != "now" {
		if err := t.history(ctx); err != nil {
			return err
		}
	}
	if !t.opt.Follow {
		return nil
	}
	return t.follow(ctx, js, startSeq)
}

func (t *Tailer) history(ctx context.Context) error {
	var after int64 = -1
	if t.opt.From != "beginning" {
		after, _ = strconv.ParseInt(t.opt.From, 10, 64)
	}
	var cp eventstore.Checkpoint
	for {
		batch, err := t.store.ReadAll(ctx, cp, 1000)
		if err != nil {
			return fmt.Errorf("read history: %w", err)
		}
		for _, e := range batch {
			t.seen[e.StreamID] = e.StreamVersion
			if e.Position > after {
				if err := t.print(e); err != nil {
					return err
				}
			}
			cp = eventstore.Checkpoint{TxID: e.TxID, Position: e.Position}
		}
		if len(batch) < 1000 {
			return nil
		}
	}
}

func (t *Tailer) follow(ctx context.Context, js nats.JetStreamContext, startSeq uint64) error {
	subject := "huddle.events.>"
	if t.opt.Clinic != "" {
		subject = "huddle.events." + t.opt.Clinic + ".>"
	}
	msgs := make(chan *nats.Msg, 256)
	sub, err := js.ChanSubscribe(subject, msgs, nats.OrderedConsumer(), nats.StartSequence(startSeq), nats.BindStream(StreamName))
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", subject, err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // best effort on the way out
	var unmarshal wmnats.NATSMarshaler
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			wm, err := unmarshal.Unmarshal(m)
			if err != nil {
				return fmt.Errorf("decode live message: %w", err)
			}
			e, err := eventstore.FromMessage(wm)
			if err != nil {
				return fmt.Errorf("decode live event: %w", err)
			}
			if err := t.live(ctx, e); err != nil {
				return err
			}
		}
	}
}

// live prints one event from NATS, dropping repeats and filling holes from the store.
func (t *Tailer) live(ctx context.Context, e eventstore.RecordedEvent) error {
	last, known := t.seen[e.StreamID]
	if !known && t.opt.From != "now" {
		// History covered every stream that existed, so this one is new: it starts at 1.
		known = true
	}
	if known && e.StreamVersion <= last {
		return nil
	}
	if known && e.StreamVersion > last+1 {
		missing, err := t.store.ReadStream(ctx, e.StreamID, last+1, int(e.StreamVersion-last-1))
		if err != nil {
			return fmt.Errorf("fill %s %d..%d from the store: %w", e.StreamID, last+1, e.StreamVersion-1, err)
		}
		for _, m := range missing {
			if err := t.print(m); err != nil {
				return err
			}
		}
	}
	t.seen[e.StreamID] = e.StreamVersion
	return t.print(e)
}

func (t *Tailer) print(e eventstore.RecordedEvent) error {
	if t.opt.Clinic != "" && e.Metadata.ClinicID != t.opt.Clinic {
		return nil
	}
	if t.types != nil && !t.types[e.Type] {
		return nil
	}
	if err := t.out.Encode(ToCloudEvent(e)); err != nil {
		if errors.Is(err, io.ErrClosedPipe) {
			return err
		}
		return fmt.Errorf("write: %w", err)
	}
	return nil
}
