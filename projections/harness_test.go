package projections

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/natsbroker"
	"github.com/huddle-chat/huddle/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is one test's world: a fresh database, its own JetStream, the store and an engine.
type env struct {
	t      *testing.T
	ctx    context.Context
	pool   *pgxpool.Pool
	store  *eventstore.Store
	broker *natsbroker.Broker
	engine *Engine
	pub    message.Publisher
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pool, _ := testenv.Postgres(t)
	broker := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	e := &env{t: t, ctx: ctx, pool: pool, store: eventstore.New(pool), broker: broker}
	e.engine = NewEngine(pool, e.store, broker.ClientURL(), testenv.Logger(t), prometheus.NewRegistry())
	e.engine.StatusEvery = time.Hour
	// Tests deliver events by hand; a bootstrap rebuild would apply them before the faults.
	e.engine.Bootstrap = false
	return e
}

// run starts the engine until the test ends.
func (e *env) run() {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- e.engine.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("engine: %v", err)
		}
	})
}

// relay starts the store's relay to JetStream until the test ends.
func (e *env) relay() {
	e.t.Helper()
	pub, err := natsbroker.NewPublisher(e.broker.ClientURL(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	r := eventstore.NewRelay(e.store, pub, eventstore.RelayConfig{PollInterval: 50 * time.Millisecond}, testenv.Logger(e.t), prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		<-done
		_ = pub.Close()
	})
}

// publisher returns a JetStream publisher for tests that deliver events by hand.
func (e *env) publisher() message.Publisher {
	e.t.Helper()
	if e.pub == nil {
		pub, err := natsbroker.NewPublisher(e.broker.ClientURL(), nil)
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(func() { _ = pub.Close() })
		e.pub = pub
	}
	return e.pub
}

// deliver publishes events to JetStream as the relay would. Each publish gets a fresh message
// id, so JetStream's dedup window does not swallow deliberate duplicates.
func (e *env) deliver(evs ...eventstore.RecordedEvent) {
	e.t.Helper()
	for _, ev := range evs {
		m := eventstore.ToMessage(ev)
		m.UUID = uuid.NewString()
		if err := e.publisher().Publish(eventstore.Subject(ev), m); err != nil {
			e.t.Fatalf("publish: %v", err)
		}
	}
}

// appendEvents appends domain events to a stream and returns them as recorded.
func (e *env) appendEvents(clinic, actor, streamID string, evs ...domain.Event) []eventstore.RecordedEvent {
	e.t.Helper()
	data := make([]eventstore.EventData, len(evs))
	for i, ev := range evs {
		typ, raw, err := domain.Encode(ev)
		if err != nil {
			e.t.Fatal(err)
		}
		data[i] = eventstore.EventData{Type: typ, Data: raw,
			Metadata: eventstore.Metadata{ActorID: actor, ClinicID: clinic, CorrelationID: uuid.NewString(), CommandID: uuid.NewString()}}
	}
	res, err := e.store.Append(e.ctx, streamID, eventstore.ExpectAny, data, uuid.NewString())
	if err != nil {
		e.t.Fatalf("append %s: %v", streamID, err)
	}
	return res.Events
}

// settle waits until the engine applied every event in the store.
func (e *env) settle() {
	e.t.Helper()
	rows, err := e.pool.Query(e.ctx, `SELECT stream_id, max(stream_version) FROM events GROUP BY stream_id`)
	if err != nil {
		e.t.Fatal(err)
	}
	type sv struct {
		s string
		v int64
	}
	var all []sv
	for rows.Next() {
		var x sv
		if err := rows.Scan(&x.s, &x.v); err != nil {
			e.t.Fatal(err)
		}
		all = append(all, x)
	}
	rows.Close()
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	for _, x := range all {
		if len(projectionsFor(x.s)) == 0 {
			continue
		}
		if err := e.engine.WaitFor(ctx, x.s, x.v); err != nil {
			e.t.Fatalf("wait for %s@%d: %v", x.s, x.v, err)
		}
	}
}

// snapshot dumps every read-model table (and the checkpoints) as sorted JSON rows.
func (e *env) snapshot() map[string][]string {
	e.t.Helper()
	out := map[string][]string{}
	var tables []string
	for _, p := range projections {
		tables = append(tables, p.tables...)
	}
	tables = append(tables, "projection_checkpoints")
	for _, tbl := range tables {
		rows, err := e.pool.Query(e.ctx, fmt.Sprintf(`SELECT row_to_json(t)::text FROM %s t`, ident(tbl)))
		if err != nil {
			e.t.Fatal(err)
		}
		var list []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				e.t.Fatal(err)
			}
			list = append(list, s)
		}
		rows.Close()
		sort.Strings(list)
		out[tbl] = list
	}
	return out
}

// requireSameAsRebuild rebuilds every projection from the store and checks that each table
// holds exactly what it held before.
func (e *env) requireSameAsRebuild() {
	e.t.Helper()
	live := e.snapshot()
	if err := e.engine.Rebuild(e.ctx, nil, nil); err != nil {
		e.t.Fatalf("rebuild: %v", err)
	}
	rebuilt := e.snapshot()
	for tbl, want := range rebuilt {
		got := live[tbl]
		if len(got) != len(want) {
			e.t.Errorf("table %s: live has %d rows, rebuilt %d", tbl, len(got), len(want))
		}
		for i := 0; i < min(len(got), len(want)); i++ {
			if got[i] != want[i] {
				e.t.Errorf("table %s row %d differs:\n live:    %s\n rebuilt: %s", tbl, i, got[i], want[i])
				break
			}
		}
	}
}

func (e *env) count(sql string, args ...any) int64 {
	e.t.Helper()
	var n int64
	if err := e.pool.QueryRow(e.ctx, sql, args...).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}
