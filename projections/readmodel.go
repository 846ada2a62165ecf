package projections

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
)

// ReadModel is one read model as the engine runs it (docs/adr/0014-read-model-contract.md):
// the stream categories it consumes, the tables it owns (a rebuild recreates them) and how it
// turns one event into SQL. The engine knows read models only through this contract; the
// wiring passes the list to NewEngine.
type ReadModel struct {
	// Name names the read model in checkpoints, locks, metrics and the CLI.
	Name       string
	Categories []string
	Tables     []string
	// Apply queues the statements one event needs. It never reads: every statement is
	// set-based on what is already in the tables, so a batch of events can be pipelined.
	Apply func(b *Batch, e eventstore.RecordedEvent, ev domain.Event) error
	// NewLoad, when set, starts a rebuild's bulk load, which then applies the events instead
	// of Apply.
	NewLoad func() BulkLoad
	// Copied are the tables a bulk load writes only by COPY and never reads, and Derived the
	// tables it leaves empty for Finish to write in full. Neither needs its unique constraints
	// during the load: they are added afterwards (building an index in one go costs a fraction
	// of maintaining it row by row).
	Copied, Derived []string
	// After runs, in order, in the transaction of every live batch, after its statements (a
	// rebuild runs none).
	After []AfterApply
}

// AfterApply runs in the transaction that applied events (in the store's order; the read
// model's tables as that transaction sees them) and returns what to run once it committed
// (nil: nothing). The live feed is one.
type AfterApply func(ctx context.Context, tx pgx.Tx, events []eventstore.RecordedEvent) (afterCommit func(), err error)

// BulkLoad is a read model's part of a rebuild: it applies the whole store, batch by batch, in
// its own way (keeping what nothing in the load reads in memory, collecting rows to COPY), and
// writes what it kept at the end.
type BulkLoad interface {
	// Apply queues, or keeps, what one event needs.
	Apply(b *Batch, e eventstore.RecordedEvent, ev domain.Event) error
	// Flush writes, in tx, what must precede the batch's queued statements.
	Flush(ctx context.Context, tx pgx.Tx) error
	// Copy hands over the batch's rows for a second connection on the same shadow schema,
	// which runs the writes in order beside the statements (nil: none).
	Copy() func(ctx context.Context, conn *pgx.Conn) error
	// Finish writes, after the load, what the load kept in memory.
	Finish(ctx context.Context, tx pgx.Tx) error
}

// handles reports whether the read model consumes events of streamID's category.
func (p *ReadModel) handles(streamID string) bool {
	cat := eventstore.Category(streamID)
	for _, c := range p.Categories {
		if c == cat {
			return true
		}
	}
	return false
}

// Batch is a queue of statements for one or many events, sent as one pgx batch.
type Batch struct {
	b pgx.Batch
}

// Add queues a statement.
func (s *Batch) Add(sql string, args ...any) { s.b.Queue(sql, args...) }

// send runs the queued statements on tx and empties the queue.
func (s *Batch) send(ctx context.Context, tx pgx.Tx) error {
	if s.b.Len() == 0 {
		return nil
	}
	err := tx.SendBatch(ctx, &s.b).Close()
	s.b = pgx.Batch{}
	if err != nil {
		return fmt.Errorf("apply statements: %w", err)
	}
	return nil
}

// applyEvent decodes e and queues p's statements for it (apply: p.Apply or a bulk load's).
// Unknown event types are skipped (a newer writer may know more types than this reader);
// undecodable data is an error.
func (p *ReadModel) applyEvent(b *Batch, e eventstore.RecordedEvent, apply func(*Batch, eventstore.RecordedEvent, domain.Event) error) error {
	ev, err := domain.Decode(e.Type, e.Data)
	if err != nil {
		if strings.Contains(err.Error(), "unknown event type") {
			return nil
		}
		return &decodeError{fmt.Errorf("%s: %s@%d: %w", p.Name, e.StreamID, e.StreamVersion, err)}
	}
	if err := apply(b, e, ev); err != nil {
		return fmt.Errorf("%s: %s@%d %s: %w", p.Name, e.StreamID, e.StreamVersion, e.Type, err)
	}
	return nil
}

// StreamSuffix returns the id after the category prefix ("conversation-abc" → "abc").
func StreamSuffix(streamID string) string {
	_, id, _ := strings.Cut(streamID, "-")
	return id
}

// ClinicOf is the clinic an event belongs to: its metadata's, or for a directory stream the
// stream's own (directory-<clinic>).
func ClinicOf(e eventstore.RecordedEvent) string {
	if e.Metadata.ClinicID != "" {
		return e.Metadata.ClinicID
	}
	if e.Category() == domain.CategoryDirectory {
		return StreamSuffix(e.StreamID)
	}
	return ""
}
