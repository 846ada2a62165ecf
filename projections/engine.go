package projections

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/live"
	"github.com/huddle-chat/huddle/internal/natsbroker"
)

// Topic is the subject filter every projector consumes; each projection skips the categories
// it does not read.
const Topic = eventstore.SubjectPrefix + ">"

// DurablePrefix names each projection's durable JetStream consumer ("huddle-projection-inbox").
// Every instance uses the same name, so instances share one consumer per projection as a queue
// group and a restart resumes from the last ack.
const DurablePrefix = "huddle-projection-"

// EventReader is what the engine needs of the event store (*eventstore.Store).
type EventReader interface {
	ReadAll(ctx context.Context, after eventstore.Checkpoint, limit int) ([]eventstore.RecordedEvent, error)
	ReadStream(ctx context.Context, streamID string, fromVersion int64, limit int) ([]eventstore.RecordedEvent, error)
	ReadStreamIn(ctx context.Context, q eventstore.Querier, streamID string, fromVersion int64, limit int) ([]eventstore.RecordedEvent, error)
	ReadAllIn(ctx context.Context, q eventstore.Querier, after eventstore.Checkpoint, limit int) ([]eventstore.RecordedEvent, error)
	// Upcast brings an event read by a query of our own to its type's latest schema version.
	Upcast(e *eventstore.RecordedEvent) error
}

// poisonAfter is how many times an event may fail with a non-transient error before it is
// recorded in projection_poison and skipped, so one bad event cannot wedge a projection.
const poisonAfter = 5

// Engine runs the projectors: one Watermill router handler per projection, each on its own
// durable JetStream consumer.
type Engine struct {
	pool    *pgxpool.Pool
	store   EventReader
	natsURL string
	log     *slog.Logger
	m       *metrics

	// AckWait is the JetStream ack wait of the consumers (default 30 s).
	AckWait time.Duration
	// StatusEvery is how often lag metrics are refreshed (default 5 s).
	StatusEvery time.Duration
	// Workers is how many events each projection takes in at once on this instance (default
	// 1; huddle serve takes HUDDLE_PROJECTION_WORKERS, default 8). With more than one, events
	// that arrive while a transaction runs are applied together in the next (group.go). The
	// read models stay exact with any number: appliers of one clinic serialise on its lock,
	// an event that overtakes an earlier one of its stream fills the gap from the store, and
	// the earlier one is then a skipped duplicate. Read-your-writes holds too: a
	// Huddle-Min-Position read waits for the watermark (everything stored before the caller's
	// write), not for apply order (ADR 0008).
	Workers int
	// Bootstrap (default true) makes Run rebuild, before consuming, any projection that has
	// applied nothing while the store holds events: JetStream's retention may no longer reach
	// back to the first event (a new deployment on an old store, a wiped broker).
	Bootstrap bool

	running atomic.Bool
	waiters waiters
	marks   watermarks
	// groups gathers concurrent workers' events into shared transactions (set by Run when
	// Workers > 1; see group.go).
	groups map[string]*grouper

	mu       sync.Mutex
	failures map[string]int // event id → failures so far

	// notifier pings users whose live feed got entries; set by Run.
	notifier *live.Notifier

	// afterCommit, when set (tests), runs after an event's transaction committed and before
	// the message is acked; an error then nacks it, as if the process died before acking.
	afterCommit func(projection string, e eventstore.RecordedEvent) error
}

// NewEngine returns an engine that reads events from NATS at natsURL and fills gaps from store.
func NewEngine(pool *pgxpool.Pool, store EventReader, natsURL string, log *slog.Logger, reg prometheus.Registerer) *Engine {
	if log == nil {
		log = slog.Default()
	}
	return &Engine{
		pool:        pool,
		store:       store,
		natsURL:     natsURL,
		log:         log.With("component", "projections"),
		m:           newMetrics(reg),
		AckWait:     30 * time.Second,
		StatusEvery: 5 * time.Second,
		Workers:     1,
		Bootstrap:   true,
		waiters:     waiters{m: map[string][]*waiter{}},
		failures:    map[string]int{},
	}
}

// Run consumes events until ctx ends. It returns nil on a clean shutdown.
func (e *Engine) Run(ctx context.Context) error {
	if e.Bootstrap {
		if err := e.bootstrap(ctx); err != nil {
			// Live projection still works (gaps fill from the store); say so loudly.
			e.log.Error("projection bootstrap failed; run `huddle projections rebuild`", "err", err)
		}
	}
	// Watermill's per-message debug lines would drown ours; its info lines (handler start and
	// stop) are worth keeping at debug.
	wlog := watermill.NewSlogLoggerWithLevelMapping(e.log, map[slog.Level]slog.Level{
		slog.LevelDebug: slog.LevelDebug - 4, slog.LevelInfo: slog.LevelDebug, watermill.LevelTrace: slog.LevelDebug - 8,
	})
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: e.AckWait}, wlog)
	if err != nil {
		return fmt.Errorf("projections: router: %w", err)
	}
	// No Retry/PoisonQueue middleware: a failing handler nacks, JetStream redelivers, and the
	// handler itself counts non-transient failures and parks poison events (see handle).
	router.AddMiddleware(middleware.Recoverer)
	nc, err := nats.Connect(e.natsURL, nats.Name("huddle-projections-live"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("projections: nats for live pings: %w", err)
	}
	defer nc.Close()
	e.notifier = live.NewNotifier(nc, e.log)
	if e.Workers > 1 {
		e.groups = map[string]*grouper{}
		for _, p := range projections {
			e.groups[p.name] = &grouper{e: e, p: p}
		}
	}
	var subs []message.Subscriber
	defer func() {
		for _, s := range subs {
			_ = s.Close()
		}
	}()
	for _, p := range projections {
		sub, err := natsbroker.NewSubscriberWorkers(e.natsURL, DurablePrefix+p.name, e.AckWait, e.Workers, wlog)
		if err != nil {
			return fmt.Errorf("projections: subscriber %s: %w", p.name, err)
		}
		subs = append(subs, sub)
		router.AddConsumerHandler("projection-"+p.name, Topic, sub, e.handler(p))
	}

	statusCtx, stopStatus := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		select {
		case <-router.Running():
			e.running.Store(true)
		case <-statusCtx.Done():
		}
	}()
	go func() {
		defer wg.Done()
		e.refreshLoop(statusCtx)
	}()
	err = router.Run(ctx)
	e.running.Store(false)
	stopStatus()
	wg.Wait()
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("projections: router: %w", err)
	}
	return nil
}

// bootstrap rebuilds the projections that have no checkpoint at all when the store has events.
func (e *Engine) bootstrap(ctx context.Context) error {
	var empty []string
	for _, p := range projections {
		var none bool
		if err := e.pool.QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM projection_checkpoints WHERE projection = $1)`, p.name).Scan(&none); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
		if none {
			empty = append(empty, p.name)
		}
	}
	if len(empty) == 0 {
		return nil
	}
	var any bool
	if err := e.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM events)`).Scan(&any); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if !any {
		return nil
	}
	e.log.Info("projections: empty read models over a non-empty store, rebuilding first", "projections", empty)
	err := e.Rebuild(ctx, empty, nil)
	if errors.Is(err, ErrRebuildRunning) {
		return nil // another instance is doing it; its swap will catch up what we apply meanwhile
	}
	return err
}

// Healthy reports whether every projector is subscribed and consuming.
func (e *Engine) Healthy() bool { return e.running.Load() }

func (e *Engine) handler(p *projection) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		ctx := msg.Context()
		ev, err := eventstore.FromMessage(msg)
		if err != nil {
			// Not one of our events (or mangled in transit): nothing to apply, nothing to fill.
			e.log.Error("projection: undecodable message skipped", "projection", p.name, "uuid", msg.UUID, "err", err)
			e.m.poison.WithLabelValues(p.name).Inc()
			return nil
		}
		if !p.handles(ev.StreamID) {
			return nil
		}
		if err := e.applyOne(ctx, p, ev); err != nil {
			if transient(err) || ctx.Err() != nil {
				// Database down, a deadlock, a schema not migrated yet: retry until it works, but
				// back off so a persistent failure does not spin (a nack redelivers at once).
				n := e.fail(ev.EventID)
				e.log.Warn("projection: apply failed, will retry", "projection", p.name, "stream", ev.StreamID, "version", ev.StreamVersion, "attempt", n, "err", err)
				t := time.NewTimer(min(50*time.Millisecond<<min(n, 10), 5*time.Second))
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
				}
				return err
			}
			if n := e.fail(ev.EventID); n < poisonAfter {
				e.log.Warn("projection: apply failed", "projection", p.name, "stream", ev.StreamID, "version", ev.StreamVersion, "attempt", n, "err", err)
				return err
			}
			if perr := e.park(ctx, p, ev, err); perr != nil {
				return errors.Join(err, perr)
			}
			e.clearFailures(ev.EventID)
		}
		e.clearFailures(ev.EventID)
		if e.afterCommit != nil {
			if err := e.afterCommit(p.name, ev); err != nil {
				return err
			}
		}
		return nil
	}
}

// applyOne applies a delivered event: in a group with other workers' events when there are
// several workers, alone when there is one or when its group failed.
func (e *Engine) applyOne(ctx context.Context, p *projection, ev eventstore.RecordedEvent) error {
	if g := e.groups[p.name]; g != nil {
		if err := g.apply(ctx, ev); !errors.Is(err, errGroupFailed) {
			return err
		}
	}
	return e.applyEvents(ctx, p, []eventstore.RecordedEvent{ev})
}

const (
	sqlLockProjectionShared = `SELECT pg_advisory_xact_lock_shared($1)`
	sqlLockProjection       = `SELECT pg_advisory_xact_lock($1)`
	sqlEnsureCheckpoint     = `INSERT INTO projection_checkpoints (projection, stream_id, version) VALUES ($1, $2, 0)
		ON CONFLICT DO NOTHING`
	sqlLockCheckpoint = `SELECT version FROM projection_checkpoints WHERE projection = $1 AND stream_id = $2 FOR UPDATE`
	sqlSetCheckpoint  = `UPDATE projection_checkpoints SET version = $3, position = greatest(position, $4), recorded_at = $5
		WHERE projection = $1 AND stream_id = $2`
	sqlCheckpoint = `SELECT coalesce((SELECT version FROM projection_checkpoints WHERE projection = $1 AND stream_id = $2), 0)`
)

// applyEvents applies delivered events (one, or a group from several workers) in one
// transaction, by the per-stream protocol: lock each stream's checkpoint row, skip what the
// stream already has, fill a gap from the store, apply, advance the checkpoint, write the live
// feed, commit; then wake WaitFor callers.
func (e *Engine) applyEvents(ctx context.Context, p *projection, delivered []eventstore.RecordedEvent) error {
	byStream := map[string][]eventstore.RecordedEvent{}
	clinics := map[int64]bool{}
	for _, ev := range delivered {
		byStream[ev.StreamID] = append(byStream[ev.StreamID], ev)
		clinics[lockKey(p.name+"/clinic:"+clinicOf(ev))] = true
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

	// One round trip for the locks and the checkpoint rows.
	//   - Shared: appliers of a projection run concurrently; a rebuild's swap takes it
	//     exclusively.
	//   - Exclusive per clinic, in key order (two transactions cannot deadlock): the read
	//     models' cross-stream updates (a message and a mute, a rename and a directory change)
	//     are safe in any order but not at the same time, and every row an event touches
	//     belongs to its clinic. Workers and instances still run in parallel across clinics.
	//     (The property test catches concurrent appliers of one clinic diverging.)
	//   - Each stream's checkpoint row, created if need be and locked, in stream order.
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
	// not continue it without a hole (lost retention, reordering), everything up to the newest
	// from the store, which is the record.
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
			e.log.Info("projection: filled gap from store", "projection", p.name, "stream", s,
				"from", from+1, "to", newest)
		}
		apply = append(apply, fresh...)
		lastOf[s] = fresh[len(fresh)-1]
	}
	dups := 0
	for _, ev := range delivered {
		if ev.StreamVersion <= versions[ev.StreamID] {
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

// park records an event that keeps failing and advances the stream past it, so the projection
// moves on; the read model is then knowingly incomplete until the cause is fixed and it is
// rebuilt. Logged and counted.
func (e *Engine) park(ctx context.Context, p *projection, ev eventstore.RecordedEvent, cause error) error {
	e.log.Error("projection: poison event skipped", "projection", p.name, "stream", ev.StreamID,
		"version", ev.StreamVersion, "event_id", ev.EventID, "type", ev.Type, "err", cause)
	e.m.poison.WithLabelValues(p.name).Inc()
	return pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sqlLockProjectionShared, lockKey(p.name)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO projection_poison (projection, stream_id, version, event_id, event_type, error)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
			p.name, ev.StreamID, ev.StreamVersion, ev.EventID, ev.Type, cause.Error()); err != nil {
			return fmt.Errorf("record poison: %w", err)
		}
		if _, err := tx.Exec(ctx, sqlEnsureCheckpoint, p.name, ev.StreamID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE projection_checkpoints SET version = greatest(version, $3)
			WHERE projection = $1 AND stream_id = $2`, p.name, ev.StreamID, ev.StreamVersion)
		return err
	})
}

func (e *Engine) fail(eventID string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failures[eventID]++
	return e.failures[eventID]
}

func (e *Engine) clearFailures(eventID string) {
	e.mu.Lock()
	delete(e.failures, eventID)
	e.mu.Unlock()
}

// transient reports errors worth retrying forever: anything but a statement the database
// rejected for its data (SQLSTATE classes 22 data exception, 23 integrity violation) or an
// event we cannot decode.
func transient(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return !(len(pg.Code) == 5 && (pg.Code[:2] == "22" || pg.Code[:2] == "23"))
	}
	var de *decodeError
	return !errors.As(err, &de)
}

// decodeError marks an event whose data does not decode.
type decodeError struct{ err error }

func (d *decodeError) Error() string { return d.err.Error() }
func (d *decodeError) Unwrap() error { return d.err }

// lockKey is the advisory lock id of a projection: applying takes it shared, a rebuild's swap
// exclusive.
func lockKey(projection string) int64 {
	h := fnv.New64a()
	h.Write([]byte("huddle-projection:" + projection))
	return int64(h.Sum64() >> 1)
}

// WaitFor blocks until every projection reading streamID has applied version (read-your-writes),
// or ctx ends. It wakes on this instance's commits and rechecks the checkpoint table with a
// backoff, for events another instance applies.
func (e *Engine) WaitFor(ctx context.Context, streamID string, version int64) error {
	for _, p := range projectionsFor(streamID) {
		if err := e.waitFor(ctx, p, streamID, version); err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) waitFor(ctx context.Context, p *projection, streamID string, version int64) error {
	backoff := 50 * time.Millisecond
	for {
		w := e.waiters.add(p.name, streamID, version)
		var applied int64
		if err := e.pool.QueryRow(ctx, sqlCheckpoint, p.name, streamID).Scan(&applied); err != nil {
			e.waiters.remove(p.name, streamID, w)
			return fmt.Errorf("wait for %s@%d: %w", streamID, version, err)
		}
		if applied >= version {
			e.waiters.remove(p.name, streamID, w)
			return nil
		}
		t := time.NewTimer(backoff)
		select {
		case <-w.ch:
			t.Stop()
			return nil
		case <-t.C:
			e.waiters.remove(p.name, streamID, w)
			backoff = min(backoff*2, time.Second)
		case <-ctx.Done():
			t.Stop()
			e.waiters.remove(p.name, streamID, w)
			return ctx.Err()
		}
	}
}

// waiters is a per-stream broadcast: notify closes the channel of every waiter whose version
// has been reached.
type waiters struct {
	mu sync.Mutex
	m  map[string][]*waiter
}

type waiter struct {
	version int64
	ch      chan struct{}
}

func (ws *waiters) add(projection, streamID string, version int64) *waiter {
	w := &waiter{version: version, ch: make(chan struct{})}
	ws.mu.Lock()
	k := projection + "\x00" + streamID
	ws.m[k] = append(ws.m[k], w)
	ws.mu.Unlock()
	return w
}

func (ws *waiters) remove(projection, streamID string, w *waiter) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	k := projection + "\x00" + streamID
	list := ws.m[k]
	for i, x := range list {
		if x == w {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(ws.m, k)
	} else {
		ws.m[k] = list
	}
}

func (ws *waiters) notify(projection, streamID string, version int64) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	k := projection + "\x00" + streamID
	list := ws.m[k]
	keep := list[:0]
	for _, w := range list {
		if w.version <= version {
			close(w.ch)
		} else {
			keep = append(keep, w)
		}
	}
	if len(keep) == 0 {
		delete(ws.m, k)
	} else {
		ws.m[k] = keep
	}
}
