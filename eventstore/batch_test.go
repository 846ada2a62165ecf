package eventstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/huddle-chat/huddle/eventstore"
)

func TestAppendCommands_ChainsVersionsAndKeepsEachCommandsIdempotency(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	res, err := s.AppendCommands(ctx, "conversation-b", eventstore.ExpectNoStream, []eventstore.CommandEvents{
		{CommandID: "cmd-a", Events: []eventstore.EventData{msg(1), msg(2)}},
		{CommandID: "cmd-b", Events: []eventstore.EventData{msg(3)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].FirstVersion != 1 || res[0].LastVersion != 2 || res[1].FirstVersion != 3 || res[1].LastVersion != 3 {
		t.Fatalf("results: %+v", res)
	}
	if res[1].Events[0].PrevHash != res[0].Events[1].Hash {
		t.Fatal("the second command's event does not chain onto the first's")
	}
	// Each command answers a repeat with its own first result.
	again := mustAppend(t, s, "conversation-b", 0, "cmd-b", msg(9))
	if !again.Duplicate || again.FirstVersion != 3 || again.LastPosition != res[1].LastPosition {
		t.Fatalf("repeat of cmd-b: %+v", again)
	}
	if v, err := s.Verify(ctx, "conversation-b"); err != nil || v.FirstBadVersion != 0 || v.Events != 3 {
		t.Fatalf("verify: %+v, %v", v, err)
	}
}

func TestAppendCommands_IsAllOrNothing(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	mustAppend(t, s, "conversation-c", eventstore.ExpectNoStream, "cmd-old", msg(1))
	// The first command is a repeat (it writes nothing), so the second's expected version is
	// one too high: the batch conflicts and the third command must not be written either.
	_, err := s.AppendCommands(ctx, "conversation-c", 1, []eventstore.CommandEvents{
		{CommandID: "cmd-new", Events: []eventstore.EventData{msg(2)}},
		{CommandID: "cmd-old", Events: []eventstore.EventData{msg(3)}},
		{CommandID: "cmd-next", Events: []eventstore.EventData{msg(4)}},
	})
	if !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("want a conflict, got %v", err)
	}
	if v, err := s.StreamVersion(ctx, "conversation-c"); err != nil || v != 1 {
		t.Fatalf("stream version %d (%v), want 1: the batch must roll back whole", v, err)
	}
	// A stale expected version conflicts before anything is written.
	if _, err := s.AppendCommands(ctx, "conversation-c", 0, []eventstore.CommandEvents{{CommandID: "x", Events: []eventstore.EventData{msg(5)}}}); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("stale expected version: %v", err)
	}
	for _, bad := range [][]eventstore.CommandEvents{nil, {{CommandID: "y"}}} {
		if _, err := s.AppendCommands(ctx, "conversation-c", 1, bad); !errors.Is(err, eventstore.ErrNoEvents) {
			t.Fatalf("empty batch %v: %v", bad, err)
		}
	}
}
