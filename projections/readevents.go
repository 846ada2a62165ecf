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

// eventLoader reads the store for a rebuild's load with sqlReadEvents. Events must still come
// out as the store gives them, upcast to their type's current schema: the first event of each
// (type, schema version) is also read through the store, and if the store changes it (an
// upcaster is registered for it), every batch holding such events is read through the store
// instead. Both reads see the same rows (see read).
type eventLoader struct {
	store EventReader
	plain map[typeVersion]bool // the store returns events of that type and version unchanged
}

type typeVersion struct {
	typ     string
	version int
}

// read returns up to limit events after cp in the gap-safe order, as ReadAllIn(q, cp, limit)
// would.
func (l *eventLoader) read(ctx context.Context, q eventstore.Querier, cp eventstore.Checkpoint, limit int) ([]eventstore.RecordedEvent, error) {
	rows, err := q.Query(ctx, sqlReadEvents, cp.TxID, cp.Position, int64(limit))
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	evs := make([]eventstore.RecordedEvent, 0, limit)
	for rows.Next() {
		var e eventstore.RecordedEvent
		var sv int32
		var data []byte
		if err := rows.Scan(&e.Position, &e.TxID, &e.StreamID, &e.StreamVersion, &e.Type, &sv, &data,
			&e.Metadata.ClinicID, &e.RecordedAt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read events: %w", err)
		}
		e.SchemaVersion, e.Data, e.RecordedAt = int(sv), json.RawMessage(data), e.RecordedAt.UTC()
		evs = append(evs, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	for _, e := range evs {
		plain, err := l.isPlain(ctx, q, e)
		if err != nil {
			return nil, err
		}
		if !plain {
			// Every row returned lies below the horizon (tx_id < the oldest running
			// transaction), so no row can still appear among them: the store's read of as many
			// events from cp returns exactly these, upcast.
			up, err := l.store.ReadAllIn(ctx, q, cp, len(evs))
			if err != nil {
				return nil, err
			}
			if len(up) != len(evs) || up[len(up)-1].Position != evs[len(evs)-1].Position {
				return nil, fmt.Errorf("read events: the store's read after %v differs (%d events, want %d)", cp, len(up), len(evs))
			}
			return up, nil
		}
	}
	return evs, nil
}

// isPlain reports whether the store reads e unchanged, i.e. has no upcaster for its type at its
// schema version (the store's upcasting depends on nothing else).
func (l *eventLoader) isPlain(ctx context.Context, q eventstore.Querier, e eventstore.RecordedEvent) (bool, error) {
	k := typeVersion{e.Type, e.SchemaVersion}
	if plain, ok := l.plain[k]; ok {
		return plain, nil
	}
	got, err := l.store.ReadStreamIn(ctx, q, e.StreamID, e.StreamVersion, 1)
	if err != nil {
		return false, err
	}
	if len(got) != 1 {
		return false, fmt.Errorf("read events: %s@%d not found through the store", e.StreamID, e.StreamVersion)
	}
	if l.plain == nil {
		l.plain = map[typeVersion]bool{}
	}
	plain := got[0].SchemaVersion == e.SchemaVersion
	l.plain[k] = plain
	return plain, nil
}
