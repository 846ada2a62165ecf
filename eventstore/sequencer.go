package eventstore

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// ErrBusy is returned when a command could not be applied before its deadline: its stream's
// queue was full, or other writers (another instance) kept winning the stream until the
// context expired. Nothing of the command was written by this call; the API answers it with
// 503 busy and Retry-After, never 500.
var ErrBusy = errors.New("stream busy: the command could not be applied before its deadline")

// Command is one command for a Sequencer.
type Command[S any] struct {
	// ID makes the command idempotent: a repeat of an appended command gets the first run's
	// result (Duplicate) and appends nothing.
	ID string
	// MayRepeat marks an id that a client can send again (derived from its idempotency key):
	// a repeat answers with what was sent the first time even if the state has moved on. The
	// append finds a repeat that decides again; one that is now refused (or a no-op) is looked
	// up in the store before it is refused. Fresh random ids never are.
	MayRepeat bool
	// Decide returns the events the command appends to the state at version (none: a no-op),
	// or the error that refuses it. It must not keep or change state: the sequencer evolves
	// it, and may call Decide again after reloading.
	Decide func(state S, version int64) ([]EventData, error)
}

// SequencerOptions tune a Sequencer; zero values get defaults.
type SequencerOptions struct {
	// MaxStreams is how many idle streams' states stay in memory (default 10,000), least
	// recently used first out. Streams with queued commands are never evicted.
	MaxStreams int
	// MaxQueue bounds the commands waiting on one stream (default 4,096); beyond it a
	// command fails at once with ErrBusy instead of queueing without bound.
	MaxQueue int
	// MaxBatch bounds the commands decided and appended together (default 256).
	MaxBatch int
	// Timeout is the deadline of a command whose context has none (default 10 s).
	Timeout time.Duration
}

// Sequencer runs the commands of each stream one after another against the stream's state
// held in memory, and appends the commands that queued up while one append ran together, in
// one transaction with one expected version (Store.AppendCommands). Each command keeps its
// own result, id and idempotency.
//
// The state is kept current by what this sequencer appends; it is re-read from the store
// only when an append finds the stream moved on (another instance wrote), when a command is
// refused or changes nothing (so a refusal is never based on a state another instance has
// already changed), or after an append whose outcome is unknown. A version conflict is
// retried with jittered backoff until each command's deadline, then answered with ErrBusy.
//
// A stream has a goroutine only while it has commands queued; idle streams are a map entry
// in an LRU bounded by MaxStreams. ADR 0010 has the design and the alternatives measured.
//
// Aggregate.Evolve must depend only on an event's type, data, metadata and stream version
// (the sequencer evolves its state with events before the store records them), and must not
// change the state it is given in place if State is used (readers share the state).
type Sequencer[S any] struct {
	store *Store
	agg   Aggregate[S]
	opts  SequencerOptions

	mu      sync.Mutex
	streams map[string]*sequencedStream[S]
	idle    *list.List // of *sequencedStream[S]; front: most recently used

	appends, appended, conflicts atomic.Int64
}

// SequencerStats count a sequencer's work since it started.
type SequencerStats struct {
	// Streams is how many streams' states are in memory now.
	Streams int
	// Appends is how many AppendCommands calls committed, Commands how many commands they
	// carried (Commands/Appends is the mean batch), Conflicts how many found the stream moved.
	Appends, Commands, Conflicts int64
}

// Stats returns the sequencer's counters.
func (q *Sequencer[S]) Stats() SequencerStats {
	q.mu.Lock()
	n := len(q.streams)
	q.mu.Unlock()
	return SequencerStats{Streams: n, Appends: q.appends.Load(), Commands: q.appended.Load(), Conflicts: q.conflicts.Load()}
}

type sequencedStream[S any] struct {
	id string
	// Guarded by Sequencer.mu.
	queue   []*queuedCommand[S]
	running bool          // a drain goroutine owns the stream
	elem    *list.Element // its place in the idle LRU while not running
	loaded  bool
	state   S
	version int64
	// Owned by the drain goroutine.
	snapVersion int64
}

type queuedCommand[S any] struct {
	ctx  context.Context
	cmd  Command[S]
	done chan commandOutcome // buffered: the drainer never waits for a caller that gave up
}

type commandOutcome struct {
	res AppendResult
	err error
}

// NewSequencer returns a sequencer for the streams of aggregate a in s.
func NewSequencer[S any](s *Store, a Aggregate[S], opts SequencerOptions) *Sequencer[S] {
	if opts.MaxStreams <= 0 {
		opts.MaxStreams = 10_000
	}
	if opts.MaxQueue <= 0 {
		opts.MaxQueue = 4096
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	return &Sequencer[S]{store: s, agg: a, opts: opts, streams: map[string]*sequencedStream[S]{}, idle: list.New()}
}

// Execute queues cmd on streamID and waits for its outcome, with the same answers as the
// package's Execute: the append's result; for a repeated command id the first run's result
// (Duplicate); for a command that decides nothing the stream's current version
// (FirstVersion = LastVersion + 1, no events); Decide's own error unwrapped. It fails with
// ErrBusy when the command's deadline passes first, and with ctx.Err() when ctx is canceled.
func (q *Sequencer[S]) Execute(ctx context.Context, streamID string, cmd Command[S]) (AppendResult, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, q.opts.Timeout)
		defer cancel()
	}
	qc := &queuedCommand[S]{ctx: ctx, cmd: cmd, done: make(chan commandOutcome, 1)}
	q.mu.Lock()
	st := q.stream(streamID)
	if n := len(st.queue); n >= q.opts.MaxQueue {
		q.mu.Unlock()
		return AppendResult{}, fmt.Errorf("%s: %d commands queued: %w", streamID, n, ErrBusy)
	}
	st.queue = append(st.queue, qc)
	lead := !st.running
	if lead {
		st.running = true
		if st.elem != nil {
			q.idle.Remove(st.elem)
			st.elem = nil
		}
	}
	q.mu.Unlock()
	if lead {
		// The stream was idle: this caller runs the first batch (its own command first) on its
		// own goroutine, with no hand-off; whatever queued meanwhile goes on in a goroutine.
		if batch := q.take(st); batch != nil {
			q.runSafely(st, batch)
		}
		q.mu.Lock()
		if len(st.queue) > 0 {
			go q.drain(st)
		} else {
			q.park(st)
		}
		q.mu.Unlock()
	}
	select {
	case out := <-qc.done:
		return out.res, out.err
	case <-ctx.Done():
		return AppendResult{}, expired(ctx)
	}
}

// State returns streamID's state as this instance last committed or loaded it, loading it
// when it is not in memory. It may trail another instance's writes: a caller that refuses
// something because of it should check again with Load.
func (q *Sequencer[S]) State(ctx context.Context, streamID string) (S, int64, error) {
	q.mu.Lock()
	if st, ok := q.streams[streamID]; ok && st.loaded {
		state, version := st.state, st.version
		q.mu.Unlock()
		return state, version, nil
	}
	q.mu.Unlock()
	return Load(ctx, q.store, streamID, q.agg)
}

// expired names why a command's context ended: a deadline is "busy", a cancellation the
// caller's own doing.
func expired(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ErrBusy
	}
	return ctx.Err()
}

// stream returns the entry of streamID, creating it (and evicting the least recently used
// idle ones beyond MaxStreams). q.mu must be held.
func (q *Sequencer[S]) stream(id string) *sequencedStream[S] {
	if st, ok := q.streams[id]; ok {
		if st.elem != nil {
			q.idle.MoveToFront(st.elem)
		}
		return st
	}
	st := &sequencedStream[S]{id: id}
	q.streams[id] = st
	for len(q.streams) > q.opts.MaxStreams && q.idle.Len() > 0 {
		old := q.idle.Remove(q.idle.Back()).(*sequencedStream[S])
		old.elem = nil
		delete(q.streams, old.id)
	}
	return st
}

// drain runs st's queued commands batch by batch until the queue is empty, then files the
// stream as idle and ends: no goroutine outlives a stream's work.
func (q *Sequencer[S]) drain(st *sequencedStream[S]) {
	for {
		batch := q.take(st)
		if batch == nil {
			q.mu.Lock()
			if len(st.queue) == 0 {
				q.park(st)
				q.mu.Unlock()
				return
			}
			q.mu.Unlock()
			continue
		}
		q.runSafely(st, batch)
	}
}

// take removes the next batch from st's queue (nil when it is empty).
func (q *Sequencer[S]) take(st *sequencedStream[S]) []*queuedCommand[S] {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(st.queue), q.opts.MaxBatch)
	if n == 0 {
		return nil
	}
	batch := make([]*queuedCommand[S], n)
	copy(batch, st.queue)
	st.queue = st.queue[n:]
	return batch
}

// park files a stream with nothing queued as idle. q.mu must be held.
func (q *Sequencer[S]) park(st *sequencedStream[S]) {
	st.running = false
	st.queue = nil
	st.elem = q.idle.PushFront(st)
}

// runSafely is run, except that a panic in a Decide or Evolve fails the batch (and forgets the
// state) instead of taking the whole process down with the stream's goroutine.
func (q *Sequencer[S]) runSafely(st *sequencedStream[S], batch []*queuedCommand[S]) {
	defer func() {
		if p := recover(); p != nil {
			q.forget(st)
			for _, qc := range batch {
				select {
				case qc.done <- commandOutcome{err: fmt.Errorf("%s: command panicked: %v", st.id, p)}:
				default: // already answered
				}
			}
		}
	}()
	q.run(st, batch)
}

// decision is what one command came to in a round: events to append, or a final outcome.
type decision struct {
	events  []EventData
	outcome commandOutcome
	decided bool // outcome is final without an append (refused, no-op, repeat)
	// dupOf is the index in the batch of an earlier command with the same id.
	dupOf int
}

// run decides and appends one batch, retrying rounds on version conflicts until every
// command has an outcome.
func (q *Sequencer[S]) run(st *sequencedStream[S], batch []*queuedCommand[S]) {
	ctx, cancel := batchContext(batch)
	defer cancel()
	for attempt := 0; ; attempt++ {
		batch = dropExpired(batch)
		if len(batch) == 0 {
			return
		}
		if attempt > 1 {
			// Another writer won twice in a row: step aside a little, at random, so two
			// instances' sequencers do not keep colliding in lockstep.
			pause := time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 6)))
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
			if batch = dropExpired(batch); len(batch) == 0 {
				return
			}
		}
		if !st.loaded {
			if err := q.reload(ctx, st); err != nil {
				replyAll(batch, commandOutcome{err: err})
				return
			}
		}
		// A repeat is found by its append (the store answers it with the first run) or, when
		// it is refused on the state that has moved on since, by a look-up then; only after a
		// conflict (which a repeat amid a batch causes) are all of them looked up first.
		decisions, next, err := q.decide(ctx, st, batch, attempt > 0)
		if err != nil {
			replyAll(batch, commandOutcome{err: err})
			return
		}
		if q.commit(ctx, st, batch, decisions, next) {
			return
		}
	}
}

// batchContext bounds the store calls of a batch by the latest deadline among its commands:
// the batch works on while any caller still waits.
func batchContext[S any](batch []*queuedCommand[S]) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, qc := range batch {
		if d, ok := qc.ctx.Deadline(); ok && d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(context.Background(), latest)
}

// dropExpired answers the commands whose deadline has passed and returns the rest.
func dropExpired[S any](batch []*queuedCommand[S]) []*queuedCommand[S] {
	live := batch[:0:0]
	for _, qc := range batch {
		if qc.ctx.Err() != nil {
			qc.done <- commandOutcome{err: expired(qc.ctx)}
			continue
		}
		live = append(live, qc)
	}
	return live
}

func replyAll[S any](batch []*queuedCommand[S], out commandOutcome) {
	for _, qc := range batch {
		qc.done <- out
	}
}

// decide runs every command of the batch in order against the state the ones before it
// leave. A refusal or no-op is double-checked against the store once per round: if another
// instance moved the stream on, the round starts over on the fresh state.
//
// It also returns the state the batch's events lead to, which commit makes the stream's once
// they are stored (so no event is evolved twice).
func (q *Sequencer[S]) decide(ctx context.Context, st *sequencedStream[S], batch []*queuedCommand[S], lookUpRepeats bool) ([]decision, S, error) {
	var none S
	var firsts map[string]AppendResult
	if lookUpRepeats {
		var err error
		if firsts, err = q.firstRuns(ctx, batch); err != nil {
			return nil, none, err
		}
	}
	verified := false
	for {
		state, version := st.state, st.version
		out := make([]decision, len(batch))
		seen := map[string]int{}
		restart := false
		for i, qc := range batch {
			out[i].dupOf = -1
			if first, ok := firsts[qc.cmd.ID]; ok {
				out[i] = decision{decided: true, dupOf: -1, outcome: commandOutcome{res: first}}
				continue
			}
			if j, ok := seen[qc.cmd.ID]; ok && qc.cmd.ID != "" {
				out[i].dupOf = j // the same command twice in one batch: it gets the first's result
				continue
			}
			seen[qc.cmd.ID] = i
			events, err := qc.cmd.Decide(state, version)
			if (err != nil || len(events) == 0) && qc.cmd.MayRepeat && !lookUpRepeats {
				// Refused, or nothing to do: perhaps because it ran before.
				found, ferr := q.firstRuns(ctx, []*queuedCommand[S]{qc})
				if ferr != nil {
					return nil, none, ferr
				}
				if first, ok := found[qc.cmd.ID]; ok {
					out[i] = decision{decided: true, dupOf: -1, outcome: commandOutcome{res: first}}
					continue
				}
			}
			if err != nil || len(events) == 0 {
				if !verified {
					verified = true
					changed, rerr := q.refresh(ctx, st)
					if rerr != nil {
						return nil, none, rerr
					}
					if changed {
						restart = true
						break
					}
				}
				out[i] = decision{decided: true, dupOf: -1, outcome: commandOutcome{err: err,
					res: AppendResult{StreamID: st.id, FirstVersion: version + 1, LastVersion: version}}}
				continue
			}
			next, err := q.evolve(st.id, state, version, qc.cmd.ID, events)
			if err != nil {
				return nil, none, err
			}
			state = next
			version += int64(len(events))
			out[i].events = events
		}
		if !restart {
			return out, state, nil
		}
	}
}

// firstRuns asks the store, in one query, for the first runs of the batch's commands that a
// client may have sent before.
func (q *Sequencer[S]) firstRuns(ctx context.Context, batch []*queuedCommand[S]) (map[string]AppendResult, error) {
	var ids []string
	for _, qc := range batch {
		if qc.cmd.MayRepeat && qc.cmd.ID != "" {
			ids = append(ids, qc.cmd.ID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return q.store.commandResults(ctx, ids)
}

// evolve applies events a command decided to state, as the store will record them.
func (q *Sequencer[S]) evolve(streamID string, state S, version int64, commandID string, events []EventData) (S, error) {
	for i, e := range events {
		md := e.Metadata
		if md.CommandID == "" {
			md.CommandID = commandID
		}
		rec := RecordedEvent{StreamID: streamID, StreamVersion: version + int64(i) + 1, Type: e.Type,
			SchemaVersion: max(e.SchemaVersion, 1), Data: e.Data, Metadata: md}
		var err error
		if state, err = q.agg.Evolve(state, rec); err != nil {
			return state, fmt.Errorf("%s: evolve version %d: %w", streamID, rec.StreamVersion, err)
		}
	}
	return state, nil
}

// commit appends the batch's decided events and answers its commands. It reports false when
// the stream had moved on (now re-read) and the batch must be decided again.
func (q *Sequencer[S]) commit(ctx context.Context, st *sequencedStream[S], batch []*queuedCommand[S], ds []decision, next S) bool {
	var cmds []CommandEvents
	var appended []int
	for i, d := range ds {
		if len(d.events) > 0 {
			cmds = append(cmds, CommandEvents{CommandID: batch[i].cmd.ID, Events: d.events})
			appended = append(appended, i)
		}
	}
	if len(cmds) > 0 {
		results, err := q.store.AppendCommands(ctx, st.id, st.version, cmds)
		switch {
		case errors.Is(err, ErrConflict):
			q.conflicts.Add(1)
			if _, rerr := q.refresh(ctx, st); rerr != nil {
				replyAll(batch, commandOutcome{err: rerr})
				return true
			}
			return false
		case err != nil:
			// The outcome is unknown (the commit may have happened): forget the state, so the
			// next command reloads it, and let the callers retry with their ids.
			q.forget(st)
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (%v)", ErrBusy, err)
			}
			replyAll(batch, commandOutcome{err: err})
			return true
		}
		q.appends.Add(1)
		q.appended.Add(int64(len(cmds)))
		dup := false
		for k, i := range appended {
			ds[i].outcome = commandOutcome{res: results[k]}
			dup = dup || results[k].Duplicate
		}
		if dup {
			// A command ran before after all (a repeat the pre-check did not know could be
			// one): what was written is not what was evolved, so re-read.
			q.forget(st)
		} else {
			q.advance(ctx, st, next, results[len(results)-1].LastVersion)
		}
	}
	for i, d := range ds {
		if d.dupOf >= 0 {
			first := ds[d.dupOf].outcome
			if first.err == nil && len(first.res.Events) > 0 {
				first.res.Duplicate = true
			}
			batch[i].done <- first
			continue
		}
		batch[i].done <- d.outcome
	}
	return true
}

// advance makes the state the appended commands evolved (in decide) the committed one, and
// stores a snapshot when enough events followed the last one (best effort: the events are
// committed).
func (q *Sequencer[S]) advance(ctx context.Context, st *sequencedStream[S], state S, last int64) {
	q.mu.Lock()
	st.state, st.version = state, last
	q.mu.Unlock()
	every := int64(q.agg.SnapshotEvery)
	if every <= 0 {
		every = defaultSnapshotEvery
	}
	if q.agg.SnapshotVersion > 0 && last-st.snapVersion >= every {
		if writeSnapshot(ctx, q.store, st.id, q.agg, state, last) {
			st.snapVersion = last
		}
	}
}

func (q *Sequencer[S]) forget(st *sequencedStream[S]) {
	q.mu.Lock()
	st.loaded = false
	q.mu.Unlock()
}

// reload loads st's state from its snapshot and events.
func (q *Sequencer[S]) reload(ctx context.Context, st *sequencedStream[S]) error {
	state, version, snap, err := load(ctx, q.store, st.id, q.agg)
	if err != nil {
		return err
	}
	q.mu.Lock()
	st.state, st.version, st.loaded = state, version, true
	q.mu.Unlock()
	st.snapVersion = snap
	return nil
}

// refresh applies the events other writers appended after st's version; changed reports
// whether there were any.
func (q *Sequencer[S]) refresh(ctx context.Context, st *sequencedStream[S]) (changed bool, err error) {
	state, version, err := readOn(ctx, q.store, st.id, q.agg, st.state, st.version)
	if err != nil {
		return false, fmt.Errorf("refresh %s: %w", st.id, err)
	}
	if version == st.version {
		return false, nil
	}
	q.mu.Lock()
	st.state, st.version = state, version
	q.mu.Unlock()
	return true, nil
}
