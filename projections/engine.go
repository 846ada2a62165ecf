package projections

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-chat/huddle/eventstore"
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
	// ReadAllOfInCounted is the readers' read: the events of their categories, how far it got,
	// and how many events it passed.
	ReadAllOfInCounted(ctx context.Context, q eventstore.Querier, after eventstore.Checkpoint, categories []string, limit int) ([]eventstore.RecordedEvent, eventstore.Checkpoint, int, error)
	// EventIDAt tells a message the store wrote from one it did not.
	EventIDAt(ctx context.Context, streamID string, version int64) (string, bool, error)
	// LastPosition, ReadAllForReplayIn, EventRefsIn and StreamSpansIn are the narrow reads of
	// the bootstrap, the rebuild, the watermarks, the retries and the status.
	LastPosition(ctx context.Context) (int64, error)
	ReadAllForReplayIn(ctx context.Context, q eventstore.Querier, after eventstore.Checkpoint, limit int) ([]eventstore.RecordedEvent, error)
	EventRefsIn(ctx context.Context, q eventstore.Querier, after, upTo eventstore.Checkpoint, limit int) ([]eventstore.EventRef, error)
	StreamSpansIn(ctx context.Context, q eventstore.Querier, after, upTo eventstore.Checkpoint, categories []string) ([]eventstore.StreamSpan, error)
}

// poisonAfter is how many times an event may fail with a non-transient error before it is
// recorded in projection_poison and skipped, so one bad event cannot wedge a projection.
const poisonAfter = 5

// Engine runs the projectors: per projection, a reader that applies what the store holds after
// its cursor (catchup.go), woken by a Watermill handler on the projection's durable JetStream
// consumer (handler.go) and by a poll.
type Engine struct {
	pool    *pgxpool.Pool
	store   EventReader
	natsURL string
	log     *slog.Logger
	m       *metrics

	// AckWait is the JetStream ack wait of the consumers (default 30 s). Nothing waits for
	// it: a reader catches up from the store, not from redelivery.
	AckWait time.Duration
	// StatusEvery is how often lag metrics are refreshed (default 5 s).
	StatusEvery time.Duration
	// Workers is how many NATS messages each projection's consumer takes in at once on this
	// instance (default 1; huddle serve takes HUDDLE_PROJECTION_WORKERS). Messages only wake
	// the reader, so this bounds acks in flight, not how many events a transaction applies.
	Workers int
	// BatchSize bounds the events one catch-up transaction reads (default DefaultBatchSize;
	// HUDDLE_PROJECTION_BATCH).
	BatchSize int
	// PollInterval is how often an idle reader looks at the store without a wake-up (default
	// DefaultPollInterval; HUDDLE_PROJECTION_POLL): it bounds the delay when NATS is down.
	PollInterval time.Duration
	// Bootstrap (default true) makes Run rebuild, before consuming, any projection that has
	// applied nothing while the store holds events: applying a large store from the start one
	// batch at a time is far slower than a rebuild.
	Bootstrap bool

	models   []*ReadModel
	running  atomic.Bool
	waiters  waiters
	marks    watermarks
	appliers map[string]*applier

	mu       sync.Mutex
	failures map[string]int // event id → failures so far

	// stopping ends with Run's context (set by Run).
	stopping <-chan struct{}

	// afterCommit, when set (tests), runs in a handler after the reader passed its event and
	// before the message is acked; an error then nacks it, as if the process died before acking.
	afterCommit func(projection string, e eventstore.RecordedEvent) error
	// applyHook, when set (tests), runs before each event is applied; an error fails it.
	applyHook func(projection string, e eventstore.RecordedEvent) error
}

// NewEngine returns an engine that applies store's events to models, woken by NATS at natsURL.
// The order of models is the order rebuild and status show them in.
func NewEngine(pool *pgxpool.Pool, store EventReader, natsURL string, log *slog.Logger, reg prometheus.Registerer, models []*ReadModel) *Engine {
	if log == nil {
		log = slog.Default()
	}
	e := &Engine{
		pool:         pool,
		store:        store,
		natsURL:      natsURL,
		log:          log.With("component", "projections"),
		m:            newMetrics(reg),
		AckWait:      30 * time.Second,
		StatusEvery:  5 * time.Second,
		Workers:      1,
		BatchSize:    DefaultBatchSize,
		PollInterval: DefaultPollInterval,
		Bootstrap:    true,
		waiters:      waiters{m: map[string][]*waiter{}},
		failures:     map[string]int{},
		appliers:     map[string]*applier{},
		models:       models,
	}
	for _, p := range models {
		e.appliers[p.Name] = newApplier(e, p)
	}
	return e
}

// Names lists the read models, in the engine's order.
func (e *Engine) Names() []string {
	out := make([]string, len(e.models))
	for i, p := range e.models {
		out[i] = p.Name
	}
	return out
}

func (e *Engine) model(name string) (*ReadModel, bool) {
	for _, p := range e.models {
		if p.Name == name {
			return p, true
		}
	}
	return nil, false
}

// modelsFor returns the read models that consume streamID's events.
func (e *Engine) modelsFor(streamID string) []*ReadModel {
	var out []*ReadModel
	for _, p := range e.models {
		if p.handles(streamID) {
			out = append(out, p)
		}
	}
	return out
}

// Run applies events until ctx ends. It returns nil on a clean shutdown.
func (e *Engine) Run(ctx context.Context) error {
	if e.Bootstrap {
		if err := e.bootstrap(ctx); err != nil {
			// The readers still apply everything from the start; say so loudly.
			e.log.Error("projection bootstrap failed; run `huddle projections rebuild`", "err", err)
		}
	}
	e.stopping = ctx.Done()
	if e.BatchSize < 1 {
		e.BatchSize = DefaultBatchSize
	}
	if e.PollInterval <= 0 {
		e.PollInterval = DefaultPollInterval
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
	// No Retry/PoisonQueue middleware: a message only wakes a reader, which handles failures
	// per event (catchup.go).
	router.AddMiddleware(middleware.Recoverer)
	var subs []message.Subscriber
	defer func() {
		for _, s := range subs {
			_ = s.Close()
		}
	}()
	for _, p := range e.models {
		sub, err := natsbroker.NewSubscriberWorkers(e.natsURL, DurablePrefix+p.Name, e.AckWait, e.Workers, wlog)
		if err != nil {
			return fmt.Errorf("projections: subscriber %s: %w", p.Name, err)
		}
		subs = append(subs, sub)
		router.AddConsumerHandler("projection-"+p.Name, Topic, sub, e.handler(e.appliers[p.Name]))
	}

	bgCtx, stopBg := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// The readers start at once: they catch up from the store without waiting for NATS.
	for _, p := range e.models {
		a := e.appliers[p.Name]
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.run(bgCtx)
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		select {
		case <-router.Running():
			e.running.Store(true)
		case <-bgCtx.Done():
		}
	}()
	go func() {
		defer wg.Done()
		e.refreshLoop(bgCtx)
	}()
	err = router.Run(ctx)
	e.running.Store(false)
	stopBg()
	wg.Wait()
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("projections: router: %w", err)
	}
	return nil
}

// bootstrap rebuilds the projections that have no checkpoint at all when the store has events.
func (e *Engine) bootstrap(ctx context.Context) error {
	var empty []string
	for _, p := range e.models {
		var none bool
		if err := e.pool.QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM projection_checkpoints WHERE projection = $1)`, p.Name).Scan(&none); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
		if none {
			empty = append(empty, p.Name)
		}
	}
	if len(empty) == 0 {
		return nil
	}
	last, err := e.store.LastPosition(ctx)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if last == 0 {
		return nil
	}
	e.log.Info("projections: empty read models over a non-empty store, rebuilding first", "projections", empty)
	err = e.Rebuild(ctx, empty, nil)
	if errors.Is(err, ErrRebuildRunning) {
		return nil // another instance is doing it; its swap will catch up what we apply meanwhile
	}
	return err
}

// Healthy reports whether every projector is subscribed and consuming.
func (e *Engine) Healthy() bool { return e.running.Load() }

// Wake starts the readers of streamID's read models on this instance now, instead of when the
// relay and NATS bring the event back (milliseconds later, more under load): the store's
// append hook (eventstore.WithAppended) calls it after every commit. It never blocks; wakes
// while a reader runs collapse into one more step, and a reader held by another instance
// ignores it.
func (e *Engine) Wake(streamID string) {
	for _, a := range e.appliers {
		if a.p.handles(streamID) {
			a.poke()
		}
	}
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
	for _, p := range e.modelsFor(streamID) {
		if err := e.waitFor(ctx, p, streamID, version); err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) waitFor(ctx context.Context, p *ReadModel, streamID string, version int64) error {
	// The recheck is one primary-key read; at most 100 ms apart, a read on another instance
	// than the projection's reader (readers alternate between instances) waits little longer
	// than one on the reader's.
	backoff := 5 * time.Millisecond
	for {
		w := e.waiters.add(p.Name, streamID, version)
		var applied int64
		if err := e.pool.QueryRow(ctx, sqlCheckpoint, p.Name, streamID).Scan(&applied); err != nil {
			e.waiters.remove(p.Name, streamID, w)
			return fmt.Errorf("wait for %s@%d: %w", streamID, version, err)
		}
		if applied >= version {
			e.waiters.remove(p.Name, streamID, w)
			return nil
		}
		t := time.NewTimer(backoff)
		select {
		case <-w.ch:
			t.Stop()
			return nil
		case <-t.C:
			e.waiters.remove(p.Name, streamID, w)
			backoff = min(backoff*2, 100*time.Millisecond)
		case <-ctx.Done():
			t.Stop()
			e.waiters.remove(p.Name, streamID, w)
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
