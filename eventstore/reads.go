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
