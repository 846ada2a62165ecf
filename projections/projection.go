package projections

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
)

// Projection names.
const (
	Directory = "directory"
	Inbox     = "inbox"
)

// projection is one read model: the stream categories it consumes, the tables it owns (dropped
// and recreated by a rebuild) and how it turns one event into SQL.
type projection struct {
	name       string
	categories []string
	tables     []string
	// apply queues the statements one event needs. It never reads: every statement is
	// set-based on what is already in the tables, so a batch of events can be pipelined.
	apply func(b *stmts, e eventstore.RecordedEvent, ev domain.Event) error
	// derive, when set, recomputes in one statement what apply's derived statements
	// maintain incrementally; a rebuild skips those during its bulk load and calls this once.
	derive func(ctx context.Context, tx pgx.Tx) error
}

// projections lists every projection, in the order rebuild and status show them.
var projections = []*projection{
	{name: Directory, categories: []string{domain.CategoryDirectory}, tables: directoryTables, apply: applyDirectory},
	{name: Inbox, categories: []string{domain.CategoryConversation, domain.CategoryMember}, tables: inboxTables, apply: applyInbox, derive: deriveInbox},
}

// Names lists the projections.
func Names() []string {
	out := make([]string, len(projections))
	for i, p := range projections {
		out[i] = p.name
	}
	return out
}

func projectionByName(name string) (*projection, bool) {
	for _, p := range projections {
		if p.name == name {
			return p, true
		}
	}
	return nil, false
}

// handles reports whether the projection consumes events of streamID's category.
func (p *projection) handles(streamID string) bool {
	cat := eventstore.Category(streamID)
	for _, c := range p.categories {
		if c == cat {
			return true
		}
	}
	return false
}

// projectionsFor returns the projections that consume streamID's events.
func projectionsFor(streamID string) []*projection {
	var out []*projection
	for _, p := range projections {
		if p.handles(streamID) {
			out = append(out, p)
		}
	}
	return out
}

// stmts is a queue of statements for one or many events, sent as one pgx batch.
type stmts struct {
	b pgx.Batch
	// skipDerived drops derived statements (see projection.derive) during a rebuild's load;
	// then nothing in the batch reads messages, so new messages are COPYed in instead.
	skipDerived bool
	messages    [][]any
}

// message inserts a message row (columns messageColumns).
func (s *stmts) message(row ...any) {
	if s.skipDerived {
		s.messages = append(s.messages, row)
		return
	}
	s.b.Queue(sqlInsertMessage, row...)
}

func (s *stmts) add(sql string, args ...any) { s.b.Queue(sql, args...) }

// derived queues a statement that maintains data derivable from the base tables.
func (s *stmts) derived(sql string, args ...any) {
	if !s.skipDerived {
		s.b.Queue(sql, args...)
	}
}

// send runs the queued statements on tx and empties the queue.
func (s *stmts) send(ctx context.Context, tx pgx.Tx) error {
	if len(s.messages) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"messages"}, messageColumns, pgx.CopyFromRows(s.messages)); err != nil {
			return fmt.Errorf("copy messages: %w", err)
		}
		s.messages = nil
	}
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

// applyEvent decodes e and queues p's statements for it. Unknown event types are skipped (a
// newer writer may know more types than this reader); undecodable data is an error.
func (p *projection) applyEvent(b *stmts, e eventstore.RecordedEvent) error {
	ev, err := domain.Decode(e.Type, e.Data)
	if err != nil {
		if strings.Contains(err.Error(), "unknown event type") {
			return nil
		}
		return &decodeError{fmt.Errorf("%s: %s@%d: %w", p.name, e.StreamID, e.StreamVersion, err)}
	}
	if err := p.apply(b, e, ev); err != nil {
		return fmt.Errorf("%s: %s@%d %s: %w", p.name, e.StreamID, e.StreamVersion, e.Type, err)
	}
	return nil
}

// streamSuffix returns the id after the category prefix ("conversation-abc" → "abc").
func streamSuffix(streamID string) string {
	_, id, _ := strings.Cut(streamID, "-")
	return id
}
