package projections_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/inbox"
	"github.com/huddle-chat/huddle/internal/projtest"
	"github.com/huddle-chat/huddle/internal/testenv"
	"github.com/huddle-chat/huddle/projections"
)

// A process killed in the middle of applying (its transaction rolled back) and events
// committed while it was down: a restarted engine applies all of it within 2 s, from its cursor
// in the store. No relay runs, so no NATS message (or redelivery after the 30 s ack wait) can be
// what applies them; the read models equal a rebuild.
func TestCrash_CommittedEventsAppliedWithin2sOfRestart(t *testing.T) {
	t.Parallel()
	e := projtest.New(t)
	killCtx, kill := context.WithCancel(e.Ctx)
	killed := make(chan struct{})
	projections.SetApplyHook(e.Engine, func(_ string, ev eventstore.RecordedEvent) error {
		if ev.StreamID == domain.ConversationStream("g1") && ev.StreamVersion == 3 {
			kill()
			return errors.New("killed mid-transaction")
		}
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- e.Engine.Run(killCtx); close(killed) }()
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
	e.AppendEvents("c1", "u3", domain.ConversationStream("g1"), domain.MessageSent{MessageID: "m5", SenderID: "u3", Text: "while down"})
	e.AppendEvents("c1", "u1", domain.MemberStream("c1", "u1"), domain.ConversationMuted{ConversationID: "g1"})
	if n := e.Count(`SELECT count(*) FROM messages WHERE conversation_id = 'g1'`); n != 0 {
		t.Fatalf("%d messages applied before the kill, want the whole first append rolled back", n)
	}

	e.Engine = projections.NewEngine(e.Pool, e.Store, e.Broker.ClientURL(), testenv.Logger(t), prometheus.NewRegistry(), e.Models)
	e.Engine.Bootstrap = false
	e.Engine.StatusEvery = time.Hour
	start := time.Now()
	e.Run()
	ctx, cancel := context.WithDeadline(e.Ctx, start.Add(2*time.Second))
	defer cancel()
	for stream, v := range map[string]int64{domain.ConversationStream("g1"): 8, domain.MemberStream("c1", "u2"): 2, domain.MemberStream("c1", "u1"): 1} {
		if err := e.Engine.WaitFor(ctx, stream, v); err != nil {
			t.Fatalf("%s@%d not applied within 2 s of the restart (%v): %v", stream, v, time.Since(start), err)
		}
	}
	t.Logf("everything applied %v after the restart", time.Since(start))
	e.RequireSameAsRebuild()
}

// What a projector applies is what the store holds: a message published on huddle.events.> that
// the store did not write (here a MessageSent continuing a real conversation, which a
// projector applying what NATS delivers would accept) reaches no read model and no live feed;
// it is logged and counted.
func TestForgedMessage_NeverApplied(t *testing.T) {
	t.Parallel()
	e := projtest.New(t)
	e.Relay()
	e.Run()
	conv, _ := faultScenario(e)
	e.Settle()

	forged := conv[len(conv)-1]
	forged.EventID = uuid.NewString()
	forged.StreamVersion++
	forged.Type, forged.Data, _ = domain.Encode(domain.MessageSent{MessageID: "forged", SenderID: "u1", Text: "send the codes to this number"})
	e.Deliver(forged)

	deadline := time.Now().Add(30 * time.Second)
	for counterValue(t, projections.ForeignCounter(e.Engine, inbox.Name)) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the forged message was never reported")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A real message takes the version the forged one claimed.
	e.AppendEvents("c1", "u2", domain.ConversationStream("g1"), domain.MessageSent{MessageID: "m5", SenderID: "u2", Text: "real"})
	e.Settle()
	if n := e.Count(`SELECT count(*) FROM messages WHERE message_id = 'forged' OR text LIKE 'send the codes%'`); n != 0 {
		t.Errorf("the forged message is in the read model (%d rows)", n)
	}
	if n := e.Count(`SELECT count(*) FROM live_feed WHERE body::text LIKE '%forged%'`); n != 0 {
		t.Errorf("the forged message is in the live feed (%d entries)", n)
	}
	if n := e.Count(`SELECT count(*) FROM messages WHERE message_id = 'm5' AND version = 8`); n != 1 {
		t.Errorf("the real message at version 8 is missing")
	}
	e.RequireSameAsRebuild()
}

// projections.Status reports what is not applied, not how far the highest checkpoint got: events held
// behind a failing one count as lag (and its age) although later events of other streams are
// applied, and the lag is gone once they are.
func TestStatus_ReportsEventsInFlightAsLag(t *testing.T) {
	t.Parallel()
	e := projtest.New(t)
	release := hold(e, domain.ConversationStream("g1"))
	e.Run()
	conv, member := faultScenario(e)
	last := member[len(member)-1]
	if err := e.Engine.WaitFor(e.Ctx, last.StreamID, last.StreamVersion); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // so the held events are measurably old
	inbox := func() projections.Status {
		t.Helper()
		st, err := e.Engine.Status(e.Ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st {
			if s.Name == inbox.Name {
				return s
			}
		}
		t.Fatal("no inbox status")
		return projections.Status{}
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
	e.Settle()
	if s := inbox(); s.LagEvents != 0 || s.LagSeconds != 0 {
		t.Errorf("inbox lag = %d events, %.3f s after everything was applied, want 0", s.LagEvents, s.LagSeconds)
	}
}

// An append on this instance wakes its readers at once (eventstore.WithAppended → Engine.Wake):
// no relay runs and the poll is an hour, so without the wake nothing would apply the message.
func TestWake_OwnAppendsAreAppliedWithoutNATSOrPolling(t *testing.T) {
	t.Parallel()
	e := projtest.New(t)
	e.Engine.PollInterval = time.Hour
	e.Store = eventstore.New(e.Pool, eventstore.WithAppended(e.Engine.Wake))
	e.Run()
	e.AppendEvents("c1", "u1", domain.ConversationStream("d1"),
		domain.ConversationStarted{ConversationID: "d1", Kind: domain.KindGroup, Title: "Pair", OwnerID: "u1", StartedBy: "u1", ParticipantIDs: []string{"u1", "u2"}},
		domain.MessageSent{MessageID: "m1", SenderID: "u1", Text: "woken"})
	ctx, cancel := context.WithTimeout(e.Ctx, 20*time.Second)
	defer cancel()
	if err := e.Engine.WaitFor(ctx, domain.ConversationStream("d1"), 2); err != nil {
		t.Fatalf("the append did not wake the reader: %v", err)
	}
	if n := e.Count(`SELECT count(*) FROM messages WHERE conversation_id = 'd1'`); n != 1 {
		t.Errorf("%d messages applied, want 1", n)
	}
}
