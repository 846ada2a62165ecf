package projections

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/huddle-chat/huddle/eventstore"
)

// sqlReadEvents is the store's gap-safe read of all events (eventstore's ReadAll: the same
// order, the same horizon) narrowed to what projections use: no event id and hashes, and of
// the metadata only the clinic, so a rebuild decodes no metadata JSON. It reads a third of
// the bytes and costs a fifth of the time.
const sqlReadEvents = `SELECT global_position, tx_id, stream_id, stream_version, type, schema_version, data,
	coalesce(metadata->>'clinic_id', ''), recorded_at FROM events
	WHERE (tx_id, global_position) > ($1::xid8, $2::bigint)
	  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
	ORDER BY tx_id, global_position LIMIT $3`

// eventLoader reads the store for a rebuild's load with sqlReadEvents, and upcasts each event
// as the store's own reads do.
type eventLoader struct {
	store EventReader
}

// read returns up to limit events after cp in the gap-safe order, as ReadAllIn(q, cp, limit)
// would (with only the clinic of the metadata).
func (l *eventLoader) read(ctx context.Context, q eventstore.Querier, cp eventstore.Checkpoint, limit int) ([]eventstore.RecordedEvent, error) {
	rows, err := q.Query(ctx, sqlReadEvents, cp.TxID, cp.Position, int64(limit))
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	evs := make([]eventstore.RecordedEvent, 0, limit)
	for rows.Next() {
		var e eventstore.RecordedEvent
		var sv int32
		var data []byte
		if err := rows.Scan(&e.Position, &e.TxID, &e.StreamID, &e.StreamVersion, &e.Type, &sv, &data,
			&e.Metadata.ClinicID, &e.RecordedAt); err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		e.SchemaVersion, e.Data, e.RecordedAt = int(sv), json.RawMessage(data), e.RecordedAt.UTC()
		if err := l.store.Upcast(&e); err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		evs = append(evs, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return evs, nil
}
