package tail_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/natsbroker"
	"github.com/huddle-chat/huddle/internal/tail"
	"github.com/huddle-chat/huddle/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// lockedBuffer is written by the tailer's goroutine and read by the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) events(t *testing.T) []tail.CloudEvent {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []tail.CloudEvent
	sc := bufio.NewScanner(bytes.NewReader(l.b.Bytes()))
	for sc.Scan() {
		var e tail.CloudEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

type rig struct {
	store  *eventstore.Store
	broker *natsbroker.Broker
}

func newRig(t *testing.T) rig {
	pool, _ := testenv.Postgres(t)
	return rig{store: eventstore.New(pool), broker: testenv.NATS(t)}
}

func (r rig) publisher(t *testing.T) message.Publisher {
	pub, err := natsbroker.NewPublisher(r.broker.ClientURL(), watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	return pub
}

func (r rig) startRelay(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	relay := eventstore.NewRelay(r.store, r.publisher(t), eventstore.RelayConfig{}, testenv.Logger(t), nil)
	done := make(chan struct{})
	go func() { defer close(done); _ = relay.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func (r rig) startTail(t *testing.T, opt tail.Options) *lockedBuffer {
	nc, err := r.broker.Connect()
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	tl, err := tail.New(r.store, nc, out, opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("tail: %v", err)
		}
		nc.Close()
	})
	return out
}

func (r rig) append(t *testing.T, clinic, stream string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		data, _ := json.Marshal(map[string]any{"message_id": fmt.Sprint(stream, i), "sender_id": "u1", "text": "hi"})
		_, err := r.store.Append(context.Background(), stream, eventstore.ExpectAny, []eventstore.EventData{{
			Type: "MessageSent", Data: data, Metadata: eventstore.Metadata{ClinicID: clinic, ActorID: "u1"},
		}}, "")
		if err != nil {
			t.Fatal(err)
		}
	}
}

func (r rig) storeEvents(t *testing.T) []eventstore.RecordedEvent {
	var all []eventstore.RecordedEvent
	var cp eventstore.Checkpoint
	for {
		batch, err := r.store.ReadAll(context.Background(), cp, 500)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, batch...)
		if len(batch) < 500 {
			return all
		}
		cp = eventstore.CheckpointOf(batch[len(batch)-1])
	}
}

// compact removes the insignificant whitespace Postgres puts into jsonb text.
func compact(t *testing.T, raw []byte) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTail_FromBeginningEqualsTheStoreAcrossTheSeam(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.append(t, "c1", "conversation-a", 5)
	r.append(t, "c2", "conversation-b", 3)
	r.startRelay(t)
	out := r.startTail(t, tail.Options{From: "beginning", Follow: true})
	// Appends racing the history read and the subscription: each lands exactly once.
	r.append(t, "c1", "conversation-a", 5)
	r.append(t, "c1", "conversation-c", 4)

	const total = 17
	waitFor(t, "17 events from tail", func() bool { return len(out.events(t)) >= total })
	waitFor(t, "17 events in the store's safe order", func() bool { return len(r.storeEvents(t)) == total })
	time.Sleep(200 * time.Millisecond) // anything duplicated would show up by now
	got := out.events(t)
	if len(got) != total {
		t.Fatalf("tail printed %d events, the store holds %d", len(got), total)
	}
	byID := map[string]eventstore.RecordedEvent{}
	for _, e := range r.storeEvents(t) {
		byID[e.EventID] = e
	}
	last := map[string]int64{}
	for _, ce := range got {
		e, ok := byID[ce.ID]
		if !ok {
			t.Fatalf("tail printed %s, which the store does not hold (or printed it twice)", ce.ID)
		}
		delete(byID, ce.ID)
		if ce.StreamVersion != last[ce.StreamID]+1 {
			t.Fatalf("%s: version %d after %d", ce.StreamID, ce.StreamVersion, last[ce.StreamID])
		}
		last[ce.StreamID] = ce.StreamVersion
		if ce.SpecVersion != "1.0" || ce.Type != e.Type || ce.Subject != e.StreamID || ce.Source != "huddle/"+e.Metadata.ClinicID ||
			!bytes.Equal(ce.Data, compact(t, e.Data)) || !ce.Time.Equal(e.RecordedAt) || ce.Position != e.Position {
			t.Fatalf("cloud event %+v does not match stored %+v", ce, e)
		}
	}
}

func TestTail_FiltersByClinicAndTypeAndStartsNow(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	r.append(t, "c1", "conversation-a", 2)
	r.startRelay(t)
	waitFor(t, "history relayed", func() bool { return len(r.storeEvents(t)) == 2 })
	now := r.startTail(t, tail.Options{From: "now", Follow: true, Clinic: "c2"})
	typed := r.startTail(t, tail.Options{From: "beginning", Follow: true, Types: []string{"GroupDeleted"}})
	r.append(t, "c1", "conversation-a", 1)
	r.append(t, "c2", "conversation-b", 2)
	waitFor(t, "c2's two new events", func() bool { return len(now.events(t)) == 2 })
	time.Sleep(200 * time.Millisecond)
	for _, e := range now.events(t) {
		if e.ClinicID != "c2" {
			t.Errorf("--clinic c2 printed an event of %s", e.ClinicID)
		}
	}
	if n := len(typed.events(t)); n != 0 {
		t.Errorf("--type GroupDeleted printed %d MessageSent events", n)
	}
	if _, err := tail.New(r.store, nil, &bytes.Buffer{}, tail.Options{From: "yesterday"}); err == nil {
		t.Error("--from yesterday must be refused")
	}
}

func TestTail_FillsAHoleInTheLiveFeedFromTheStore(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	out := r.startTail(t, tail.Options{From: "beginning", Follow: true})
	time.Sleep(200 * time.Millisecond) // the tailer has read the (empty) history and subscribed
	r.append(t, "c1", "conversation-x", 3)
	events, err := r.store.ReadStream(context.Background(), "conversation-x", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	// No relay: publish versions 1 and 3 by hand, as if JetStream had lost version 2.
	pub := r.publisher(t)
	for _, e := range []eventstore.RecordedEvent{events[0], events[2]} {
		if err := pub.Publish(eventstore.Subject(e), eventstore.ToMessage(e)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "three events", func() bool { return len(out.events(t)) == 3 })
	for i, e := range out.events(t) {
		if e.ID != events[i].EventID {
			t.Errorf("event %d is %s, want %s", i, e.ID, events[i].EventID)
		}
	}
}
