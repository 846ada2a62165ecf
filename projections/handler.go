package projections

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/huddle-chat/huddle/eventstore"
)

// applier is one projection's reader on this instance (catchup.go) and what its NATS handlers
// need of it: a wake-up, the cursor as far as this instance knows it, and the ids of the events
// it read recently.
type applier struct {
	e    *Engine
	p    *ReadModel
	wake chan struct{}

	mu      sync.Mutex
	cursor  eventstore.Checkpoint
	changed chan struct{} // closed and replaced whenever cursor moves
	seen    map[string]struct{}
	ring    []string // seen's ids, oldest first once full
	next    int
	retryAt time.Time
	retries int
	// full is whether the last step's read filled its batch (owned by run's goroutine).
	full bool
}

// seenCap bounds the ids an applier remembers: a handler whose event is older than that (a
// long NATS backlog) asks the store instead.
const seenCap = 1 << 16

// messageWait bounds how long a handler waits for the reader to pass its event before it asks
// the store whether the event exists at all.
const messageWait = 5 * time.Second

var errStopping = errors.New("projections: stopping")

func newApplier(e *Engine, p *ReadModel) *applier {
	return &applier{e: e, p: p, wake: make(chan struct{}, 1), changed: make(chan struct{}), seen: map[string]struct{}{}}
}

// poke wakes the reader; pokes while it runs collapse into one more step.
func (a *applier) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// moved records that the reader got to cp, having read ids.
func (a *applier) moved(cp eventstore.Checkpoint, ids []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, id := range ids {
		if len(a.ring) < seenCap {
			a.ring = append(a.ring, id)
		} else {
			delete(a.seen, a.ring[a.next])
			a.ring[a.next] = id
			a.next = (a.next + 1) % seenCap
		}
		a.seen[id] = struct{}{}
	}
	if reached(cp, a.cursor) && cp != a.cursor {
		a.cursor = cp
		close(a.changed)
		a.changed = make(chan struct{})
	}
}

// past reports whether the reader passed cp, and otherwise a channel closed when it moves.
func (a *applier) past(cp eventstore.Checkpoint) (bool, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return reached(a.cursor, cp), a.changed
}

func (a *applier) saw(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.seen[id]
	return ok
}

// retryDue reports whether deferred streams should be retried now.
func (a *applier) retryDue() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return !time.Now().Before(a.retryAt)
}

// retryIn is how long until the next retry, when one is pending.
func (a *applier) retryIn() (time.Duration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.retries == 0 {
		return 0, false
	}
	return max(time.Until(a.retryAt), 0), true
}

// retried schedules the next retry: backing off while streams stay deferred, at once after
// a step that left none.
func (a *applier) retried(attempted, deferred bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case !deferred && attempted:
		a.retries, a.retryAt = 0, time.Time{}
	case deferred && (attempted || a.retries == 0):
		a.retries++
		a.retryAt = time.Now().Add(min(25*time.Millisecond<<min(a.retries, 10), 2*time.Second))
	}
}

// handler is the Watermill handler of p's durable consumer. A message only wakes the reader;
// it is acked once the reader has passed its event (so after the transaction that applied it
// committed), or, when the reader does not get there in messageWait, once the store is known to
// hold the event, which the reader will then apply. A message naming no stored event was not
// written by the store: it is logged, counted and dropped.
func (e *Engine) handler(a *applier) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		ctx := msg.Context()
		ev, err := eventstore.FromMessage(msg)
		if err != nil {
			e.log.Error("projection: undecodable message ignored", "projection", a.p.Name, "uuid", msg.UUID, "err", err)
			e.m.foreign.WithLabelValues(a.p.Name).Inc()
			return nil
		}
		if !a.p.handles(ev.StreamID) {
			return nil
		}
		// Usually the reader got there already, woken by this process's own append (Wake): a
		// poke would run a step that finds nothing.
		if past, _ := a.past(eventstore.CheckpointOf(ev)); !past {
			a.poke()
		}
		if err := e.awaitRead(ctx, a, ev); err != nil {
			return err
		}
		if e.afterCommit != nil {
			return e.afterCommit(a.p.Name, ev)
		}
		return nil
	}
}

func (e *Engine) awaitRead(ctx context.Context, a *applier, ev eventstore.RecordedEvent) error {
	t := time.NewTimer(messageWait)
	defer t.Stop()
	for {
		past, changed := a.past(eventstore.CheckpointOf(ev))
		if past {
			break
		}
		select {
		case <-changed:
			continue
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-e.stopping:
			return errStopping // redelivered to whoever runs next
		}
		break
	}
	if a.saw(ev.EventID) {
		return nil
	}
	id, ok, err := e.store.EventIDAt(ctx, ev.StreamID, ev.StreamVersion)
	if err != nil {
		return err
	}
	if !ok || id != ev.EventID {
		e.log.Error("projection: message names no stored event; ignored (forged, or another store's)", "projection", a.p.Name,
			"stream", ev.StreamID, "version", ev.StreamVersion, "event_id", ev.EventID, "type", ev.Type, "stored_id", id)
		e.m.foreign.WithLabelValues(a.p.Name).Inc()
	}
	return nil
}
