package projections

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

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
	var ps []*ReadModel
	for _, p := range e.models { // fixed order: swap locks are always taken in this order
		if len(names) == 0 || contains(names, p.Name) {
			ps = append(ps, p)
		}
	}
	for _, n := range names {
		if _, ok := e.model(n); !ok {
			return fmt.Errorf("rebuild: unknown projection %q (have %v)", n, e.Names())
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
const sqlDeferrableIndexes = `SELECT t.relname, ic.relname, pg_get_indexdef(i.indexrelid)
	FROM pg_index i
	JOIN pg_class ic ON ic.oid = i.indexrelid
	JOIN pg_class t ON t.oid = i.indrelid
	JOIN pg_namespace n ON n.oid = ic.relnamespace
	WHERE n.nspname = $1 AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)`

// sqlBulkConstraints lists the unique constraints (primary keys included) of the given tables
// of a schema. Those of the tables a load only COPYs into or leaves to derive are dropped for
// the load and added after it.
const sqlBulkConstraints = `SELECT t.relname, c.conname, pg_get_constraintdef(c.oid)
	FROM pg_constraint c
	JOIN pg_class t ON t.oid = c.conrelid
	JOIN pg_namespace n ON n.oid = t.relnamespace
	WHERE n.nspname = $1 AND t.relname = ANY($2) AND c.contype IN ('p', 'u')`

func (e *Engine) rebuild(ctx context.Context, ps []*ReadModel, progress func(done, total int64)) error {
	// A connection of its own: its search_path points at the shadow schema, so the projections'
	// unqualified SQL writes the shadow tables. It never goes back to the pool.
	conn, err := pgx.ConnectConfig(ctx, e.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
		var locked bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, rebuildLockKey(p.Name)).Scan(&locked); err != nil {
			return fmt.Errorf("rebuild lock: %w", err)
		}
		if !locked {
			return fmt.Errorf("%s: %w", p.Name, ErrRebuildRunning)
		}
	}
	// Closing the connection releases the locks too, but only once the server has noticed: a
	// rebuild right after this one could still find them taken.
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock_all()`) //nolint:errcheck // closing releases them anyway
	var live string
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&live); err != nil {
		return fmt.Errorf("current schema: %w", err)
	}
	shadow := "rebuild_" + strings.Join(names, "_")
	tables := []string{"projection_checkpoints"}
	var copied, bulk []string
	for _, p := range ps {
		tables = append(tables, p.Tables...)
		copied = append(copied, p.Copied...)
		bulk = append(bulk, p.Copied...)
		bulk = append(bulk, p.Derived...)
	}
	dropShadow := func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `DROP SCHEMA IF EXISTS `+ident(shadow)+` CASCADE`)
	}
	after, err := createShadow(ctx, conn, live, shadow, tables, bulk)
	if err != nil {
		dropShadow()
		return err
	}
	// A second connection on the shadow schema: the bulk loads COPY on it, beside the first
	// one's statements, and afterwards it indexes them while the first derives.
	conn2, err := pgx.ConnectConfig(ctx, e.pool.Config().ConnConfig.Copy())
	if err != nil {
		dropShadow()
		return fmt.Errorf("connect: %w", err)
	}
	defer conn2.Close(context.WithoutCancel(ctx))
	// A rebuild can always be run again, so its commits need not wait for the WAL flush.
	for _, c := range []*pgx.Conn{conn, conn2} {
		for _, q := range []string{`SET search_path TO ` + ident(shadow), `SET synchronous_commit TO off`,
			`SET work_mem TO '256MB'`, `SET maintenance_work_mem TO '256MB'`} {
			if _, err := c.Exec(ctx, q); err != nil {
				dropShadow()
				return fmt.Errorf("prepare shadow schema: %s: %w", q, err)
			}
		}
	}

	total, err := e.store.LastPosition(ctx)
	if err != nil {
		total = -1 // progress without a total
	}
	start := time.Now()
	marks := map[string]map[string]streamMark{}
	for _, p := range ps {
		marks[p.Name] = map[string]streamMark{}
	}
	loads := map[string]BulkLoad{}
	for _, p := range ps {
		if p.NewLoad != nil {
			loads[p.Name] = p.NewLoad()
		}
	}
	cp, done, err := e.load(ctx, conn, conn2, ps, marks, loads, func(done int64) {
		if progress != nil {
			progress(done, max(total, done))
		}
	})
	if err != nil {
		dropShadow()
		return err
	}

	// Finish the tables (indexes, constraints, statistics) on both connections at once. The
	// first writes the checkpoints and what the load kept in memory, with the derived columns
	// (the load skipped their statements), meanwhile the second finishes the tables the load
	// completed, the largest first; then both take the rest.
	var derived, rest []string
	for _, p := range ps {
		derived = append(derived, p.Derived...)
	}
	queue := make(chan string, len(tables))
	for _, t := range copied {
		queue <- t
	}
	for _, t := range tables {
		switch {
		case slices.Contains(copied, t):
		case slices.Contains(derived, t), t == "projection_checkpoints":
			rest = append(rest, t)
		default:
			queue <- t
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	finish := func(c *pgx.Conn) error {
		for {
			select {
			case t, ok := <-queue:
				if !ok {
					return nil
				}
				if err := finishTable(gctx, c, live, shadow, t, after[t]); err != nil {
					return err
				}
			case <-gctx.Done():
				return gctx.Err()
			}
		}
	}
	g.Go(func() error { return finish(conn2) })
	g.Go(func() error {
		if err := writeCheckpoints(gctx, conn, marks); err != nil {
			return err
		}
		err := pgx.BeginFunc(gctx, conn, func(tx pgx.Tx) error {
			for _, p := range ps {
				if l := loads[p.Name]; l != nil {
					if err := l.Finish(gctx, tx); err != nil {
						return fmt.Errorf("%s: finish the load: %w", p.Name, err)
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		e.log.Debug("rebuild: derived", "seconds", time.Since(start).Seconds())
		for _, t := range rest {
			queue <- t
		}
		close(queue)
		return finish(conn)
	})
	if err := g.Wait(); err != nil {
		dropShadow()
		return err
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
			if _, err := tx.Exec(ctx, sqlLockProjection, lockKey(p.Name)); err != nil {
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
			if err := applyBatch(ctx, tx, ps, evs, marks, nil); err != nil {
				return err
			}
			cp = eventstore.CheckpointOf(evs[len(evs)-1])
			done += int64(len(evs))
		}
		for _, p := range ps {
			if err := catchUpStreams(ctx, tx, e.store, p, cp, marks); err != nil {
				return err
			}
			for _, t := range p.Tables {
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
				if _, err := tx.Exec(ctx, q, p.Name); err != nil {
					return fmt.Errorf("swap checkpoints: %w", err)
				}
			}
		}
		// Everything up to cp is applied now: the readers go on from there (catchup.go), and
		// read-your-writes waits need not walk what the rebuild applied.
		for _, p := range ps {
			for _, name := range []string{cursorPrefix + p.Name, watermarkPrefix + p.Name} {
				if err := eventstore.AdvanceCheckpointIn(ctx, tx, name, cp); err != nil {
					return fmt.Errorf("save %s: %w", name, err)
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

// createShadow creates the shadow schema with a copy of each table and drops what the load
// need not maintain row by row: indexes that back no constraint and, on the bulk tables
// (projection.copied and .derived), the unique constraints. It returns, per table, the
// statements that restore them.
func createShadow(ctx context.Context, conn *pgx.Conn, live, shadow string, tables, bulk []string) (map[string][]string, error) {
	setup := []string{
		`DROP SCHEMA IF EXISTS ` + ident(shadow) + ` CASCADE`,
		`CREATE SCHEMA ` + ident(shadow),
	}
	for _, t := range tables {
		setup = append(setup, `CREATE TABLE `+ident(shadow, t)+` (LIKE `+ident(live, t)+` INCLUDING ALL)`)
	}
	for _, q := range setup {
		if _, err := conn.Exec(ctx, q); err != nil {
			return nil, fmt.Errorf("prepare shadow schema: %s: %w", q, err)
		}
	}
	after := map[string][]string{}
	var drops []string
	var table, name, def string
	err := forEachRow(ctx, conn, sqlBulkConstraints, []any{shadow, bulk}, []any{&table, &name, &def}, func() error {
		drops = append(drops, `ALTER TABLE `+ident(shadow, table)+` DROP CONSTRAINT `+ident(name))
		return nil
	})
	if err == nil {
		// Added back under the live table's names, which LIKE does not copy.
		err = forEachRow(ctx, conn, sqlBulkConstraints, []any{live, bulk}, []any{&table, &name, &def}, func() error {
			after[table] = append(after[table], `ALTER TABLE `+ident(shadow, table)+` ADD CONSTRAINT `+ident(name)+` `+def)
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("list constraints: %w", err)
	}
	err = forEachRow(ctx, conn, sqlDeferrableIndexes, []any{shadow}, []any{&table, &name, &def}, func() error {
		drops = append(drops, `DROP INDEX `+ident(shadow, name))
		after[table] = append(after[table], def)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list indexes: %w", err)
	}
	for _, q := range drops {
		if _, err := conn.Exec(ctx, q); err != nil {
			return nil, fmt.Errorf("prepare shadow schema: %s: %w", q, err)
		}
	}
	return after, nil
}

// finishTable runs the statements that restore table's indexes and constraints, then
// analyses it.
func finishTable(ctx context.Context, conn *pgx.Conn, live, shadow, table string, restore []string) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// The index definitions name their table schema-qualified but their operator classes as
		// seen from the live schema (pg_trgm's live there), so build them with that search_path.
		if _, err := tx.Exec(ctx, `SET LOCAL search_path TO `+ident(live)); err != nil {
			return err
		}
		for _, q := range restore {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("restore %s: %s: %w", table, q, err)
			}
		}
		if _, err := tx.Exec(ctx, `ANALYZE `+ident(shadow, table)); err != nil {
			return fmt.Errorf("analyze %s: %w", table, err)
		}
		return nil
	})
}

// catchUpStreams applies, into the shadow tables, every stream of p's categories that has
// events the rebuild has not read: ReadAll's gap-safe order returns everything up to the
// checkpoint cp and holds back later transactions (any transaction in the cluster holds its
// horizon back), so the unread events are exactly those after cp, including ones the live
// appliers already applied to the old tables. Called under the projection's exclusive lock.
func catchUpStreams(ctx context.Context, tx pgx.Tx, store EventReader, p *ReadModel, cp eventstore.Checkpoint, marks map[string]map[string]streamMark) error {
	spans, err := store.StreamSpansIn(ctx, tx, cp, eventstore.Checkpoint{}, p.Categories)
	if err != nil {
		return fmt.Errorf("unread streams: %w", err)
	}
	type behind struct {
		stream string
		from   int64
	}
	var todo []behind
	for _, sp := range spans {
		if sp.Last > marks[p.Name][sp.StreamID].version {
			todo = append(todo, behind{sp.StreamID, marks[p.Name][sp.StreamID].version + 1})
		}
	}
	for _, b := range todo {
		evs, err := store.ReadStreamIn(ctx, tx, b.stream, b.from, 0)
		if err != nil {
			return err
		}
		if err := applyBatch(ctx, tx, []*ReadModel{p}, evs, marks, nil); err != nil {
			return err
		}
	}
	return nil
}

// load replays the store into the shadow tables: one goroutine reads batches (the next one
// while the previous is applied), one applies them on conn, one runs the bulk loads' COPYs on
// copyConn. It returns the checkpoint of the last event read and how many were read.
func (e *Engine) load(ctx context.Context, conn, copyConn *pgx.Conn, ps []*ReadModel, marks map[string]map[string]streamMark,
	loads map[string]BulkLoad, progress func(done int64)) (eventstore.Checkpoint, int64, error) {
	var cp eventstore.Checkpoint
	var done int64
	// Each stage's busy time (its goroutine's own), for the debug log: the largest one bounds
	// the load.
	var reading, applying, copying time.Duration
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	batches := make(chan []eventstore.RecordedEvent, 1)
	copies := make(chan func(context.Context, *pgx.Conn) error, 2)
	g.Go(func() error {
		defer close(batches)
		rc, err := e.pool.Acquire(gctx)
		if err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		defer rc.Release()
		var at eventstore.Checkpoint
		for {
			t := time.Now()
			evs, err := e.store.ReadAllForReplayIn(gctx, rc, at, RebuildBatch)
			reading += time.Since(t)
			if err != nil || len(evs) == 0 {
				return err
			}
			at = eventstore.CheckpointOf(evs[len(evs)-1])
			select {
			case batches <- evs:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
	})
	g.Go(func() error {
		defer close(copies)
		for evs := range batches {
			t := time.Now()
			err := pgx.BeginFunc(gctx, conn, func(tx pgx.Tx) error { return applyBatch(gctx, tx, ps, evs, marks, loads) })
			applying += time.Since(t)
			if err != nil {
				return err
			}
			for _, p := range ps {
				l := loads[p.Name]
				if l == nil {
					continue
				}
				if f := l.Copy(); f != nil {
					select {
					case copies <- f:
					case <-gctx.Done():
						return gctx.Err()
					}
				}
			}
			cp = eventstore.CheckpointOf(evs[len(evs)-1])
			done += int64(len(evs))
			progress(done)
		}
		return nil
	})
	g.Go(func() error {
		for f := range copies {
			t := time.Now()
			err := f(gctx, copyConn)
			copying += time.Since(t)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return cp, done, err
	}
	e.log.Debug("rebuild: loaded", "events", done, "seconds", time.Since(start).Seconds(), "reading", reading.Seconds(),
		"applying", applying.Seconds(), "copying", copying.Seconds())
	return cp, done, nil
}

// writeCheckpoints writes every stream's checkpoint once, after the load (which keeps them in
// marks only).
func writeCheckpoints(ctx context.Context, conn *pgx.Conn, marks map[string]map[string]streamMark) error {
	var rows [][]any
	for p, pm := range marks {
		for s, m := range pm {
			rows = append(rows, []any{p, s, m.version, m.position, m.at})
		}
	}
	_, err := conn.CopyFrom(ctx, pgx.Identifier{"projection_checkpoints"}, []string{"projection", "stream_id", "version", "position", "recorded_at"},
		pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("write checkpoints: %w", err)
	}
	return nil
}

const sqlUpsertCheckpoints = `INSERT INTO projection_checkpoints (projection, stream_id, version, position, recorded_at)
	SELECT $1, s, v, pos, at FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::timestamptz[]) AS t(s, v, pos, at)
	ON CONFLICT (projection, stream_id) DO UPDATE
	SET version = EXCLUDED.version, position = greatest(projection_checkpoints.position, EXCLUDED.position),
	    recorded_at = EXCLUDED.recorded_at`

// applyBatch applies the events each read model reads (skipping any a stream already has) as
// one pipelined batch on tx. Outside a load (loads nil) it also records the streams'
// checkpoints; during one, each read model with a bulk load applies through it, and the
// checkpoints stay in marks.
func applyBatch(ctx context.Context, tx pgx.Tx, ps []*ReadModel, evs []eventstore.RecordedEvent, marks map[string]map[string]streamMark, loads map[string]BulkLoad) error {
	var b Batch
	for _, p := range ps {
		apply := p.Apply
		if l := loads[p.Name]; l != nil {
			apply = l.Apply
		}
		pm := marks[p.Name]
		touched := map[string]bool{}
		for _, ev := range evs {
			if !p.handles(ev.StreamID) || ev.StreamVersion <= pm[ev.StreamID].version {
				continue
			}
			if err := p.applyEvent(&b, ev, apply); err != nil {
				return err
			}
			pm[ev.StreamID] = streamMark{version: ev.StreamVersion, position: ev.Position, at: ev.RecordedAt}
			if loads == nil {
				touched[ev.StreamID] = true
			}
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
		b.Add(sqlUpsertCheckpoints, p.Name, streams, versions, positions, ats)
	}
	for _, p := range ps {
		if l := loads[p.Name]; l != nil {
			if err := l.Flush(ctx, tx); err != nil {
				return fmt.Errorf("%s: %w", p.Name, err)
			}
		}
	}
	return b.send(ctx, tx)
}

// forEachRow runs sql on q and calls fn after scanning each row into scans.
func forEachRow(ctx context.Context, q eventstore.Querier, sql string, args []any, scans []any, fn func() error) error {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	_, err = pgx.ForEachRow(rows, scans, fn)
	return err
}

func ident(parts ...string) string { return pgx.Identifier(parts).Sanitize() }
