package projections

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/huddle-chat/huddle/eventstore"
)

const (
	sqlLockProjectionShared = `SELECT pg_advisory_xact_lock_shared($1)`
	sqlLockProjection       = `SELECT pg_advisory_xact_lock($1)`
	// sqlCheckpoints reads the checkpoints of a batch's streams in one statement; a stream
	// without a row has applied nothing (version 0).
	sqlCheckpoints = `SELECT stream_id, version FROM projection_checkpoints WHERE projection = $1 AND stream_id = ANY($2)`
	// sqlSetCheckpoints advances every stream a batch applied, in one statement.
	sqlSetCheckpoints = `INSERT INTO projection_checkpoints AS c (projection, stream_id, version, position, recorded_at)
		SELECT $1, s, v, p, r FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::timestamptz[]) AS t(s, v, p, r)
		ON CONFLICT (projection, stream_id) DO UPDATE
		SET version = excluded.version, position = greatest(c.position, excluded.position), recorded_at = excluded.recorded_at`
	sqlCheckpoint = `SELECT coalesce((SELECT version FROM projection_checkpoints WHERE projection = $1 AND stream_id = $2), 0)`
)

// applied is what applyIn did, for the caller to report after commit.
type applied struct {
	events   []eventstore.RecordedEvent          // applied, in store order
	last     map[string]eventstore.RecordedEvent // each stream's newest applied event
	deferred map[string]bool                     // streams skipped: they do not continue their checkpoint
	dups     int
	commits  []func() // the after-apply hooks' work after commit
}

// applyIn applies evs (in the store's order) to p's read model in tx, by the per-stream
// protocol: skip what each stream's checkpoint already has, apply the events that continue it,
// advance the checkpoints, run its after-apply hooks. A stream whose events do not continue its
// checkpoint (an earlier event of it failed and waits for a retry, see catchup.go) is left out
// and reported in deferred: applying around the hole would apply a stream out of order.
// extra statements (the reader's cursor) go in the same round trip as the read model's.
func (e *Engine) applyIn(ctx context.Context, tx pgx.Tx, p *ReadModel, evs []eventstore.RecordedEvent, extra func(*Batch)) (applied, error) {
	res := applied{last: map[string]eventstore.RecordedEvent{}, deferred: map[string]bool{}}
	var streams []string
	seen := map[string]bool{}
	for _, ev := range evs {
		if !seen[ev.StreamID] {
			seen[ev.StreamID] = true
			streams = append(streams, ev.StreamID)
		}
	}
	versions, err := checkpointsIn(ctx, tx, p.Name, streams)
	if err != nil {
		return res, err
	}
	for _, ev := range evs {
		at := versions[ev.StreamID]
		switch {
		case res.deferred[ev.StreamID]:
		case ev.StreamVersion <= at:
			res.dups++
		case ev.StreamVersion != at+1:
			res.deferred[ev.StreamID] = true
		default:
			versions[ev.StreamID] = ev.StreamVersion
			res.events = append(res.events, ev)
			res.last[ev.StreamID] = ev
		}
	}
	var b Batch
	for _, x := range res.events {
		if e.applyHook != nil {
			if err := e.applyHook(p.Name, x); err != nil {
				return res, err
			}
		}
		if err := p.applyEvent(&b, x, p.Apply); err != nil {
			return res, err
		}
	}
	if n := len(res.last); n > 0 {
		ss, vs, ps := make([]string, 0, n), make([]int64, 0, n), make([]int64, 0, n)
		rs := make([]time.Time, 0, n)
		for _, s := range streams {
			if last, ok := res.last[s]; ok {
				ss, vs, ps = append(ss, s), append(vs, last.StreamVersion), append(ps, last.Position)
				rs = append(rs, last.RecordedAt)
			}
		}
		b.Add(sqlSetCheckpoints, p.Name, ss, vs, ps, rs)
	}
	if extra != nil {
		extra(&b)
	}
	if err := b.send(ctx, tx); err != nil {
		return res, err
	}
	if len(res.events) > 0 {
		for _, hook := range p.After {
			f, err := hook(ctx, tx, res.events)
			if err != nil {
				return res, err
			}
			if f != nil {
				res.commits = append(res.commits, f)
			}
		}
	}
	return res, nil
}

// checkpointsIn reads the checkpoints of streams in p's read model (a stream without a row has
// applied nothing: version 0) in one statement.
func checkpointsIn(ctx context.Context, q eventstore.Querier, projection string, streams []string) (map[string]int64, error) {
	versions := make(map[string]int64, len(streams))
	if len(streams) == 0 {
		return versions, nil
	}
	var s string
	var v int64
	err := forEachRow(ctx, q, sqlCheckpoints, []any{projection, streams}, []any{&s, &v}, func() error {
		versions[s] = v
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	return versions, nil
}

// storeOrder sorts events by the store's gap-safe order, the order a rebuild applies them in.
func storeOrder(evs []eventstore.RecordedEvent) {
	slices.SortStableFunc(evs, func(a, b eventstore.RecordedEvent) int {
		return cmp.Or(cmp.Compare(a.TxID, b.TxID), cmp.Compare(a.Position, b.Position))
	})
}

// parkIn records, in tx, an event that keeps failing and advances its stream past it, so the
// projection moves on; the read model is then knowingly incomplete until the cause is fixed
// and it is rebuilt.
func (e *Engine) parkIn(ctx context.Context, tx pgx.Tx, p *ReadModel, ev eventstore.RecordedEvent, cause error) error {
	e.log.Error("projection: poison event skipped", "projection", p.Name, "stream", ev.StreamID,
		"version", ev.StreamVersion, "event_id", ev.EventID, "type", ev.Type, "err", cause)
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO projection_poison (projection, stream_id, version, event_id, event_type, error)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
		p.Name, ev.StreamID, ev.StreamVersion, ev.EventID, ev.Type, cause.Error())
	b.Queue(`INSERT INTO projection_checkpoints AS c (projection, stream_id, version, position, recorded_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (projection, stream_id) DO UPDATE
		SET version = greatest(c.version, excluded.version), position = greatest(c.position, excluded.position)`,
		p.Name, ev.StreamID, ev.StreamVersion, ev.Position, ev.RecordedAt)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("record poison: %w", err)
	}
	return nil
}

// transient reports errors worth retrying forever: anything but a statement the database
// rejected for its data (SQLSTATE classes 22 data exception, 23 integrity violation) or an
// event we cannot decode.
func transient(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return !(len(pg.Code) == 5 && (pg.Code[:2] == "22" || pg.Code[:2] == "23"))
	}
	var de *decodeError
	return !errors.As(err, &de)
}

// decodeError marks an event whose data does not decode.
type decodeError struct{ err error }

func (d *decodeError) Error() string { return d.err.Error() }
func (d *decodeError) Unwrap() error { return d.err }
