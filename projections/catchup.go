package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/huddle-chat/huddle/eventstore"
)

// Catch-up from the store (ADR 0011). Each projection has one reader at a time across every
// instance (a transaction-scoped try-lock; the others wait for a wake-up and then try). It keeps
// a cursor in the store's gap-safe order (eventstore_checkpoints, "projection-cursor/<name>")
// and, in one transaction: reads what the store holds after it (up to BatchSize events), applies
// the projection's events with the per-stream protocol of applyIn, moves the cursor, commits.
// Idle, a batch is the one event that woke it; under load batches grow to BatchSize. At start,
// and whenever it is woken (a NATS message, a poll every PollInterval), it reads from the
// cursor, so whatever was committed and not applied when a process died is applied as soon as
// a reader runs again, not when JetStream redelivers.
//
// NATS is only the wake-up: what a projector applies is what the store holds, so a message
// the store did not write (forged, or another store's) reaches no read model; the handler
// reports it (handler.go).
//
// An event that fails does not hold the others up: the batch is applied again one event at a
// time (savepoints); the failing event's stream is deferred, the cursor moves on, and the
// watermark (everything applied, watermark.go) stays before it. Deferred streams are retried
// from their checkpoints with a backoff; one that fails non-transiently poisonAfter times is
// parked (projection_poison) and its stream moves on. Read-your-writes waits only on the
// caller's clinic (WaitForClinic), so one clinic's stuck event delays nobody else's reads.

const (
	cursorPrefix = "projection-cursor/"

	sqlTryReader = `SELECT pg_try_advisory_xact_lock($1)`
)

// Defaults of Engine.BatchSize and Engine.PollInterval.
const (
	DefaultBatchSize    = 500
	DefaultPollInterval = 500 * time.Millisecond
	maxDeferredStreams  = 100
)

// errBusy: another instance's reader holds the projection.
var errBusy = errors.New("another reader holds the projection")

// errSlow asks for the batch again one event at a time.
type errSlow struct{ err error }

func (e *errSlow) Error() string { return "batch failed: " + e.err.Error() }
func (e *errSlow) Unwrap() error { return e.err }

// readerKey is the advisory lock of a projection's reader.
func readerKey(projection string) int64 { return lockKey("reader:" + projection) }

// run reads and applies until ctx ends.
func (a *applier) run(ctx context.Context) {
	fails := 0
	for ctx.Err() == nil {
		n, err := a.step(ctx, false)
		var slow *errSlow
		if errors.As(err, &slow) && ctx.Err() == nil {
			a.e.log.Debug("projection: batch failed, applying one event at a time", "projection", a.p.Name, "err", slow.err)
			n, err = a.step(ctx, true)
		}
		if errors.Is(err, errBusy) {
			n, err = 0, nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			fails++
			a.e.log.Warn("projection: catch-up failed, will retry", "projection", a.p.Name, "attempt", fails, "err", err)
			// At most 1 s: after the database comes back (a Postgres crash), whatever was
			// committed must be applied within 2 s.
			if !sleep(ctx, min(50*time.Millisecond<<min(fails, 10), time.Second)) {
				return
			}
			continue
		}
		fails = 0
		if n > 0 && a.full {
			continue // more is waiting: batches grow under load
		}
		wait := a.e.PollInterval
		if d, ok := a.retryIn(); ok {
			wait = min(wait, d)
		}
		t := time.NewTimer(wait)
		select {
		case <-a.wake:
			t.Stop()
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// step runs one catch-up transaction and returns whether it got further in the store (1) or
// not (0). slow applies one event at a time, each in a savepoint, so a failing event is told
// apart.
func (a *applier) step(ctx context.Context, slow bool) (int, error) {
	e, p := a.e, a.p
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit

	// One round trip: the reader's lock; the projection's lock shared (a rebuild's swap takes
	// it exclusively, and its cursor is read after the swap committed); cursor and watermark.
	pre := &pgx.Batch{}
	var got bool
	// A projection's commit need not wait for the WAL flush: its cursor commits with what it
	// applied, so a Postgres crash that loses the last few hundred milliseconds of them loses
	// both, and the reader applies those events again from the store (which did wait). On a
	// durable cluster that leaves the fsyncs to the appends, which need them.
	pre.Queue(`SET LOCAL synchronous_commit TO off`)
	pre.Queue(sqlTryReader, readerKey(p.Name)).QueryRow(func(r pgx.Row) error { return r.Scan(&got) })
	pre.Queue(sqlLockProjectionShared, lockKey(p.Name))
	var cur, mark eventstore.Checkpoint
	eventstore.QueueLoadCheckpoints(pre, []string{cursorPrefix + p.Name, watermarkPrefix + p.Name}, func(name string, cp eventstore.Checkpoint) {
		if name == cursorPrefix+p.Name {
			cur = cp
		} else {
			mark = cp
		}
	})
	if err := tx.SendBatch(ctx, pre).Close(); err != nil {
		return 0, fmt.Errorf("lock reader: %w", err)
	}
	if !got {
		_ = tx.Rollback(ctx)
		return 0, errors.Join(errBusy, a.refresh(ctx))
	}
	// A cursor behind the watermark (a restore, a first run after the upgrade that added it)
	// starts from the watermark: everything before it is applied.
	if reached(mark, cur) {
		cur = mark
	}

	// Read before anything is written: once this transaction has an id, the gap-safe read stops
	// below it.
	mine, next, scanned, err := e.store.ReadAllOfInCounted(ctx, tx, cur, p.Categories, e.BatchSize)
	if err != nil {
		return 0, err
	}
	// A window shorter than the batch read all there was: the next step can wait for a
	// wake-up instead of running a transaction to find nothing.
	a.full = scanned >= e.BatchSize
	// Retries are applied first: a deferred stream's newer events in this batch then continue it.
	var retry []eventstore.RecordedEvent
	retried := false
	if mark != cur && a.retryDue() {
		retried = true
		if retry, err = a.deferredEvents(ctx, tx, mark, cur); err != nil {
			return 0, err
		}
	}
	saveCursor := func(b *Batch) {
		if next != cur {
			eventstore.QueueAdvanceCheckpoint(&b.b, cursorPrefix+p.Name, next)
		}
	}

	var results []applied
	deferred := false
	if len(retry) > 0 {
		rs, d, err := a.applyEach(ctx, tx, retry)
		if err != nil {
			return 0, err
		}
		results, deferred = append(results, rs...), deferred || d
	}
	if slow {
		rs, d, err := a.applyEach(ctx, tx, mine)
		if err != nil {
			return 0, err
		}
		results, deferred = append(results, rs...), deferred || d
		var b Batch
		saveCursor(&b)
		if err := b.send(ctx, tx); err != nil {
			return 0, err
		}
	} else {
		r, err := e.applyIn(ctx, tx, p, mine, saveCursor)
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, &errSlow{err}
		}
		results, deferred = append(results, r), deferred || len(r.deferred) > 0
	}
	// The watermark moves with the cursor while nothing is deferred; once something is, it
	// stays put and is walked forward as retries succeed (advanceWatermark).
	if mark == cur && !deferred && next != cur {
		if err := eventstore.AdvanceCheckpointIn(ctx, tx, watermarkPrefix+p.Name, next); err != nil {
			return 0, fmt.Errorf("save watermark: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}

	for _, r := range results {
		for _, f := range r.commits {
			f()
		}
		e.m.applied.WithLabelValues(p.Name).Add(float64(len(r.events)))
		if r.dups > 0 {
			e.m.duplicates.WithLabelValues(p.Name).Add(float64(r.dups))
		}
		for s, last := range r.last {
			e.waiters.notify(p.Name, s, last.StreamVersion)
		}
	}
	if mark == cur && !deferred {
		e.marks.raise(p.Name, next)
	}
	ids := make([]string, len(mine))
	for i, ev := range mine {
		ids[i] = ev.EventID
	}
	a.moved(next, ids)
	a.retried(retried, deferred)
	passed := 0
	if next != cur {
		passed = 1
	}
	// After a retry the watermark may pass what was deferred; once it meets the cursor again
	// it moves with it.
	if retried {
		if err := e.advanceWatermark(ctx, p, eventstore.Checkpoint{}); err != nil {
			return passed, err
		}
	}
	return passed, nil
}

// applyEach applies evs one at a time, each in a savepoint. A failing event defers the rest of
// its stream (or is parked when it failed non-transiently poisonAfter times); the others go on.
func (a *applier) applyEach(ctx context.Context, tx pgx.Tx, evs []eventstore.RecordedEvent) ([]applied, bool, error) {
	e, p := a.e, a.p
	var out []applied
	deferred := false
	blocked := map[string]bool{}
	for _, ev := range evs {
		if blocked[ev.StreamID] {
			continue
		}
		sp, err := tx.Begin(ctx)
		if err != nil {
			return nil, false, fmt.Errorf("savepoint: %w", err)
		}
		r, err := e.applyIn(ctx, sp, p, []eventstore.RecordedEvent{ev}, nil)
		if err == nil {
			if err := sp.Commit(ctx); err != nil {
				return nil, false, fmt.Errorf("release savepoint: %w", err)
			}
			out = append(out, r)
			if len(r.deferred) > 0 {
				blocked[ev.StreamID], deferred = true, true
			}
			if len(r.events) > 0 {
				e.clearFailures(ev.EventID)
			}
			continue
		}
		if rerr := sp.Rollback(ctx); rerr != nil || ctx.Err() != nil {
			return nil, false, errors.Join(err, rerr, ctx.Err())
		}
		n := e.fail(ev.EventID)
		if !transient(err) && n >= poisonAfter {
			if err := e.parkIn(ctx, tx, p, ev, err); err != nil {
				return nil, false, err
			}
			e.clearFailures(ev.EventID)
			e.m.poison.WithLabelValues(p.Name).Inc()
			continue
		}
		e.log.Warn("projection: apply failed, deferring its stream", "projection", p.Name, "stream", ev.StreamID,
			"version", ev.StreamVersion, "attempt", n, "err", err)
		blocked[ev.StreamID], deferred = true, true
	}
	return out, deferred, nil
}

// deferredEvents reads, through tx, the events of the streams left behind between the
// watermark and the cursor, from each stream's checkpoint on.
func (a *applier) deferredEvents(ctx context.Context, tx pgx.Tx, mark, cur eventstore.Checkpoint) ([]eventstore.RecordedEvent, error) {
	p := a.p
	// The streams of p with events between watermark and cursor that p has not applied all of,
	// the first maxDeferredStreams of them in the order their events came.
	spans, err := a.e.store.StreamSpansIn(ctx, tx, mark, cur, p.Categories)
	if err != nil {
		return nil, fmt.Errorf("find deferred streams: %w", err)
	}
	streams := make([]string, len(spans))
	for i, sp := range spans {
		streams[i] = sp.StreamID
	}
	at, err := checkpointsIn(ctx, tx, p.Name, streams)
	if err != nil {
		return nil, err
	}
	var out []eventstore.RecordedEvent
	n := 0
	for _, sp := range spans {
		if at[sp.StreamID] >= sp.Last {
			continue
		}
		if n++; n > maxDeferredStreams {
			break
		}
		evs, err := a.e.store.ReadStreamIn(ctx, tx, sp.StreamID, at[sp.StreamID]+1, a.e.BatchSize)
		if err != nil {
			return nil, err
		}
		out = append(out, evs...)
	}
	storeOrder(out)
	return out, nil
}

// refresh learns the cursor another instance's reader moved, for this instance's handlers.
func (a *applier) refresh(ctx context.Context) error {
	cp, err := eventstore.LoadCheckpointIn(ctx, a.e.pool, cursorPrefix+a.p.Name)
	if err != nil {
		return fmt.Errorf("read cursor: %w", err)
	}
	if cp == (eventstore.Checkpoint{}) {
		return nil
	}
	a.moved(cp, nil)
	return nil
}
