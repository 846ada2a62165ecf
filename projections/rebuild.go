package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/huddle-chat/huddle/eventstore"
)

// RebuildBatch is how many events a rebuild reads from the store per round trip.
const RebuildBatch = 5000

// ErrRebuildRunning means another process is rebuilding that projection right now.
var ErrRebuildRunning = errors.New("a rebuild of this projection is already running")

// Rebuild recreates the named projections (all when names is empty) from the event store:
// it replays every event into shadow tables in a schema of their own, then, in one
// transaction that briefly holds the live appliers off, applies what arrived meanwhile and
// swaps the shadow tables in. Readers see the old tables until that commit and the new ones
// after it; live projection continues from the rebuilt checkpoints. progress, when not nil, is
// called after every batch with the events read and the store's total (an estimate).
func (e *Engine) Rebuild(ctx context.Context, names []string, progress func(done, total int64)) error {
	var ps []*projection
	if len(names) == 0 {
		ps = projections
	}
	for _, n := range names {
		p, ok := projectionByName(n)
		if !ok {
			return fmt.Errorf("rebuild: unknown projection %q (have %v)", n, Names())
		}
		ps = append(ps, p)
	}
	for _, p := range ps {
		if err := e.rebuild(ctx, p, progress); err != nil {
			return fmt.Errorf("rebuild %s: %w", p.name, err)
		}
	}
	return nil
}

// rebuildLockKey serialises rebuilds of one projection across processes.
func rebuildLockKey(projection string) int64 { return lockKey("rebuild:" + projection) }

type streamMark struct {
	version  int64
	position int64
	at       time.Time
}

func (e *Engine) rebuild(ctx context.Context, p *projection, progress func(done, total int64)) error {
	// A connection of its own: its search_path points at the shadow schema, so the projection's
	// unqualified SQL writes the shadow tables. It never goes back to the pool.
	conn, err := pgx.ConnectConfig(ctx, e.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, rebuildLockKey(p.name)).Scan(&locked); err != nil {
		return fmt.Errorf("rebuild lock: %w", err)
	}
	if !locked {
		return ErrRebuildRunning
	}
	var live string
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&live); err != nil {
		return fmt.Errorf("current schema: %w", err)
	}
	shadow := "rebuild_" + p.name
	tables := append(append([]string(nil), p.tables...), "projection_checkpoints")
	setup := []string{
		`DROP SCHEMA IF EXISTS ` + ident(shadow) + ` CASCADE`,
		`CREATE SCHEMA ` + ident(shadow),
	}
	for _, t := range tables {
		setup = append(setup, `CREATE TABLE `+ident(shadow, t)+` (LIKE `+ident(live, t)+` INCLUDING ALL)`)
	}
	setup = append(setup, `SET search_path TO `+ident(shadow))
	for _, q := range setup {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("prepare shadow schema: %s: %w", q, err)
		}
	}
	dropShadow := func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `DROP SCHEMA IF EXISTS `+ident(shadow)+` CASCADE`)
	}

	var total int64
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&total); err != nil {
		total = -1 // progress without a total
	}
	start := time.Now()
	marks := map[string]streamMark{}
	var cp eventstore.Checkpoint
	var done int64
	for {
		evs, err := e.store.ReadAll(ctx, cp, RebuildBatch)
		if err != nil {
			dropShadow()
			return err
		}
		if len(evs) == 0 {
			break
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return applyBatch(ctx, tx, p, evs, marks) })
		if err != nil {
			dropShadow()
			return err
		}
		cp = eventstore.CheckpointOf(evs[len(evs)-1])
		done += int64(len(evs))
		if progress != nil {
			progress(done, max(total, done))
		}
	}

	// The swap. The exclusive projection lock waits for in-flight live appliers and holds new
	// ones off until commit; under it, apply what the store gained since the last batch, and
	// any stream the live appliers got further on (events the gap-safe read could not see yet),
	// then replace the live tables.
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sqlLockProjection, lockKey(p.name)); err != nil {
			return fmt.Errorf("lock projection: %w", err)
		}
		for {
			evs, err := e.store.ReadAll(ctx, cp, RebuildBatch)
			if err != nil {
				return err
			}
			if len(evs) == 0 {
				break
			}
			if err := applyBatch(ctx, tx, p, evs, marks); err != nil {
				return err
			}
			cp = eventstore.CheckpointOf(evs[len(evs)-1])
			done += int64(len(evs))
		}
		rows, err := tx.Query(ctx, `SELECT stream_id, version FROM `+ident(live, "projection_checkpoints")+` WHERE projection = $1`, p.name)
		if err != nil {
			return fmt.Errorf("live checkpoints: %w", err)
		}
		type behind struct {
			stream string
			from   int64
		}
		var todo []behind
		for rows.Next() {
			var s string
			var v int64
			if err := rows.Scan(&s, &v); err != nil {
				rows.Close()
				return err
			}
			if v > marks[s].version {
				todo = append(todo, behind{s, marks[s].version + 1})
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, b := range todo {
			evs, err := e.store.ReadStream(ctx, b.stream, b.from, 0)
			if err != nil {
				return err
			}
			if err := applyBatch(ctx, tx, p, evs, marks); err != nil {
				return err
			}
		}
		for _, t := range p.tables {
			if _, err := tx.Exec(ctx, `DROP TABLE `+ident(live, t)); err != nil {
				return fmt.Errorf("drop %s: %w", t, err)
			}
			if _, err := tx.Exec(ctx, `ALTER TABLE `+ident(shadow, t)+` SET SCHEMA `+ident(live)); err != nil {
				return fmt.Errorf("move %s: %w", t, err)
			}
		}
		for _, q := range []string{
			`DELETE FROM ` + ident(live, "projection_checkpoints") + ` WHERE projection = $1`,
			`INSERT INTO ` + ident(live, "projection_checkpoints") + ` SELECT * FROM ` + ident(shadow, "projection_checkpoints") + ` WHERE projection = $1`,
			`DELETE FROM ` + ident(live, "projection_poison") + ` WHERE projection = $1`,
		} {
			if _, err := tx.Exec(ctx, q, p.name); err != nil {
				return fmt.Errorf("swap checkpoints: %w", err)
			}
		}
		if _, err := tx.Exec(ctx, `DROP SCHEMA `+ident(shadow)+` CASCADE`); err != nil {
			return fmt.Errorf("drop shadow schema: %w", err)
		}
		return nil
	})
	if err != nil {
		dropShadow()
		return fmt.Errorf("swap: %w", err)
	}
	if progress != nil {
		progress(done, done)
	}
	e.log.Info("projection rebuilt", "projection", p.name, "events", done, "streams", len(marks),
		"seconds", time.Since(start).Seconds())
	return nil
}

const sqlUpsertCheckpoints = `INSERT INTO projection_checkpoints (projection, stream_id, version, position, recorded_at)
	SELECT $1, s, v, pos, at FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::timestamptz[]) AS t(s, v, pos, at)
	ON CONFLICT (projection, stream_id) DO UPDATE
	SET version = EXCLUDED.version, position = greatest(projection_checkpoints.position, EXCLUDED.position),
	    recorded_at = EXCLUDED.recorded_at`

// applyBatch applies the events p reads (skipping any a stream already has) and records the
// streams' checkpoints, all as one pipelined batch on tx.
func applyBatch(ctx context.Context, tx pgx.Tx, p *projection, evs []eventstore.RecordedEvent, marks map[string]streamMark) error {
	var b stmts
	touched := map[string]bool{}
	for _, ev := range evs {
		if !p.handles(ev.StreamID) || ev.StreamVersion <= marks[ev.StreamID].version {
			continue
		}
		if err := p.applyEvent(&b, ev); err != nil {
			return err
		}
		marks[ev.StreamID] = streamMark{version: ev.StreamVersion, position: ev.Position, at: ev.RecordedAt}
		touched[ev.StreamID] = true
	}
	if len(touched) == 0 {
		return nil
	}
	streams := make([]string, 0, len(touched))
	versions := make([]int64, 0, len(touched))
	positions := make([]int64, 0, len(touched))
	ats := make([]time.Time, 0, len(touched))
	for s := range touched {
		m := marks[s]
		streams = append(streams, s)
		versions = append(versions, m.version)
		positions = append(positions, m.position)
		ats = append(ats, m.at)
	}
	b.add(sqlUpsertCheckpoints, p.name, streams, versions, positions, ats)
	return b.send(ctx, tx)
}

func ident(parts ...string) string { return pgx.Identifier(parts).Sanitize() }
