package eventstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// EventIDAt returns the id of streamID's event at version, and false when the store has no
// such event. A consumer of the broker uses it to tell a message the store wrote from one it
// did not (a forged or foreign publish on huddle.events.>).
func (s *Store) EventIDAt(ctx context.Context, streamID string, version int64) (string, bool, error) {
	var id string
	err := s.pool.QueryRow(ctx, `SELECT event_id::text FROM events WHERE stream_id = $1 AND stream_version = $2`,
		streamID, version).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("event id of %s@%d: %w", streamID, version, err)
	}
	return id, true, nil
}

// readAllOfSQL is readAllSQL that sends data and metadata only for events of the given
// categories ($4): a reader that consumes a few categories still walks every event (the order
// is global) but need not receive and decode the others.
const readAllOfSQL = `SELECT split_part(stream_id, '-', 1) = ANY($4), global_position, tx_id, stream_id, stream_version,
	event_id::text, type, schema_version,
	CASE WHEN split_part(stream_id, '-', 1) = ANY($4) THEN data ELSE 'null'::jsonb END,
	CASE WHEN split_part(stream_id, '-', 1) = ANY($4) THEN metadata END,
	recorded_at, prev_hash, hash
	FROM events
	WHERE (tx_id, global_position) > ($1::xid8, $2::bigint)
	  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
	ORDER BY tx_id, global_position LIMIT $3`

// ReadAllOfIn is ReadAllIn for a reader of some categories: it returns, up to limit events
// after the checkpoint in the gap-safe order, those of the categories (upcast), and the
// checkpoint of the last event it passed, whatever its category (the checkpoint to resume
// from; after itself when it passed none).
func (s *Store) ReadAllOfIn(ctx context.Context, q Querier, after Checkpoint, categories []string, limit int) ([]RecordedEvent, Checkpoint, error) {
	out, passed, _, err := s.ReadAllOfInCounted(ctx, q, after, categories, limit)
	return out, passed, err
}

// ReadAllOfInCounted is ReadAllOfIn that also says how many events it passed, of any
// category: fewer than limit means it read all there was to read (below the gap-safe horizon).
func (s *Store) ReadAllOfInCounted(ctx context.Context, q Querier, after Checkpoint, categories []string, limit int) ([]RecordedEvent, Checkpoint, int, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := q.Query(ctx, readAllOfSQL, after.TxID, after.Position, int64(limit), categories)
	if err != nil {
		return nil, after, 0, fmt.Errorf("read all: %w", err)
	}
	defer rows.Close()
	var out []RecordedEvent
	passed := after
	n := 0
	for rows.Next() {
		n++
		var e RecordedEvent
		var match bool
		if err := scanEvent(rows, &e, &match); err != nil {
			return nil, after, 0, fmt.Errorf("read all: %w", err)
		}
		passed = CheckpointOf(e)
		if !match {
			continue
		}
		if err := s.upcasters.upcast(&e); err != nil {
			return nil, after, 0, fmt.Errorf("read all: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, after, 0, fmt.Errorf("read all: %w", err)
	}
	return out, passed, n, nil
}
