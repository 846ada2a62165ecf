package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/natsbroker"
	"github.com/huddle-chat/huddle/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.TrimSpace(l.b.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestIntegrator_ConsumesResumesAndDedupes runs the example against the real relay: it prints
// each message once, and after a restart with the same durable name it prints only new ones.
func TestIntegrator_ConsumesResumesAndDedupes(t *testing.T) {
	pool, _ := testenv.Postgres(t)
	store := eventstore.New(pool)
	broker := testenv.NATS(t)
	pub, err := natsbroker.NewPublisher(broker.ClientURL(), watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	relayCtx, stopRelay := context.WithCancel(context.Background())
	defer stopRelay()
	go eventstore.NewRelay(store, pub, eventstore.RelayConfig{}, testenv.Logger(t), nil).Run(relayCtx)

	send := func(text string) {
		data, _ := json.Marshal(map[string]string{"message_id": text, "sender_id": "u1", "text": text})
		if _, err := store.Append(context.Background(), "conversation-c1chat", eventstore.ExpectAny, []eventstore.EventData{{
			Type: "MessageSent", Data: data, Metadata: eventstore.Metadata{ClinicID: "c1", ActorID: "u1"},
		}}, ""); err != nil {
			t.Fatal(err)
		}
	}
	runFor := func(out *lockedBuffer, until func() bool) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		// As the read-only integrator user, whose permissions must be enough for this.
		go func() { done <- run(ctx, broker.IntegratorURL(), "c1", "test-integrator", out) }()
		deadline := time.Now().Add(20 * time.Second)
		for !until() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // anything redelivered or repeated would show up by now
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}

	send("one")
	send("two")
	first := &lockedBuffer{}
	runFor(first, func() bool { return len(first.lines()) >= 2 })
	if got := first.lines(); len(got) != 2 || !strings.Contains(got[0], `"one"`) || !strings.Contains(got[1], `"two"`) ||
		!strings.HasPrefix(got[0], "huddle/c1 conversation-c1chat v1: u1 sent text") {
		t.Fatalf("first run printed %q", got)
	}

	send("three")
	second := &lockedBuffer{}
	runFor(second, func() bool { return len(second.lines()) >= 1 })
	if got := second.lines(); len(got) != 1 || !strings.Contains(got[0], `"three"`) {
		t.Fatalf("after a restart the durable consumer printed %q, want only the new message", got)
	}
}
