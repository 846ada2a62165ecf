package projections

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
)

// A reader holding the token of a user's later write must not get through while that user's
// earlier write, to another stream, is unapplied: here the later event is delivered (and
// applied) first, as another instance or a redelivery could arrange.
func TestWaitForAll_WaitsForEarlierWritesToOtherStreams(t *testing.T) {
	e := newEnv(t)
	e.run()
	conv, member := faultScenario(e)
	earlier := conv[len(conv)-1]   // the conversation's last message
	later := member[len(member)-1] // then u2 moves their read marker

	e.deliver(member...)
	if err := e.engine.WaitFor(e.ctx, later.StreamID, later.StreamVersion); err != nil {
		t.Fatal(err)
	}
	// The later write's own stream is applied, the earlier one's is not: the wait must hold.
	ctx, cancel := context.WithTimeout(e.ctx, 300*time.Millisecond)
	err := e.engine.WaitForAll(ctx, eventstore.CheckpointOf(later))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitForAll(later) = %v while %s@%d was unapplied, want it to wait", err, earlier.StreamID, earlier.StreamVersion)
	}
	mark, err := e.engine.Watermark(e.ctx, Inbox)
	if err != nil {
		t.Fatal(err)
	}
	if reached(mark, eventstore.CheckpointOf(conv[0])) {
		t.Fatalf("inbox watermark %+v passed the unapplied %s@1", mark, conv[0].StreamID)
	}

	e.deliver(conv...)
	done := make(chan error, 1)
	go func() { done <- e.engine.WaitForAll(e.ctx, eventstore.CheckpointOf(later)) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("WaitForAll did not return after every event was delivered")
	}
	// Once through, the earlier writes are applied: the whole scenario reads as it should.
	checkFaultScenario(e)
	for _, name := range Names() {
		mark, err := e.engine.Watermark(e.ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if !reached(mark, eventstore.CheckpointOf(later)) {
			t.Errorf("%s watermark %+v is short of the last event %+v", name, mark, eventstore.CheckpointOf(later))
		}
	}
}

// The watermark is shared through the database: an engine that applied nothing itself (another
// instance) reads it, and it never moves back.
func TestWatermark_SharedAndMonotonic(t *testing.T) {
	e := newEnv(t)
	e.run()
	evs := e.appendEvents("c1", "u1", domain.ConversationStream("g9"),
		domain.ConversationStarted{ConversationID: "g9", Kind: domain.KindGroup, Title: "T", OwnerID: "u1", StartedBy: "u1", ParticipantIDs: []string{"u1", "u2"}},
		domain.MessageSent{MessageID: "m1", SenderID: "u1", Text: "hi"})
	e.deliver(evs...)
	last := eventstore.CheckpointOf(evs[len(evs)-1])
	if err := e.engine.WaitForAll(e.ctx, last); err != nil {
		t.Fatal(err)
	}
	other := NewEngine(e.pool, e.store, e.broker.ClientURL(), nil, nil)
	mark, err := other.Watermark(e.ctx, Inbox)
	if err != nil {
		t.Fatal(err)
	}
	if !reached(mark, last) {
		t.Fatalf("another engine reads watermark %+v, want at least %+v", mark, last)
	}
	var stored eventstore.Checkpoint
	if _, err := e.pool.Exec(e.ctx, sqlWatermarkSave, watermarkPrefix+Inbox, uint64(1), int64(1)); err != nil {
		t.Fatal(err)
	}
	if err := e.pool.QueryRow(e.ctx, sqlWatermarkLoad, watermarkPrefix+Inbox).Scan(&stored.TxID, &stored.Position); err != nil {
		t.Fatal(err)
	}
	if !reached(stored, last) {
		t.Fatalf("saving an older watermark moved it back to %+v", stored)
	}
}
