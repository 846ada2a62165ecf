package projections

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/testenv"
)

// A process killed in the middle of applying (its transaction rolled back) and events
// committed while it was down: a restarted engine applies all of it within 2 s, from its cursor
// in the store. No relay runs, so no NATS message (or redelivery after the 30 s ack wait) can be
// what applies them; the read models equal a rebuild.
func TestCrash_CommittedEventsAppliedWithin2sOfRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	killCtx, kill := context.WithCancel(e.ctx)
	killed := make(chan struct{})
	e.engine.applyHook = func(_ string, ev eventstore.RecordedEvent) error {
		if ev.StreamID == domain.ConversationStream("g1") && ev.StreamVersion == 3 {
			kill()
			return errors.New("killed mid-transaction")
		}
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- e.engine.Run(killCtx); close(killed) }()
	faultScenario(e)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the engine was never killed")
	}
	// Written while no engine runs.
	e.appendEvents("c1", "u3", domain.ConversationStream("g1"), domain.MessageSent{MessageID: "m5", SenderID: "u3", Text: "while down"})
	e.appendEvents("c1", "u1", domain.MemberStream("c1", "u1"), domain.ConversationMuted{ConversationID: "g1"})
	if n := e.count(`SELECT count(*) FROM messages WHERE conversation_id = 'g1'`); n != 0 {
		t.Fatalf("%d messages applied before the kill, want the whole first append rolled back", n)
	}

	e.engine = NewEngine(e.pool, e.store, e.broker.ClientURL(), testenv.Logger(t), prometheus.NewRegistry())
	e.engine.Bootstrap = false
	e.engine.StatusEvery = time.Hour
	start := time.Now()
	e.run()
	ctx, cancel := context.WithDeadline(e.ctx, start.Add(2*time.Second))
	defer cancel()
	for stream, v := range map[string]int64{domain.ConversationStream("g1"): 8, domain.MemberStream("c1", "u2"): 2, domain.MemberStream("c1", "u1"): 1} {
		if err := e.engine.WaitFor(ctx, stream, v); err != nil {
			t.Fatalf("%s@%d not applied within 2 s of the restart (%v): %v", stream, v, time.Since(start), err)
		}
	}
	t.Logf("everything applied %v after the restart", time.Since(start))
	e.requireSameAsRebuild()
}

// What a projector applies is what the store holds: a message published on huddle.events.> that
// the store did not write (here a MessageSent continuing a real conversation, which a
// projector applying what NATS delivers would accept) reaches no read model and no live feed;
// it is logged and counted.
func TestForgedMessage_NeverApplied(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.relay()
	e.run()
	conv, _ := faultScenario(e)
	e.settle()

	forged := conv[len(conv)-1]
	forged.EventID = uuid.NewString()
	forged.StreamVersion++
	forged.Type, forged.Data, _ = domain.Encode(domain.MessageSent{MessageID: "forged", SenderID: "u1", Text: "send the codes to this number"})
	e.deliver(forged)

	deadline := time.Now().Add(30 * time.Second)
	for counterValue(t, e.engine.m.foreign.WithLabelValues(Inbox)) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the forged message was never reported")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A real message takes the version the forged one claimed.
	e.appendEvents("c1", "u2", domain.ConversationStream("g1"), domain.MessageSent{MessageID: "m5", SenderID: "u2", Text: "real"})
	e.settle()
	if n := e.count(`SELECT count(*) FROM messages WHERE message_id = 'forged' OR text LIKE 'send the codes%'`); n != 0 {
		t.Errorf("the forged message is in the read model (%d rows)", n)
	}
	if n := e.count(`SELECT count(*) FROM live_feed WHERE body::text LIKE '%forged%'`); n != 0 {
		t.Errorf("the forged message is in the live feed (%d entries)", n)
	}
	if n := e.count(`SELECT count(*) FROM messages WHERE message_id = 'm5' AND version = 8`); n != 1 {
		t.Errorf("the real message at version 8 is missing")
	}
	e.requireSameAsRebuild()
}

// Status reports what is not applied, not how far the highest checkpoint got: events held
// behind a failing one count as lag (and its age) although later events of other streams are
// applied, and the lag is gone once they are.
func TestStatus_ReportsEventsInFlightAsLag(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	release := e.hold(domain.ConversationStream("g1"))
	e.run()
	conv, member := faultScenario(e)
	last := member[len(member)-1]
	if err := e.engine.WaitFor(e.ctx, last.StreamID, last.StreamVersion); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // so the held events are measurably old
	inbox := func() Status {
		t.Helper()
		st, err := e.engine.Status(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st {
			if s.Name == Inbox {
				return s
			}
		}
		t.Fatal("no inbox status")
		return Status{}
	}
	s := inbox()
	if s.Position < last.Position {
		t.Fatalf("inbox position %d, want at least %d (the member events are applied)", s.Position, last.Position)
	}
	if s.LagEvents != int64(len(conv)) || s.LagSeconds <= 0 {
		t.Errorf("inbox lag = %d events, %.3f s while %d conversation events are held, want %d and > 0",
			s.LagEvents, s.LagSeconds, len(conv), len(conv))
	}
	release()
	e.settle()
	if s := inbox(); s.LagEvents != 0 || s.LagSeconds != 0 {
		t.Errorf("inbox lag = %d events, %.3f s after everything was applied, want 0", s.LagEvents, s.LagSeconds)
	}
}
