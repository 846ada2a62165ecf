package projections

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/huddle-chat/huddle/eventstore"
)

// Expediting a clinic (issue 13: one clinic's backlog must not delay another's reads).
//
// The reader applies the store in its global order, so a burst in one clinic (an import, a
// thousand-member announcement) puts everything the other clinics write behind it. Read models
// are per clinic and each stream carries its own checkpoint, so nothing requires that order
// across clinics: when a read-your-writes wait (WaitForClinic) finds its clinic's events not
// applied yet, the reader is asked to apply that clinic's events between its cursor and the
// awaited position first, in a transaction of their own, before its next batch. The events keep
// their per-stream protocol (each stream continues its checkpoint, failures defer only their
// stream), so when the reader reaches them in order they are duplicates it skips. The cursor and
// the global watermark do not move: they still mean "everything before here is applied".

// expediteMax bounds the events one expedite applies; a clinic with more waits for the reader.
const expediteMax = 2000

// expediteQueue holds the clinics whose reads wait, with the furthest position awaited.
type expediteQueue struct {
	mu      sync.Mutex
	pending map[string]eventstore.Checkpoint
}

// request asks for clinic's events up to at.
func (q *expediteQueue) request(clinic string, at eventstore.Checkpoint) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.pending == nil {
		q.pending = map[string]eventstore.Checkpoint{}
	}
	if cur, ok := q.pending[clinic]; !ok || reached(at, cur) {
		q.pending[clinic] = at
	}
}

// take empties the queue.
func (q *expediteQueue) take() map[string]eventstore.Checkpoint {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.pending
	q.pending = nil
	return out
}

// expedite asks p's reader on this instance to apply clinic's events up to at ahead of its order.
func (e *Engine) expedite(p *ReadModel, clinic string, at eventstore.Checkpoint) {
	a := e.appliers[p.Name]
	if a == nil || clinic == "" {
		return
	}
	a.expedites.request(clinic, at)
	a.poke()
}

// runExpedites applies every requested clinic's waiting events; a failure leaves the clinic to
// the reader's order (its readers wait as before).
func (a *applier) runExpedites(ctx context.Context) {
	for clinic, at := range a.expedites.take() {
		if err := a.expediteClinic(ctx, clinic, at); err != nil && !errors.Is(err, errBusy) && ctx.Err() == nil {
			a.e.log.Warn("projection: expediting a clinic failed; its reads wait for the reader", "projection", a.p.Name, "clinic", clinic, "err", err)
		}
	}
}

// expediteClinic applies, in one transaction holding the reader's lock, clinic's events of p
// after the reader's cursor and up to at (at most expediteMax).
func (a *applier) expediteClinic(ctx context.Context, clinic string, at eventstore.Checkpoint) error {
	e, p := a.e, a.p
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	var got bool
	var cur eventstore.Checkpoint
	pre := newLockBatch(p, &got, func(name string, cp eventstore.Checkpoint) {
		if name == cursorPrefix+p.Name {
			cur = cp
		}
	})
	if err := tx.SendBatch(ctx, pre).Close(); err != nil {
		return fmt.Errorf("lock reader: %w", err)
	}
	if !got {
		return errBusy
	}
	if reached(cur, at) {
		return nil // the reader got there meanwhile
	}
	// The clinic's streams of p with events in (cursor, at], and the last version of each there.
	last := map[string]int64{}
	var order []string
	from, seen := cur, 0
	for {
		refs, err := e.store.EventRefsIn(ctx, tx, from, at, watermarkPage)
		if err != nil {
			return err
		}
		for _, r := range refs {
			ev := eventstore.RecordedEvent{StreamID: r.StreamID, Metadata: eventstore.Metadata{ClinicID: r.ClinicID}}
			if p.handles(r.StreamID) && ClinicOf(ev) == clinic {
				if _, ok := last[r.StreamID]; !ok {
					order = append(order, r.StreamID)
				}
				last[r.StreamID] = max(last[r.StreamID], r.StreamVersion)
				seen++
			}
			from = r.Checkpoint
		}
		if len(refs) < watermarkPage || seen > expediteMax {
			break
		}
	}
	if seen == 0 || seen > expediteMax {
		return nil
	}
	applied, err := checkpointsIn(ctx, tx, p.Name, order)
	if err != nil {
		return err
	}
	var evs []eventstore.RecordedEvent
	for _, s := range order {
		if applied[s] >= last[s] {
			continue
		}
		// A stream's versions commit in order, so reading it by version is gap-free.
		got, err := e.store.ReadStreamIn(ctx, tx, s, applied[s]+1, int(last[s]-applied[s]))
		if err != nil {
			return err
		}
		evs = append(evs, got...)
	}
	if len(evs) == 0 {
		return nil
	}
	storeOrder(evs)
	results, _, err := a.applyEach(ctx, tx, evs)
	if err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	e.m.expedited.WithLabelValues(p.Name).Add(float64(len(evs)))
	a.afterCommit(results)
	return nil
}
