package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Narrow reads: what the read-model engine, the audit and the blob store need of the events
// table, so that no package but this one names its columns.

// LastPosition returns the highest global position the store has given out (0 when it holds
// no event). It is the count of events but for gaps (rolled-back appends) and costs an index
// probe where counting reads the whole index.
func (s *Store) LastPosition(ctx context.Context) (int64, error) {
	var p int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(global_position), 0) FROM events`).Scan(&p); err != nil {
		return 0, fmt.Errorf("last position: %w", err)
	}
	return p, nil
}

// readReplaySQL is readAllSQL narrowed to what a replay uses: no event id and hashes, and of
// the metadata only the clinic, so a replay decodes no metadata JSON. It reads a third of the
// bytes and costs a fifth of the time.
const readReplaySQL = `SELECT global_position, tx_id, stream_id, stream_version, type, schema_version, data,
	coalesce(metadata->>'clinic_id', ''), recorded_at FROM events
	WHERE (tx_id, global_position) > ($1::xid8, $2::bigint)
	  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
	ORDER BY tx_id, global_position LIMIT $3`

// ReadAllForReplayIn returns what ReadAllIn(q, after, limit) returns, upcast, without the event
// ids and hashes and with only the clinic of the metadata: a rebuild's read of the whole store.
func (s *Store) ReadAllForReplayIn(ctx context.Context, q Querier, after Checkpoint, limit int) ([]RecordedEvent, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := q.Query(ctx, readReplaySQL, after.TxID, after.Position, int64(limit))
	if err != nil {
		return nil, fmt.Errorf("read for replay: %w", err)
	}
	defer rows.Close()
	evs := make([]RecordedEvent, 0, limit)
	for rows.Next() {
		var e RecordedEvent
		var sv int32
		var data []byte
		if err := rows.Scan(&e.Position, &e.TxID, &e.StreamID, &e.StreamVersion, &e.Type, &sv, &data,
			&e.Metadata.ClinicID, &e.RecordedAt); err != nil {
			return nil, fmt.Errorf("read for replay: %w", err)
		}
		e.SchemaVersion, e.Data, e.RecordedAt = int(sv), json.RawMessage(data), e.RecordedAt.UTC()
		if err := s.upcasters.upcast(&e); err != nil {
			return nil, fmt.Errorf("read for replay: %w", err)
		}
		evs = append(evs, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read for replay: %w", err)
	}
	return evs, nil
}

// EventRef locates an event without its data: where it is in its stream and in the gap-safe
// order, when it was recorded, and its clinic (from the metadata; "" when none).
type EventRef struct {
	StreamID      string
	StreamVersion int64
	Checkpoint    Checkpoint
	RecordedAt    time.Time
	ClinicID      string
}

// readRefsSQL is the gap-safe read of event references; $4/$5, when $6, bound it from above.
const readRefsSQL = `SELECT tx_id, global_position, stream_id, stream_version, recorded_at,
	coalesce(metadata->>'clinic_id', '')
	FROM events
	WHERE (tx_id, global_position) > ($1::xid8, $2::bigint)
	  AND (NOT $6 OR (tx_id, global_position) <= ($4::xid8, $5::bigint))
	  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
	ORDER BY tx_id, global_position LIMIT $3`

// EventRefsIn returns, in the gap-safe order of ReadAll, up to limit references to the events
// strictly after after and, unless upTo is zero, at or before upTo. A reader that only needs to
// know which events exist (a watermark walking over applied ones) reads these instead of the
// events.
func (s *Store) EventRefsIn(ctx context.Context, q Querier, after, upTo Checkpoint, limit int) ([]EventRef, error) {
	if limit <= 0 {
		limit = 1000
	}
	bounded := upTo != (Checkpoint{})
	rows, err := q.Query(ctx, readRefsSQL, after.TxID, after.Position, int64(limit), upTo.TxID, upTo.Position, bounded)
	if err != nil {
		return nil, fmt.Errorf("read event refs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (EventRef, error) {
		var e EventRef
		err := r.Scan(&e.Checkpoint.TxID, &e.Checkpoint.Position, &e.StreamID, &e.StreamVersion, &e.RecordedAt, &e.ClinicID)
		e.RecordedAt = e.RecordedAt.UTC()
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("read event refs: %w", err)
	}
	return out, nil
}

// StreamSpan is the part of one stream that lies in a range of the gap-safe order. A stream's
// versions follow that order (version n+1 is appended after n committed), so the span is the
// versions First to Last, all of them.
type StreamSpan struct {
	StreamID    string
	First, Last int64
	// FirstPosition and FirstRecordedAt are the first event's (in the span).
	FirstPosition   int64
	FirstRecordedAt time.Time
}

const readSpansSQL = `SELECT stream_id, min(stream_version), max(stream_version), min(global_position), min(recorded_at)
	FROM events
	WHERE (tx_id, global_position) > ($1::xid8, $2::bigint)
	  AND (NOT $5 OR (tx_id, global_position) <= ($3::xid8, $4::bigint))
	  AND split_part(stream_id, '-', 1) = ANY($6)
	GROUP BY stream_id ORDER BY min(global_position)`

// StreamSpansIn returns, for every stream of the categories with events strictly after after
// (and, unless upTo is zero, at or before upTo), the span of versions it has there, in the order
// of their first events. Unlike ReadAll it does not stop at the gap-safe horizon: it reports
// every committed event, for a caller that compares them with what it applied.
func (s *Store) StreamSpansIn(ctx context.Context, q Querier, after, upTo Checkpoint, categories []string) ([]StreamSpan, error) {
	bounded := upTo != (Checkpoint{})
	rows, err := q.Query(ctx, readSpansSQL, after.TxID, after.Position, upTo.TxID, upTo.Position, bounded, categories)
	if err != nil {
		return nil, fmt.Errorf("read stream spans: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (StreamSpan, error) {
		var sp StreamSpan
		err := r.Scan(&sp.StreamID, &sp.First, &sp.Last, &sp.FirstPosition, &sp.FirstRecordedAt)
		sp.FirstRecordedAt = sp.FirstRecordedAt.UTC()
		return sp, err
	})
	if err != nil {
		return nil, fmt.Errorf("read stream spans: %w", err)
	}
	return out, nil
}

// StreamVersionRef names one version of one stream.
type StreamVersionRef struct {
	StreamID string
	Version  int64
}

// StoredIdentity is what the store holds at a StreamVersionRef: the event's id and hash, or
// Found false.
type StoredIdentity struct {
	Found         bool
	EventID, Hash string
}

const lookupSQL = `SELECT k.i, e.event_id::text, e.hash
	FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS k(s, v, i)
	LEFT JOIN events e ON e.stream_id = k.s AND e.stream_version = k.v
	ORDER BY k.i`

// LookupIn returns, for each of refs in order, the id and hash of the event the store holds
// there (q: a pool, a connection or a transaction). One round trip for the lot.
func LookupIn(ctx context.Context, q Querier, refs []StreamVersionRef) ([]StoredIdentity, error) {
	streams := make([]string, len(refs))
	versions := make([]int64, len(refs))
	for i, r := range refs {
		streams[i], versions[i] = r.StreamID, r.Version
	}
	rows, err := q.Query(ctx, lookupSQL, streams, versions)
	if err != nil {
		return nil, fmt.Errorf("look up events: %w", err)
	}
	defer rows.Close()
	out := make([]StoredIdentity, len(refs))
	for rows.Next() {
		var i int64
		var id, hash *string
		if err := rows.Scan(&i, &id, &hash); err != nil {
			return nil, fmt.Errorf("look up events: %w", err)
		}
		if id != nil {
			out[i-1] = StoredIdentity{Found: true, EventID: *id, Hash: *hash}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look up events: %w", err)
	}
	return out, nil
}

const firstWithFieldSQL = `SELECT stream_version FROM events
	WHERE stream_id = $1 AND type = $2 AND data->>$3 = $4 AND metadata->>'clinic_id' = $5
	ORDER BY stream_version LIMIT 1`

// FirstWithFieldIn returns the version of streamID's first event of eventType, recorded for
// clinicID, whose data has the top-level string field set to value; 0 when there is none. It
// goes through the (stream_id, stream_version) index, so it costs one pass over that stream. It
// compares stored data, not upcast data: a schema version that renames field must change the
// caller.
func FirstWithFieldIn(ctx context.Context, q Querier, streamID, eventType, field, value, clinicID string) (int64, error) {
	rows, err := q.Query(ctx, firstWithFieldSQL, streamID, eventType, field, value, clinicID)
	if err != nil {
		return 0, fmt.Errorf("find %s in %s: %w", eventType, streamID, err)
	}
	v, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[int64])
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("find %s in %s: %w", eventType, streamID, err)
	}
	return v, nil
}

// Checkpoints that only move forward: a reader's cursor and the projections' watermarks, kept
// in eventstore_checkpoints beside the relay's, where RepairAfterRestore rewrites them.

const advanceCheckpointSQL = `INSERT INTO eventstore_checkpoints AS c (name, tx_id, position) VALUES ($1, $2, $3)
	ON CONFLICT (name) DO UPDATE SET tx_id = excluded.tx_id, position = excluded.position, updated_at = now()
	WHERE (c.tx_id, c.position) < (excluded.tx_id, excluded.position)`

// Execer runs a statement: a pool, a connection or a transaction.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// QueueAdvanceCheckpoint queues on b the save of the named checkpoint at cp, unless it is
// already at or after cp in the gap-safe order (so it never moves back).
func QueueAdvanceCheckpoint(b *pgx.Batch, name string, cp Checkpoint) {
	b.Queue(advanceCheckpointSQL, name, cp.TxID, cp.Position)
}

// AdvanceCheckpointIn is QueueAdvanceCheckpoint run at once on q.
func AdvanceCheckpointIn(ctx context.Context, q Execer, name string, cp Checkpoint) error {
	if _, err := q.Exec(ctx, advanceCheckpointSQL, name, cp.TxID, cp.Position); err != nil {
		return fmt.Errorf("advance checkpoint %s: %w", name, err)
	}
	return nil
}

// QueueLoadCheckpoints queues on b the read of the named checkpoints; fn gets each one that
// is stored (one never saved is left out).
func QueueLoadCheckpoints(b *pgx.Batch, names []string, fn func(name string, cp Checkpoint)) {
	b.Queue(`SELECT name, tx_id, position FROM eventstore_checkpoints WHERE name = ANY($1)`, names).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var name string
			var cp Checkpoint
			if err := rows.Scan(&name, &cp.TxID, &cp.Position); err != nil {
				return err
			}
			fn(name, cp)
		}
		return rows.Err()
	})
}

// RowQuerier runs a query for one row: a pool, a connection or a transaction.
type RowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// LoadCheckpointIn is LoadCheckpoint on q (zero when never saved).
func LoadCheckpointIn(ctx context.Context, q RowQuerier, name string) (Checkpoint, error) {
	var cp Checkpoint
	err := q.QueryRow(ctx, `SELECT tx_id, position FROM eventstore_checkpoints WHERE name = $1`, name).Scan(&cp.TxID, &cp.Position)
	if errors.Is(err, pgx.ErrNoRows) {
		return Checkpoint{}, nil
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("load checkpoint %s: %w", name, err)
	}
	return cp, nil
}
