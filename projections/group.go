package projections

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/live"
)

// Group apply (ADR 0008). With several workers, events that arrive while a transaction is
// applying earlier ones wait, and then go together into the next transaction: the round trips,
// the locks and the commit's WAL flush are paid once per group instead of once per event, which
// is what limits a projector (it waits on the database far more than it computes). Each event
// is still acked only after the transaction that applied it committed. Nothing waits on a timer:
// an event that finds no transaction running starts one at once.
//
// A group keeps the per-stream protocol: it locks the projection (shared), every clinic it
// touches (exclusive, in key order, so two groups cannot deadlock), every stream's checkpoint
// row (in stream order), skips what a stream already has, fills gaps from the store, applies
// the events in store order and writes the live feed. If the group's transaction fails, every
// event in it is applied alone by the one-event path, whose error handling (retries, poison
// parking) then decides per event.

// maxGroup bounds the events of one group transaction.
const maxGroup = 256

// errGroupFailed tells a handler to apply its event alone.
var errGroupFailed = errors.New("group apply failed")

type groupRequest struct {
	ctx  context.Context
	ev   eventstore.RecordedEvent
	err  error
	done chan struct{}
}

// grouper queues one projection's events on this instance.
type grouper struct {
	e *Engine
	p *projection

	mu      sync.Mutex
	queue   []*groupRequest
	running bool
}

// apply queues ev and waits until a group transaction applied it (nil), or failed
// (errGroupFailed), or ctx ended.
func (g *grouper) apply(ctx context.Context, ev eventstore.RecordedEvent) error {
	r := &groupRequest{ctx: ctx, ev: ev, done: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, r)
	var batch []*groupRequest
	if !g.running {
		g.running = true
		batch = g.takeLocked()
	}
	g.mu.Unlock()
	if batch != nil {
		g.run(batch)
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		// The group may still commit it; a redelivery is then a skipped duplicate.
		return ctx.Err()
	}
}

func (g *grouper) takeLocked() []*groupRequest {
	n := min(len(g.queue), maxGroup)
	batch := slices.Clone(g.queue[:n])
	clear(g.queue[:n])
	g.queue = g.queue[n:]
	return batch
}

// run applies batch, then passes the turn to the next batch on a goroutine of its own (so
// this handler acks its event now) or ends it.
func (g *grouper) run(batch []*groupRequest) {
	active := batch[:0:0]
	for _, r := range batch {
		if r.ctx.Err() == nil {
			active = append(active, r)
		} else {
			r.err = errGroupFailed
			close(r.done)
		}
	}
	if len(active) > 0 {
		err := g.e.applyGroup(active[0].ctx, g.p, active)
		if err != nil {
			g.e.log.Debug("projection: group apply failed, applying one by one", "projection", g.p.name, "events", len(active), "err", err)
			err = errGroupFailed
		}
		for _, r := range active {
			r.err = err
			close(r.done)
		}
	}
	g.mu.Lock()
	var next []*groupRequest
	if len(g.queue) > 0 {
		next = g.takeLocked()
	} else {
		g.running = false
	}
	g.mu.Unlock()
	if next != nil {
		go g.run(next)
	}
}

// applyGroup applies the requests' events in one transaction.
func (e *Engine) applyGroup(ctx context.Context, p *projection, reqs []*groupRequest) error {
	byStream := map[string][]eventstore.RecordedEvent{}
	clinics := map[int64]bool{}
	for _, r := range reqs {
		byStream[r.ev.StreamID] = append(byStream[r.ev.StreamID], r.ev)
		clinics[lockKey(p.name+"/clinic:"+clinicOf(r.ev))] = true
	}
	streams := make([]string, 0, len(byStream))
	for s := range byStream {
		streams = append(streams, s)
	}
	slices.Sort(streams)
	keys := make([]int64, 0, len(clinics))
	for k := range clinics {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	tx, err := e.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit

	// One round trip for the locks and checkpoint rows, in the same order as applyStream's.
	pre := &pgx.Batch{}
	pre.Queue(sqlLockProjectionShared, lockKey(p.name))
	for _, k := range keys {
		pre.Queue(sqlLockProjection, k)
	}
	for _, s := range streams {
		pre.Queue(sqlEnsureCheckpoint, p.name, s)
		pre.Queue(sqlLockCheckpoint, p.name, s)
	}
	versions := make(map[string]int64, len(streams))
	results := tx.SendBatch(ctx, pre)
	for range 1 + len(keys) {
		if _, err = results.Exec(); err != nil {
			break
		}
	}
	for _, s := range streams {
		if err != nil {
			break
		}
		if _, err = results.Exec(); err != nil {
			break
		}
		var v int64
		err = results.QueryRow().Scan(&v)
		versions[s] = v
	}
	if err = errors.Join(err, results.Close()); err != nil {
		return fmt.Errorf("lock projection and checkpoints: %w", err)
	}

	// Per stream, what to apply: the delivered events after the checkpoint, or, when they do
	// not continue it without a hole, everything up to the newest from the store.
	var apply []eventstore.RecordedEvent
	lastOf := map[string]eventstore.RecordedEvent{}
	gaps := 0
	for _, s := range streams {
		evs := byStream[s]
		slices.SortFunc(evs, func(a, b eventstore.RecordedEvent) int { return cmp.Compare(a.StreamVersion, b.StreamVersion) })
		evs = slices.CompactFunc(evs, func(a, b eventstore.RecordedEvent) bool { return a.StreamVersion == b.StreamVersion })
		from := versions[s]
		var fresh []eventstore.RecordedEvent
		for _, x := range evs {
			if x.StreamVersion > from {
				fresh = append(fresh, x)
			}
		}
		if len(fresh) == 0 {
			continue
		}
		newest := fresh[len(fresh)-1].StreamVersion
		if fresh[0].StreamVersion != from+1 || int64(len(fresh)) != newest-from {
			fresh, err = e.store.ReadStreamIn(ctx, tx, s, from+1, int(newest-from))
			if err != nil {
				return fmt.Errorf("fill gap %s %d..%d: %w", s, from+1, newest, err)
			}
			if len(fresh) == 0 || fresh[len(fresh)-1].StreamVersion != newest {
				return fmt.Errorf("fill gap %s: store returned %d events, want up to version %d", s, len(fresh), newest)
			}
			gaps++
		}
		apply = append(apply, fresh...)
		lastOf[s] = fresh[len(fresh)-1]
	}
	dups := 0
	for _, r := range reqs {
		if r.ev.StreamVersion <= versions[r.ev.StreamID] {
			dups++
		}
	}
	if dups > 0 {
		e.m.duplicates.WithLabelValues(p.name).Add(float64(dups))
	}
	if len(apply) == 0 {
		return nil // all duplicates: nothing to commit
	}
	// Store order across streams, as one event at a time would have applied them.
	slices.SortStableFunc(apply, func(a, b eventstore.RecordedEvent) int { return cmp.Compare(a.Position, b.Position) })

	var b stmts
	for _, x := range apply {
		if err := p.applyEvent(&b, x); err != nil {
			return err
		}
	}
	for _, s := range streams {
		if last, ok := lastOf[s]; ok {
			b.add(sqlSetCheckpoint, p.name, s, last.StreamVersion, last.Position, last.RecordedAt)
		}
	}
	if err := b.send(ctx, tx); err != nil {
		return err
	}
	var targets []live.Target
	if p.name == Inbox {
		if targets, err = appendLive(ctx, tx, apply); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	e.notifier.Notify(targets...)
	e.m.applied.WithLabelValues(p.name).Add(float64(len(apply)))
	if gaps > 0 {
		e.m.gaps.WithLabelValues(p.name).Add(float64(gaps))
	}
	for s, last := range lastOf {
		e.waiters.notify(p.name, s, last.StreamVersion)
	}
	return nil
}
