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
	// derive, when set, writes after a rebuild's load what the load kept in memory and what
	// apply's derived statements maintain incrementally (the load skips them).
	derive func(ctx context.Context, tx pgx.Tx, l *load) error
	// copied are the tables a rebuild's load writes only by COPY and never reads, and derived
	// the tables it leaves empty for derive to write in full. Neither needs its unique
	// constraints during the load: they are added afterwards (building an index in one go
	// costs a fraction of maintaining it row by row).
	copied, derived []string
}

// projections lists every projection, in the order rebuild and status show them.
var projections = []*projection{
	{name: Directory, categories: []string{domain.CategoryDirectory}, tables: directoryTables, apply: applyDirectory},
	{name: Inbox, categories: []string{domain.CategoryConversation, domain.CategoryMember}, tables: inboxTables, apply: applyInbox, derive: deriveInbox,
		copied: []string{"messages"}, derived: []string{"visibility", "inbox", "member_prefs"}},
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
	// load is set during a rebuild's bulk load: derived statements (see projection.derive)
	// are left out, so nothing in the batch reads messages, and new messages are collected
	// for COPY instead of inserted one by one.
	load *load
}

// load is what a rebuild's bulk load collects besides its statements.
type load struct {
	messages []messageRow // the current batch's, for COPY
	starts   []convStart  // the current batch's, COPYed ahead of its statements
	inbox    inboxLoad
}

func newLoad() *load { return &load{inbox: newInboxLoad()} }

// message inserts a message row.
func (s *stmts) message(m messageRow) {
	if s.load != nil {
		s.load.messages = append(s.load.messages, m)
		s.load.inbox.message(&m)
		return
	}
	s.b.Queue(sqlInsertMessage, m.values()...)
}

func (s *stmts) add(sql string, args ...any) { s.b.Queue(sql, args...) }

// derived queues a statement that maintains data derivable from the base tables.
func (s *stmts) derived(sql string, args ...any) {
	if s.load == nil {
		s.b.Queue(sql, args...)
	}
}

// send runs the queued statements on tx and empties the queue.
func (s *stmts) send(ctx context.Context, tx pgx.Tx) error {
	if s.load != nil && len(s.load.starts) > 0 {
		if err := copyStarts(ctx, tx, s.load.starts); err != nil {
			return err
		}
		s.load.starts = nil
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

// streamSuffix returns the id after the category prefix ("conversation-abc" → "abc"); for a
// member event, its user.
func streamSuffix(e eventstore.RecordedEvent) string {
	if e.Category() == domain.CategoryMember {
		return domain.MemberStreamUser(e.StreamID, e.Metadata.ClinicID) // member-<clinic>.<user>, or legacy member-<user>
	}
	_, id, _ := strings.Cut(e.StreamID, "-")
	return id
}
