package projections

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/huddle-chat/huddle/eventstore"
)

// Read-your-writes across streams and instances (ADR 0008).
//
// A projection's watermark is a point in the store's gap-safe (tx_id, global_position) order up
// to which every event is applied, or is not this projection's to apply. A command's position
// token carries its last event's point; a read that waits until every projection's watermark
// passes it sees all of the caller's earlier writes, whatever their streams and whichever
// instance applied them: an earlier write committed before the later one began, so it comes
// before it in that order.
//
// Any instance advances a watermark by walking the events after it, in order and only below
// the oldest running transaction (so it never passes an event that may still commit), until
// the first one the projection has not applied by its stream's checkpoint. The result is
// kept in eventstore_checkpoints, where a restore repair rewrites it with the relay's, and
// only ever moves forward.

const (
	watermarkPrefix = "projection-watermark/"
	watermarkPage   = 2000
)

// watermarks caches each projection's last known watermark; advancing is serialised per
// engine, so concurrent waiters share one walk.
type watermarks struct {
	advance sync.Mutex
	mu      sync.Mutex
	known   map[string]eventstore.Checkpoint
	// clinics holds, per projection, clinic watermarks ahead of the projection's: up to there
	// every event of that clinic is applied (WaitForClinic). Kept in memory only; one is
	// dropped once the projection's watermark passes it.
	clinics map[string]map[string]eventstore.Checkpoint
}

// passed reports whether projection's watermark, or clinic's in it (clinic "": none), reached at.
func (w *watermarks) passed(projection, clinic string, at eventstore.Checkpoint) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return reached(w.known[projection], at) || (clinic != "" && reached(w.clinics[projection][clinic], at))
}

func (w *watermarks) clinic(projection, clinic string) eventstore.Checkpoint {
	w.mu.Lock()
	defer w.mu.Unlock()
	cp := w.clinics[projection][clinic]
	if g := w.known[projection]; reached(g, cp) {
		return g
	}
	return cp
}

func (w *watermarks) raiseClinic(projection, clinic string, cp eventstore.Checkpoint) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if reached(w.known[projection], cp) {
		return
	}
	if w.clinics == nil {
		w.clinics = map[string]map[string]eventstore.Checkpoint{}
	}
	if w.clinics[projection] == nil {
		w.clinics[projection] = map[string]eventstore.Checkpoint{}
	}
	if reached(cp, w.clinics[projection][clinic]) {
		w.clinics[projection][clinic] = cp
	}
}

func (w *watermarks) get(projection string) eventstore.Checkpoint {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.known[projection]
}

func (w *watermarks) raise(projection string, cp eventstore.Checkpoint) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.known == nil {
		w.known = map[string]eventstore.Checkpoint{}
	}
	if reached(cp, w.known[projection]) {
		w.known[projection] = cp
	}
	for c, m := range w.clinics[projection] {
		if reached(cp, m) {
			delete(w.clinics[projection], c)
		}
	}
}

// reached reports whether a is at or after b in the gap-safe order.
func reached(a, b eventstore.Checkpoint) bool {
	return a.TxID > b.TxID || (a.TxID == b.TxID && a.Position >= b.Position)
}

// WaitForAll blocks until every projection has applied everything up to at in the store's
// gap-safe order (see above), or ctx ends. A zero at returns at once.
func (e *Engine) WaitForAll(ctx context.Context, at eventstore.Checkpoint) error {
	return e.WaitForClinic(ctx, "", at)
}

// WaitForClinic blocks until every projection has applied every event of clinic up to at in
// the store's gap-safe order, or ctx ends (clinic "": of every clinic). A caller's writes are
// all in its own clinic (position tokens are signed per clinic), so waiting for the clinic
// is read-your-writes, and an event another clinic has not applied yet delays no one here.
func (e *Engine) WaitForClinic(ctx context.Context, clinic string, at eventstore.Checkpoint) error {
	if at == (eventstore.Checkpoint{}) {
		return nil
	}
	backoff := 2 * time.Millisecond
	for _, p := range e.models {
		for !e.marks.passed(p.Name, clinic, at) {
			if err := e.advanceWatermark(ctx, p, at); err != nil {
				return err
			}
			if e.marks.passed(p.Name, clinic, at) {
				break
			}
			if clinic != "" {
				if err := e.advanceClinic(ctx, p, clinic, at); err != nil {
					return err
				}
				if e.marks.passed(p.Name, clinic, at) {
					break
				}
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
			backoff = min(backoff*2, 100*time.Millisecond)
		}
	}
	return nil
}

// Watermark returns projection's watermark after advancing it as far as it goes now.
func (e *Engine) Watermark(ctx context.Context, projection string) (eventstore.Checkpoint, error) {
	p, ok := e.model(projection)
	if !ok {
		return eventstore.Checkpoint{}, fmt.Errorf("watermark: unknown projection %q", projection)
	}
	if err := e.advanceWatermark(ctx, p, eventstore.Checkpoint{}); err != nil {
		return eventstore.Checkpoint{}, err
	}
	return e.marks.get(p.Name), nil
}

// advanceWatermark walks p's watermark forward as far as the applied events allow and saves it.
// A caller waiting for target (zero: none) skips the walk when a walk it waited on got there.
func (e *Engine) advanceWatermark(ctx context.Context, p *ReadModel, target eventstore.Checkpoint) error {
	e.marks.advance.Lock()
	defer e.marks.advance.Unlock()
	if target != (eventstore.Checkpoint{}) && reached(e.marks.get(p.Name), target) {
		return nil
	}
	name := watermarkPrefix + p.Name
	stored, err := eventstore.LoadCheckpointIn(ctx, e.pool, name)
	if err != nil {
		return fmt.Errorf("watermark %s: %w", p.Name, err)
	}
	e.marks.raise(p.Name, stored)
	start := e.marks.get(p.Name)
	at := start
	for {
		n, blocked, err := e.walkWatermark(ctx, p, &at)
		if err != nil {
			return err
		}
		if blocked || n < watermarkPage {
			break
		}
	}
	if at == start && at == stored {
		return nil
	}
	if err := eventstore.AdvanceCheckpointIn(ctx, e.pool, name, at); err != nil {
		return fmt.Errorf("watermark %s: save: %w", p.Name, err)
	}
	e.marks.raise(p.Name, at)
	return nil
}

// walkWatermark moves at over one page of applied (or foreign) events. It returns how many
// events it read and whether it stopped at an event not applied yet.
func (e *Engine) walkWatermark(ctx context.Context, p *ReadModel, at *eventstore.Checkpoint) (int, bool, error) {
	return e.walk(ctx, p, "", at, eventstore.Checkpoint{})
}

// walk moves at over one page of events (up to target unless zero) that p has applied by their
// streams' checkpoints, are not p's, or (clinic not "") are another clinic's. It returns how
// many events it read and whether it stopped at one it may not pass.
func (e *Engine) walk(ctx context.Context, p *ReadModel, clinic string, at *eventstore.Checkpoint, target eventstore.Checkpoint) (int, bool, error) {
	refs, err := e.store.EventRefsIn(ctx, e.pool, *at, target, watermarkPage)
	if err != nil {
		return 0, false, fmt.Errorf("watermark %s: %w", p.Name, err)
	}
	var streams []string
	for _, r := range refs {
		if p.handles(r.StreamID) {
			streams = append(streams, r.StreamID)
		}
	}
	applied, err := checkpointsIn(ctx, e.pool, p.Name, streams)
	if err != nil {
		return 0, false, fmt.Errorf("watermark %s: %w", p.Name, err)
	}
	for i, r := range refs {
		ev := eventstore.RecordedEvent{StreamID: r.StreamID, Metadata: eventstore.Metadata{ClinicID: r.ClinicID}}
		if p.handles(r.StreamID) && applied[r.StreamID] < r.StreamVersion && (clinic == "" || ClinicOf(ev) == clinic) {
			return i + 1, true, nil
		}
		*at = r.Checkpoint
	}
	return len(refs), false, nil
}

// advanceClinic walks clinic's watermark in p forward, towards target, over every event that is
// applied, not p's, or another clinic's.
func (e *Engine) advanceClinic(ctx context.Context, p *ReadModel, clinic string, target eventstore.Checkpoint) error {
	e.marks.advance.Lock()
	defer e.marks.advance.Unlock()
	at := e.marks.clinic(p.Name, clinic)
	for !reached(at, target) {
		n, blocked, err := e.walkClinic(ctx, p, clinic, &at, target)
		if err != nil {
			return err
		}
		if blocked || n < watermarkPage {
			break
		}
	}
	e.marks.raiseClinic(p.Name, clinic, at)
	return nil
}

func (e *Engine) walkClinic(ctx context.Context, p *ReadModel, clinic string, at *eventstore.Checkpoint, target eventstore.Checkpoint) (int, bool, error) {
	return e.walk(ctx, p, clinic, at, target)
}
