package eventstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// RepairAfterRestore fixes the store after a pg_dump/restore into another cluster.
//
// Stored tx_id values come from the old cluster. If they are at or above the new cluster's
// transaction counter, ReadAll (which only returns rows below the oldest running transaction)
// would hide them, and would order new events before them, until the new cluster's counter
// passed them: the relay would stall. RepairAfterRestore detects that and rewrites every
// event's tx_id to 1, below any live transaction, so old events are ordered by global_position
// and new ones follow. Each checkpoint in eventstore_checkpoints becomes (1, p) where p is just
// below the first event it had not passed yet, so nothing is skipped (a few events that had
// been published out of position order may be published again; JetStream dedup and the
// consumers' per-stream versions absorb that).
//
// It is a no-op (false) on a healthy store and safe to run on every start (huddle migrate does).
// It blocks appends while it runs, and rewrites the events table once when it repairs.
func RepairAfterRestore(ctx context.Context, pool *pgxpool.Pool) (repaired bool, err error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("repair after restore: begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit
	// EXCLUSIVE waits for running appends and blocks new ones (reads continue). Every event
	// committed before the lock has a tx_id below the one this transaction gets next, unless
	// it was written by another cluster.
	if _, err := tx.Exec(ctx, `LOCK TABLE events, eventstore_checkpoints IN EXCLUSIVE MODE`); err != nil {
		return false, fmt.Errorf("repair after restore: lock: %w", err)
	}
	var broken bool
	err = tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM events WHERE tx_id >= pg_current_xact_id())
		OR EXISTS (SELECT 1 FROM eventstore_checkpoints WHERE tx_id >= pg_current_xact_id())`).Scan(&broken)
	if err != nil {
		return false, fmt.Errorf("repair after restore: detect: %w", err)
	}
	if !broken {
		return false, nil
	}
	if _, err := tx.Exec(ctx, `SET LOCAL huddle.allow_event_rewrite = 'on'`); err != nil {
		return false, fmt.Errorf("repair after restore: %w", err)
	}
	// Checkpoints first, while the old order still exists.
	_, err = tx.Exec(ctx, `UPDATE eventstore_checkpoints c SET tx_id = '1', updated_at = now(),
		position = coalesce(
			(SELECT min(e.global_position) - 1 FROM events e WHERE (e.tx_id, e.global_position) > (c.tx_id, c.position)),
			(SELECT coalesce(max(e.global_position), 0) FROM events e))`)
	if err != nil {
		return false, fmt.Errorf("repair after restore: checkpoints: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE events SET tx_id = '1' WHERE tx_id <> '1'`); err != nil {
		return false, fmt.Errorf("repair after restore: events: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("repair after restore: commit: %w", err)
	}
	return true, nil
}
