package projections

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/huddle-chat/huddle/eventstore"
)

// RebuildBatch is how many events a rebuild reads from the store per round trip.
const RebuildBatch = 20000

// ErrRebuildRunning means another process is rebuilding that projection right now.
var ErrRebuildRunning = errors.New("a rebuild of this projection is already running")

// Rebuild recreates the named projections (all when names is empty) from the event store.
// It replays every event once, in the store's gap-safe order and in large batches, into
// shadow tables in a schema of their own (secondary indexes are built after the load), then,
// in one transaction that briefly holds that projection's live appliers off, applies what
// arrived meanwhile and swaps the shadow tables in. Readers see the old tables until that
// commit and the new ones after it; live projection continues from the rebuilt checkpoints.
// progress, when not nil, is called after every batch with the events read and the store's
// total (an estimate taken at the start).
func (e *Engine) Rebuild(ctx context.Context, names []string, progress func(done, total int64)) error {
	var ps []*projection
	for _, p := range projections { // fixed order: swap locks are always taken in this order
		if len(names) == 0 || contains(names, p.name) {
			ps = append(ps, p)
		}
	}
	for _, n := range names {
		if _, ok := projectionByName(n); !ok {
			return fmt.Errorf("rebuild: unknown projection %q (have %v)", n, Names())
		}
	}
	if err := e.rebuild(ctx, ps, progress); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// rebuildLockKey serialises rebuilds of one projection across processes.
func rebuildLockKey(projection string) int64 { return lockKey("rebuild:" + projection) }

type streamMark struct {
	version  int64
	position int64
	at       time.Time
}

// sqlDeferrableIndexes lists the shadow schema's indexes that back no constraint: they are
// dropped for the load and recreated after it (maintaining them row by row costs more).
const sqlDeferrableIndexes = `SELECT ic.relname, pg_get_indexdef(i.indexrelid)
	FROM pg_index i
	JOIN pg_class ic ON ic.oid = i.indexrelid
	JOIN pg_namespace n ON n.oid = ic.relnamespace
	WHERE n.nspname = $1 AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)`

func (e *Engine) rebuild(ctx context.Context, ps []*projection, progress func(done, total int64)) error {
	// A connection of its own: its search_path points at the shadow schema, so the projections'
	// unqualified SQL writes the shadow tables. It never goes back to the pool.
	conn, err := pgx.ConnectConfig(ctx, e.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.name
		var locked bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, rebuildLockKey(p.name)).Scan(&locked); err != nil {
			return fmt.Errorf("rebuild lock: %w", err)
		}
		if !locked {
			return fmt.Errorf("%s: %w", p.name, ErrRebuildRunning)
		}
	}
	var live string
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&live); err != nil {
		return fmt.Errorf("current schema: %w", err)
	}
	shadow := "rebuild_" + strings.Join(names, "_")
	tables := []string{"projection_checkpoints"}
	for _, p := range ps {
		tables = append(tables, p.tables...)
	}
	setup := []string{
		`DROP SCHEMA IF EXISTS ` + ident(shadow) + ` CASCADE`,
		`CREATE SCHEMA ` + ident(shadow),
	}
	for _, t := range tables {
		setup = append(setup, `CREATE TABLE `+ident(shadow, t)+` (LIKE `+ident(live, t)+` INCLUDING ALL)`)
	}
	for _, q := range setup {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("prepare shadow schema: %s: %w", q, err)
		}
	}
	dropShadow := func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `DROP SCHEMA IF EXISTS `+ident(shadow)+` CASCADE`)
	}
	var deferred []string
	rows, err := conn.Query(ctx, sqlDeferrableIndexes, shadow)
	if err != nil {
		dropShadow()
		return fmt.Errorf("list indexes: %w", err)
	}
	var drops []string
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			rows.Close()
			dropShadow()
			return err
		}
		drops = append(drops, `DROP INDEX `+ident(shadow, name))
		deferred = append(deferred, def)
	}
	rows.Close()
	// A rebuild can always be run again, so its commits need not wait for the WAL flush.
	for _, q := range append(drops, `SET search_path TO `+ident(shadow), `SET synchronous_commit TO off`,
		`SET work_mem TO '256MB'`, `SET maintenance_work_mem TO '256MB'`) {
		if _, err := conn.Exec(ctx, q); err != nil {
			dropShadow()
			return fmt.Errorf("prepare shadow schema: %s: %w", q, err)
		}
	}

	var total int64
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&total); err != nil {
		total = -1 // progress without a total
	}
	start := time.Now()
	marks := map[string]map[string]streamMark{}
	for _, p := range ps {
		marks[p.name] = map[string]streamMark{}
	}
	// Read the next batch while the previous one is applied: the store and the shadow tables
	// are different work for the database, and the decoding is ours.
	var cp eventstore.Checkpoint
	var done int64
	batches := make(chan []eventstore.RecordedEvent, 1)
	readCtx, stopReading := context.WithCancel(ctx)
	readErr := make(chan error, 1)
	var readTime time.Duration // owned by the reader until readErr is received
	go func() {
		defer close(batches)
		var at eventstore.Checkpoint
		for {
			t0 := time.Now()
			evs, err := e.store.ReadAll(readCtx, at, RebuildBatch)
			readTime += time.Since(t0)
			if err != nil || len(evs) == 0 {
				readErr <- err
				return
			}
			at = eventstore.CheckpointOf(evs[len(evs)-1])
			select {
			case batches <- evs:
			case <-readCtx.Done():
				readErr <- readCtx.Err()
				return
			}
		}
	}()
	var loadErr error
	for evs := range batches {
		if loadErr != nil {
			continue // drain so the reader can finish
		}
		loadErr = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error { return applyBatch(ctx, tx, ps, evs, marks, true) })
		if loadErr != nil {
			stopReading()
			continue
		}
		cp = eventstore.CheckpointOf(evs[len(evs)-1])
		done += int64(len(evs))
		if progress != nil {
			progress(done, max(total, done))
		}
	}
	stopReading()
	if err := errors.Join(loadErr, <-readErr); err != nil {
		dropShadow()
		return err
	}
	e.log.Debug("rebuild: store reads", "seconds", readTime.Seconds())
	e.log.Debug("rebuild: loaded", "events", done, "seconds", time.Since(start).Seconds())
	// The load skipped the derived statements: compute their columns once, set-based.
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, p := range ps {
			if p.derive != nil {
				if err := p.derive(ctx, tx); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		dropShadow()
		return err
	}
	e.log.Debug("rebuild: derived", "seconds", time.Since(start).Seconds())
	// The definitions name their table schema-qualified but their operator classes as seen
	// from the live schema (pg_trgm's live there), so build them with that search_path.
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL search_path TO `+ident(live)); err != nil {
			return err
		}
		for _, def := range deferred {
			if _, err := tx.Exec(ctx, def); err != nil {
				return fmt.Errorf("build index: %s: %w", def, err)
			}
		}
		return nil
	})
	if err != nil {
		dropShadow()
		return err
	}
	for _, t := range tables {
		if _, err := conn.Exec(ctx, `ANALYZE `+ident(shadow, t)); err != nil {
			dropShadow()
			return fmt.Errorf("analyze %s: %w", t, err)
		}
	}

	e.log.Debug("rebuild: indexed", "seconds", time.Since(start).Seconds())
	// The swap. The exclusive projection locks wait for in-flight live appliers and hold new
	// ones off until commit; under them, apply what the store gained since the last batch, and
	// any stream the live appliers got further on (events the gap-safe read could not see yet),
	// then replace the live tables.
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit TO on`); err != nil {
			return err
		}
		// The store is read through this transaction (see below): let its unqualified
		// "events" resolve to the live schema, after the shadow tables.
		if _, err := tx.Exec(ctx, `SET LOCAL search_path TO `+ident(shadow)+`, `+ident(live)); err != nil {
			return err
		}
		for _, p := range ps {
			if _, err := tx.Exec(ctx, sqlLockProjection, lockKey(p.name)); err != nil {
				return fmt.Errorf("lock projection: %w", err)
			}
		}
		for {
			// Through tx: appliers waiting on the locks above hold pool connections.
			evs, err := e.store.ReadAllIn(ctx, tx, cp, RebuildBatch)
			if err != nil {
				return err
			}
			if len(evs) == 0 {
				break
			}
			if err := applyBatch(ctx, tx, ps, evs, marks, false); err != nil {
				return err
			}
			cp = eventstore.CheckpointOf(evs[len(evs)-1])
			done += int64(len(evs))
		}
		for _, p := range ps {
			if err := catchUpStreams(ctx, tx, e.store, p, live, cp, marks); err != nil {
				return err
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
	e.log.Info("projections rebuilt", "projections", names, "events", done, "seconds", time.Since(start).Seconds())
	return nil
}

// catchUpStreams applies, into the shadow tables, every stream of p's categories that has
// events the rebuild has not read: ReadAll's gap-safe order returns everything up to the
// checkpoint cp and holds back later transactions (any transaction in the cluster holds its
// horizon back), so the unread events are exactly those after cp, including ones the live
// appliers already applied to the old tables. Called under the projection's exclusive lock.
func catchUpStreams(ctx context.Context, tx pgx.Tx, store EventReader, p *projection, live string, cp eventstore.Checkpoint, marks map[string]map[string]streamMark) error {
	rows, err := tx.Query(ctx, `SELECT stream_id, max(stream_version) FROM `+ident(live, "events")+`
		WHERE (tx_id, global_position) > ($1::xid8, $2::bigint) AND split_part(stream_id, '-', 1) = ANY($3)
		GROUP BY stream_id`, cp.TxID, cp.Position, p.categories)
	if err != nil {
		return fmt.Errorf("unread streams: %w", err)
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
		if v > marks[p.name][s].version {
			todo = append(todo, behind{s, marks[p.name][s].version + 1})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, b := range todo {
		evs, err := store.ReadStreamIn(ctx, tx, b.stream, b.from, 0)
		if err != nil {
			return err
		}
		if err := applyBatch(ctx, tx, []*projection{p}, evs, marks, false); err != nil {
			return err
		}
	}
	return nil
}

const sqlUpsertCheckpoints = `INSERT INTO projection_checkpoints (projection, stream_id, version, position, recorded_at)
	SELECT $1, s, v, pos, at FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::timestamptz[]) AS t(s, v, pos, at)
	ON CONFLICT (projection, stream_id) DO UPDATE
	SET version = EXCLUDED.version, position = greatest(projection_checkpoints.position, EXCLUDED.position),
	    recorded_at = EXCLUDED.recorded_at`

// applyBatch applies the events each projection reads (skipping any a stream already has)
// and records the streams' checkpoints, all as one pipelined batch on tx. skipDerived leaves
// out the statements projection.derive recomputes later.
func applyBatch(ctx context.Context, tx pgx.Tx, ps []*projection, evs []eventstore.RecordedEvent, marks map[string]map[string]streamMark, skipDerived bool) error {
	b := stmts{skipDerived: skipDerived}
	for _, p := range ps {
		pm := marks[p.name]
		touched := map[string]bool{}
		for _, ev := range evs {
			if !p.handles(ev.StreamID) || ev.StreamVersion <= pm[ev.StreamID].version {
				continue
			}
			if err := p.applyEvent(&b, ev); err != nil {
				return err
			}
			pm[ev.StreamID] = streamMark{version: ev.StreamVersion, position: ev.Position, at: ev.RecordedAt}
			touched[ev.StreamID] = true
		}
		if len(touched) == 0 {
			continue
		}
		streams := make([]string, 0, len(touched))
		versions := make([]int64, 0, len(touched))
		positions := make([]int64, 0, len(touched))
		ats := make([]time.Time, 0, len(touched))
		for s := range touched {
			m := pm[s]
			streams = append(streams, s)
			versions = append(versions, m.version)
			positions = append(positions, m.position)
			ats = append(ats, m.at)
		}
		b.add(sqlUpsertCheckpoints, p.name, streams, versions, positions, ats)
	}
	return b.send(ctx, tx)
}

func ident(parts ...string) string { return pgx.Identifier(parts).Sanitize() }
