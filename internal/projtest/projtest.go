// Package projtest is the test world of the read-model engine and its read models: a fresh
// database, its own JetStream, the store, and an engine running every read model with the live
// feed's writer, plus helpers to append, deliver, settle, and compare live with a rebuild.
package projtest

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-chat/huddle/directory"
	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/inbox"
	"github.com/huddle-chat/huddle/internal/natsbroker"
	"github.com/huddle-chat/huddle/internal/testenv"
	"github.com/huddle-chat/huddle/live"
	"github.com/huddle-chat/huddle/projections"
	"github.com/huddle-chat/huddle/reminders"
)

// Env is one test's world: a fresh database, its own JetStream, the store and an engine.
type Env struct {
	T      *testing.T
	Ctx    context.Context
	Pool   *pgxpool.Pool
	Store  *eventstore.Store
	Broker *natsbroker.Broker
	Engine *projections.Engine
	// Models are the engine's read models.
	Models []*projections.ReadModel
	pub    message.Publisher
}

// ReadModels lists the read models with the live feed's writer on nc (as huddle serve runs them).
func ReadModels(nc *nats.Conn, log *slog.Logger) []*projections.ReadModel {
	return []*projections.ReadModel{directory.ReadModel(), inbox.ReadModel(live.NewWriter(nc, log).AfterApply), reminders.ReadModel()}
}

// New returns a fresh world whose engine is not running yet (Run starts it).
func New(t *testing.T) *Env {
	t.Helper()
	pool, _ := testenv.Postgres(t)
	broker := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	nc, err := nats.Connect(broker.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	e := &Env{T: t, Ctx: ctx, Pool: pool, Store: eventstore.New(pool), Broker: broker}
	e.Models = ReadModels(nc, testenv.Logger(t))
	e.Engine = projections.NewEngine(pool, e.Store, broker.ClientURL(), testenv.Logger(t), prometheus.NewRegistry(), e.Models)
	e.Engine.StatusEvery = time.Hour
	// Tests deliver events by hand; a bootstrap rebuild would apply them before the faults.
	e.Engine.Bootstrap = false
	return e
}

// Run starts the engine until the test ends.
func (e *Env) Run() {
	e.T.Helper()
	ctx, cancel := context.WithCancel(e.Ctx)
	done := make(chan error, 1)
	go func() { done <- e.Engine.Run(ctx) }()
	e.T.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.T.Errorf("engine: %v", err)
		}
	})
}

// Relay starts the store's relay to JetStream until the test ends.
func (e *Env) Relay() {
	e.T.Helper()
	pub, err := natsbroker.NewPublisher(e.Broker.ClientURL(), nil)
	if err != nil {
		e.T.Fatal(err)
	}
	r := eventstore.NewRelay(e.Store, pub, eventstore.RelayConfig{PollInterval: 50 * time.Millisecond}, testenv.Logger(e.T), prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(e.Ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	e.T.Cleanup(func() {
		cancel()
		<-done
		_ = pub.Close()
	})
}

// Publisher returns a JetStream publisher for tests that deliver events by hand.
func (e *Env) Publisher() message.Publisher {
	e.T.Helper()
	if e.pub == nil {
		pub, err := natsbroker.NewPublisher(e.Broker.ClientURL(), nil)
		if err != nil {
			e.T.Fatal(err)
		}
		e.T.Cleanup(func() { _ = pub.Close() })
		e.pub = pub
	}
	return e.pub
}

// Deliver publishes events to JetStream as the relay would. Each publish gets a fresh message
// id, so JetStream's dedup window does not swallow deliberate duplicates.
func (e *Env) Deliver(evs ...eventstore.RecordedEvent) {
	e.T.Helper()
	for _, ev := range evs {
		m := eventstore.ToMessage(ev)
		m.UUID = uuid.NewString()
		if err := e.Publisher().Publish(eventstore.Subject(ev), m); err != nil {
			e.T.Fatalf("publish: %v", err)
		}
	}
}

// AppendEvents appends domain events to a stream and returns them as recorded.
func (e *Env) AppendEvents(clinic, actor, streamID string, evs ...domain.Event) []eventstore.RecordedEvent {
	e.T.Helper()
	data := make([]eventstore.EventData, len(evs))
	for i, ev := range evs {
		typ, raw, err := domain.Encode(ev)
		if err != nil {
			e.T.Fatal(err)
		}
		data[i] = eventstore.EventData{Type: typ, Data: raw,
			Metadata: eventstore.Metadata{ActorID: actor, ClinicID: clinic, CorrelationID: uuid.NewString(), CommandID: uuid.NewString()}}
	}
	res, err := e.Store.Append(e.Ctx, streamID, eventstore.ExpectAny, data, uuid.NewString())
	if err != nil {
		e.T.Fatalf("append %s: %v", streamID, err)
	}
	return res.Events
}

// Settle waits until the engine applied every event in the store.
func (e *Env) Settle() {
	e.T.Helper()
	var categories []string
	for _, m := range e.Models {
		categories = append(categories, m.Categories...)
	}
	spans, err := e.Store.StreamSpansIn(e.Ctx, e.Pool, eventstore.Checkpoint{}, eventstore.Checkpoint{}, categories)
	if err != nil {
		e.T.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(e.Ctx, time.Minute)
	defer cancel()
	for _, sp := range spans {
		if err := e.Engine.WaitFor(ctx, sp.StreamID, sp.Last); err != nil {
			e.T.Fatalf("wait for %s@%d: %v", sp.StreamID, sp.Last, err)
		}
	}
}

// Snapshot dumps every read-model table (and the checkpoints) as sorted JSON rows.
func (e *Env) Snapshot() map[string][]string {
	e.T.Helper()
	out := map[string][]string{}
	var tables []string
	for _, m := range e.Models {
		tables = append(tables, m.Tables...)
	}
	tables = append(tables, "projection_checkpoints")
	for _, tbl := range tables {
		rows, err := e.Pool.Query(e.Ctx, fmt.Sprintf(`SELECT row_to_json(t)::text FROM %s t`, pgx.Identifier{tbl}.Sanitize()))
		if err != nil {
			e.T.Fatal(err)
		}
		var list []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				e.T.Fatal(err)
			}
			list = append(list, s)
		}
		rows.Close()
		sort.Strings(list)
		out[tbl] = list
	}
	return out
}

// RequireSameAsRebuild rebuilds every projection from the store and checks that each table
// holds exactly what it held before.
func (e *Env) RequireSameAsRebuild() {
	e.T.Helper()
	live := e.Snapshot()
	if err := e.Engine.Rebuild(e.Ctx, nil, nil); err != nil {
		e.T.Fatalf("rebuild: %v", err)
	}
	rebuilt := e.Snapshot()
	for tbl, want := range rebuilt {
		got := live[tbl]
		if len(got) != len(want) {
			e.T.Errorf("table %s: live has %d rows, rebuilt %d", tbl, len(got), len(want))
		}
		for i := 0; i < min(len(got), len(want)); i++ {
			if got[i] != want[i] {
				e.T.Errorf("table %s row %d differs:\n live:    %s\n rebuilt: %s", tbl, i, got[i], want[i])
				break
			}
		}
	}
}

func (e *Env) Count(sql string, args ...any) int64 {
	e.T.Helper()
	var n int64
	if err := e.Pool.QueryRow(e.Ctx, sql, args...).Scan(&n); err != nil {
		e.T.Fatal(err)
	}
	return n
}
