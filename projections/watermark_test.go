package projections_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/inbox"
	"github.com/huddle-chat/huddle/internal/projtest"
	"github.com/huddle-chat/huddle/projections"
)

// hold makes the engine fail every event of streamID until the returned func is called, as an
// event whose apply keeps failing (a transient error: retried, never parked) would.
func hold(e *projtest.Env, streamID string) (release func()) {
	var held atomic.Bool
	held.Store(true)
	projections.SetApplyHook(e.Engine, func(_ string, ev eventstore.RecordedEvent) error {
		if held.Load() && ev.StreamID == streamID {
			return errors.New("held by the test")
		}
		return nil
	})
	return func() { held.Store(false) }
}

// A reader holding the token of a user's later write must not get through while that user's
// earlier write, to another stream, is unapplied: here the earlier event keeps failing and the
// later one, in another stream, is applied around it.
func TestWaitForAll_WaitsForEarlierWritesToOtherStreams(t *testing.T) {
	t.Parallel()
	e := projtest.New(t)
	release := hold(e, domain.ConversationStream("g1"))
	e.Run()
	conv, member := faultScenario(e)
	earlier := conv[len(conv)-1]   // the conversation's last message
	later := member[len(member)-1] // then u2 moves their read marker

	if err := e.Engine.WaitFor(e.Ctx, later.StreamID, later.StreamVersion); err != nil {
		t.Fatal(err)
	}
	// The later write's own stream is applied, the earlier one's is not: the wait must hold.
	for _, clinic := range []string{"", "c1"} {
		ctx, cancel := context.WithTimeout(e.Ctx, 300*time.Millisecond)
		err := e.Engine.WaitForClinic(ctx, clinic, eventstore.CheckpointOf(later))
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitForClinic(%q, later) = %v while %s@%d was unapplied, want it to wait", clinic, err, earlier.StreamID, earlier.StreamVersion)
		}
	}
	mark, err := e.Engine.Watermark(e.Ctx, inbox.Name)
	if err != nil {
		t.Fatal(err)
	}
	if projections.Reached(mark, eventstore.CheckpointOf(conv[0])) {
		t.Fatalf("inbox watermark %+v passed the unapplied %s@1", mark, conv[0].StreamID)
	}

	release()
	done := make(chan error, 1)
	go func() { done <- e.Engine.WaitForAll(e.Ctx, eventstore.CheckpointOf(later)) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("WaitForAll did not return after the held stream was released")
	}
	// Once through, the earlier writes are applied: the whole scenario reads as it should.
	checkFaultScenario(e)
	for _, name := range e.Engine.Names() {
		mark, err := e.Engine.Watermark(e.Ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if !projections.Reached(mark, eventstore.CheckpointOf(later)) {
			t.Errorf("%s watermark %+v is short of the last event %+v", name, mark, eventstore.CheckpointOf(later))
		}
	}
	e.RequireSameAsRebuild()
}

// Read-your-writes is per clinic: while an event of clinic c1 keeps failing, a reader of
// clinic c2 holding the token of a later c2 write gets through; c1's and the global wait do not.
func TestWaitForClinic_StuckClinicDoesNotDelayAnother(t *testing.T) {
	t.Parallel()
	e := projtest.New(t)
	release := hold(e, domain.ConversationStream("g1"))
	e.Run()
	conv, member := faultScenario(e) // clinic c1
	other := e.AppendEvents("c2", "v1", domain.ConversationStream("h1"),
		domain.ConversationStarted{ConversationID: "h1", Kind: domain.KindGroup, Title: "Ward", OwnerID: "v1", StartedBy: "v1", ParticipantIDs: []string{"v1", "v2"}},
		domain.MessageSent{MessageID: "n1", SenderID: "v1", Text: "hello"})
	c2 := eventstore.CheckpointOf(other[len(other)-1])

	ctx, cancel := context.WithTimeout(e.Ctx, 20*time.Second)
	defer cancel()
	if err := e.Engine.WaitForClinic(ctx, "c2", c2); err != nil {
		t.Fatalf("c2's read waited on c1's stuck event: %v", err)
	}
	page, err := inbox.NewQueries(e.Pool).Messages(e.Ctx, "c2", "v2", "h1", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Messages) != 1 || page.Messages[0].ID != "n1" {
		t.Fatalf("c2's read after the wait shows %+v, want n1", page.Messages)
	}
	for _, clinic := range []string{"c1", ""} {
		at := eventstore.CheckpointOf(member[len(member)-1])
		if clinic == "" {
			at = c2
		}
		ctx, cancel := context.WithTimeout(e.Ctx, 300*time.Millisecond)
		err := e.Engine.WaitForClinic(ctx, clinic, at)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitForClinic(%q) = %v while %s@1 of c1 is stuck, want it to wait", clinic, err, conv[0].StreamID)
		}
	}
	release()
	if err := e.Engine.WaitForAll(ctx, c2); err != nil {
		t.Fatalf("after the release: %v", err)
	}
	checkFaultScenario(e)
	e.RequireSameAsRebuild()
}

// The watermark is shared through the database: an engine that applied nothing itself (another
// instance) reads it, and it never moves back.
func TestWatermark_SharedAndMonotonic(t *testing.T) {
	e := projtest.New(t)
	e.Run()
	evs := e.AppendEvents("c1", "u1", domain.ConversationStream("g9"),
		domain.ConversationStarted{ConversationID: "g9", Kind: domain.KindGroup, Title: "T", OwnerID: "u1", StartedBy: "u1", ParticipantIDs: []string{"u1", "u2"}},
		domain.MessageSent{MessageID: "m1", SenderID: "u1", Text: "hi"})
	e.Deliver(evs...)
	last := eventstore.CheckpointOf(evs[len(evs)-1])
	if err := e.Engine.WaitForAll(e.Ctx, last); err != nil {
		t.Fatal(err)
	}
	other := projections.NewEngine(e.Pool, e.Store, e.Broker.ClientURL(), nil, nil, e.Models)
	mark, err := other.Watermark(e.Ctx, inbox.Name)
	if err != nil {
		t.Fatal(err)
	}
	if !projections.Reached(mark, last) {
		t.Fatalf("another engine reads watermark %+v, want at least %+v", mark, last)
	}
	if err := eventstore.AdvanceCheckpointIn(e.Ctx, e.Pool, projections.WatermarkPrefix+inbox.Name, eventstore.Checkpoint{TxID: 1, Position: 1}); err != nil {
		t.Fatal(err)
	}
	stored, err := eventstore.LoadCheckpointIn(e.Ctx, e.Pool, projections.WatermarkPrefix+inbox.Name)
	if err != nil {
		t.Fatal(err)
	}
	if !projections.Reached(stored, last) {
		t.Fatalf("saving an older watermark moved it back to %+v", stored)
	}
}
