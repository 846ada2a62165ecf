package eventstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func newStore(t testing.TB, opts ...eventstore.Option) *eventstore.Store {
	t.Helper()
	pool, _ := testenv.Postgres(t)
	return eventstore.New(pool, opts...)
}

func ev(typ string, data any) eventstore.EventData {
	b, err := json.Marshal(data)
	if err != nil {
		panic(err)
	}
	return eventstore.EventData{Type: typ, Data: b, Metadata: eventstore.Metadata{ClinicID: "c1", ActorID: "u1"}}
}

func msg(i int) eventstore.EventData {
	return ev("MessageSent", map[string]any{"n": i, "text": fmt.Sprint("hello ", i)})
}

func mustAppend(t testing.TB, s *eventstore.Store, stream string, expected int64, cmd string, events ...eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(context.Background(), stream, expected, events, cmd)
	if err != nil {
		t.Fatalf("append to %s: %v", stream, err)
	}
	return res
}

// readAllEvents reads the whole gap-safe order from the start, waiting until at least want
// events are visible: ReadAll stops below the cluster's oldest running transaction, and
// parallel tests share the cluster, so a read can lag a moment behind committed appends.
func readAllEvents(t testing.TB, s *eventstore.Store, want int) []eventstore.RecordedEvent {
	t.Helper()
	var out []eventstore.RecordedEvent
	eventually(t, fmt.Sprintf("%d events in ReadAll", want), func() bool {
		out = readAllOnce(t, s)
		return len(out) >= want
	})
	return out
}

func readAllOnce(t testing.TB, s *eventstore.Store) []eventstore.RecordedEvent {
	t.Helper()
	var out []eventstore.RecordedEvent
	var cp eventstore.Checkpoint
	for {
		batch, err := s.ReadAll(context.Background(), cp, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			return out
		}
		out = append(out, batch...)
		cp = eventstore.CheckpointOf(batch[len(batch)-1])
	}
}

// eventually polls cond until it holds or the generous deadline passes. It waits for
// asynchronous work (the relay); it is not a timing assertion.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
