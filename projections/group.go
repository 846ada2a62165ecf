package projections

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/huddle-chat/huddle/eventstore"
)

// Group apply (ADR 0008). With several workers, events that arrive while a transaction is
// applying earlier ones wait, and then go together into the next transaction: the round trips,
// the locks and the commit's WAL flush are paid once per group instead of once per event, which
// is what limits a projector (it waits on the database far more than it computes). Each event
// is still acked only after the transaction that applied it committed. Nothing waits on a timer:
// an event that finds no transaction running starts one at once.
//
// A group goes through applyEvents, the same per-stream protocol as a single event. If the
// group's transaction fails, every event in it is applied alone, and the handler's error
// handling (retries, poison parking) then decides per event.

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
		events := make([]eventstore.RecordedEvent, len(active))
		for i, r := range active {
			events[i] = r.ev
		}
		err := g.e.applyEvents(active[0].ctx, g.p, events)
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
