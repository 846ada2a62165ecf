package live

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Entry kinds, the SSE event names of API.md.
const (
	KindMessage      = "message"
	KindConversation = "conversation"
	KindUnread       = "unread"
	KindRemoved      = "removed"
	// KindReset is sent (never stored) when a client resumes from beyond the retention window.
	KindReset = "reset"
)

// Entry is one stored live update for one user.
type Entry struct {
	Seq       int64
	Kind      string
	Body      json.RawMessage
	CreatedAt time.Time
}

// Target names one user's feed.
type Target struct{ ClinicID, UserID string }

const (
	sqlNextSeq = `INSERT INTO live_cursor (clinic_id, user_id, last_seq) VALUES ($1, $2, 1)
		ON CONFLICT (clinic_id, user_id) DO UPDATE SET last_seq = live_cursor.last_seq + 1
		RETURNING last_seq`
	sqlInsertEntry = `INSERT INTO live_feed (clinic_id, user_id, seq, kind, body) VALUES ($1, $2, $3, $4, $5)`
	sqlReadAfter   = `SELECT seq, kind, body, created_at FROM live_feed
		WHERE clinic_id = $1 AND user_id = $2 AND seq > $3 ORDER BY seq LIMIT $4`
	sqlBounds = `SELECT coalesce((SELECT min(seq) FROM live_feed WHERE clinic_id = $1 AND user_id = $2), 0),
		coalesce((SELECT last_seq FROM live_cursor WHERE clinic_id = $1 AND user_id = $2), 0)`
	sqlPrune = `DELETE FROM live_feed WHERE created_at < $1`
	// sqlReserve moves each user's cursor by their number of new entries (each user once).
	sqlReserve = `INSERT INTO live_cursor AS c (clinic_id, user_id, last_seq)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
		ON CONFLICT (clinic_id, user_id) DO UPDATE SET last_seq = c.last_seq + excluded.last_seq
		RETURNING clinic_id, user_id, last_seq`
)

// Pending is an entry to append.
type Pending struct {
	To   Target
	Kind string
	Body any
}

// Written is an entry AppendAll wrote, for the user it was written to: what Notifier.Deliver
// pushes to the user's streams after the transaction commits.
type Written struct {
	To Target
	Entry
}

// AppendAll appends entries inside tx, in the given order per user, in two steps whatever
// their number: one statement moves each user's cursor by their count of entries (users in id
// order, so two transactions lock cursor rows in the same order), then a COPY writes the
// entries with the sequences that freed (a projector's batch writes thousands: COPY is about
// five times faster than the same rows through INSERT ... unnest, and twenty than row inserts).
func AppendAll(ctx context.Context, tx pgx.Tx, entries []Pending) ([]Written, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	counts := map[Target]int64{}
	for _, p := range entries {
		counts[p.To]++
	}
	users := make([]Target, 0, len(counts))
	for t := range counts {
		users = append(users, t)
	}
	slices.SortFunc(users, func(a, b Target) int {
		return cmp.Or(cmp.Compare(a.ClinicID, b.ClinicID), cmp.Compare(a.UserID, b.UserID))
	})
	clinics, ids, ns := make([]string, len(users)), make([]string, len(users)), make([]int64, len(users))
	for i, t := range users {
		clinics[i], ids[i], ns[i] = t.ClinicID, t.UserID, counts[t]
	}
	rows, err := tx.Query(ctx, sqlReserve, clinics, ids, ns)
	if err != nil {
		return nil, fmt.Errorf("live: reserve: %w", err)
	}
	next := make(map[Target]int64, len(users)) // the first sequence reserved
	for rows.Next() {
		var t Target
		var last int64
		if err := rows.Scan(&t.ClinicID, &t.UserID, &last); err != nil {
			rows.Close()
			return nil, fmt.Errorf("live: reserve: %w", err)
		}
		next[t] = last - counts[t] + 1
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("live: reserve: %w", err)
	}
	rowsIn := make([][]any, len(entries))
	written := make([]Written, len(entries))
	for i, p := range entries {
		raw, err := json.Marshal(p.Body)
		if err != nil {
			return nil, fmt.Errorf("live: encode %s: %w", p.Kind, err)
		}
		rowsIn[i] = []any{p.To.ClinicID, p.To.UserID, next[p.To], p.Kind, raw}
		written[i] = Written{To: p.To, Entry: Entry{Seq: next[p.To], Kind: p.Kind, Body: raw}}
		next[p.To]++
	}
	if len(rowsIn) <= copyAbove {
		return written, insertEntries(ctx, tx, rowsIn)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"live_feed"}, []string{"clinic_id", "user_id", "seq", "kind", "body"}, pgx.CopyFromRows(rowsIn)); err != nil {
		return nil, fmt.Errorf("live: append: %w", err)
	}
	return written, nil
}

// copyAbove is the batch size from which COPY beats one INSERT of arrays: COPY costs about a
// millisecond of server time per call whatever it carries (the largest cost per message of a
// live batch of a few entries, at 200 messages/s), and is about 5× faster per row for
// thousands of rows.
const copyAbove = 64

const sqlInsertEntries = `INSERT INTO live_feed (clinic_id, user_id, seq, kind, body)
	SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::jsonb[])`

// insertEntries writes rows (clinic, user, seq, kind, body) with one statement.
func insertEntries(ctx context.Context, tx pgx.Tx, rows [][]any) error {
	n := len(rows)
	clinics, users, kinds, bodies := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	seqs := make([]int64, n)
	for i, r := range rows {
		clinics[i], users[i], seqs[i], kinds[i] = r[0].(string), r[1].(string), r[2].(int64), r[3].(string)
		bodies[i] = string(r[4].([]byte))
	}
	if _, err := tx.Exec(ctx, sqlInsertEntries, clinics, users, seqs, kinds, bodies); err != nil {
		return fmt.Errorf("live: append: %w", err)
	}
	return nil
}

// Append adds an entry to a user's feed inside tx and returns its sequence number. Call
// Notifier.Notify for the user after tx commits.
func Append(ctx context.Context, tx pgx.Tx, to Target, kind string, body any) (int64, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return 0, fmt.Errorf("live: encode %s: %w", kind, err)
	}
	var seq int64
	if err := tx.QueryRow(ctx, sqlNextSeq, to.ClinicID, to.UserID).Scan(&seq); err != nil {
		return 0, fmt.Errorf("live: next seq: %w", err)
	}
	if _, err := tx.Exec(ctx, sqlInsertEntry, to.ClinicID, to.UserID, seq, kind, raw); err != nil {
		return 0, fmt.Errorf("live: append: %w", err)
	}
	return seq, nil
}

// Feed reads users' feeds.
type Feed struct{ pool *pgxpool.Pool }

// NewFeed returns a reader over the live_feed table.
func NewFeed(pool *pgxpool.Pool) *Feed { return &Feed{pool: pool} }

// After returns up to limit entries with seq > after, oldest first.
func (f *Feed) After(ctx context.Context, to Target, after int64, limit int) ([]Entry, error) {
	rows, err := f.pool.Query(ctx, sqlReadAfter, to.ClinicID, to.UserID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("live: read feed: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) {
		var e Entry
		err := r.Scan(&e.Seq, &e.Kind, &e.Body, &e.CreatedAt)
		return e, err
	})
}

// Bounds returns the oldest retained and the newest sequence of a user's feed (0 when none).
func (f *Feed) Bounds(ctx context.Context, to Target) (oldest, newest int64, err error) {
	if err := f.pool.QueryRow(ctx, sqlBounds, to.ClinicID, to.UserID).Scan(&oldest, &newest); err != nil {
		return 0, 0, fmt.Errorf("live: feed bounds: %w", err)
	}
	return oldest, newest, nil
}

// Prune deletes entries older than the retention window and returns how many it removed.
func (f *Feed) Prune(ctx context.Context, retention time.Duration) (int64, error) {
	tag, err := f.pool.Exec(ctx, sqlPrune, time.Now().Add(-retention))
	if err != nil {
		return 0, fmt.Errorf("live: prune: %w", err)
	}
	return tag.RowsAffected(), nil
}
