package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
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

func TestAppendCommands_ManyCommandsInOneStatementKeepTheirEventsAndChain(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	mustAppend(t, s, "conversation-many", eventstore.ExpectNoStream, "first", msg(0))
	var cmds []eventstore.CommandEvents
	total := 0
	for i := range 50 {
		var evs []eventstore.EventData
		for j := range 1 + i%3 {
			evs = append(evs, msg(100*i+j))
		}
		total += len(evs)
		cmds = append(cmds, eventstore.CommandEvents{CommandID: fmt.Sprintf("many-%d", i), Events: evs})
	}
	res, err := s.AppendCommands(ctx, "conversation-many", 1, cmds)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := s.ReadStream(ctx, "conversation-many", 2, 0)
	if err != nil || len(stored) != total {
		t.Fatalf("stored %d events (%v), want %d", len(stored), err, total)
	}
	k := 0
	for i, r := range res {
		if len(r.Events) != len(cmds[i].Events) || r.Duplicate {
			t.Fatalf("command %d: %+v", i, r)
		}
		for j, e := range r.Events {
			want := stored[k]
			k++
			if e.EventID != want.EventID || e.StreamVersion != want.StreamVersion || e.Hash != want.Hash ||
				e.PrevHash != want.PrevHash || e.Position != want.Position || !sameJSON(e.Data, want.Data) ||
				e.Metadata.CommandID != cmds[i].CommandID {
				t.Fatalf("command %d event %d: got %+v, stored %+v", i, j, e, want)
			}
		}
		// Each command is its own repeatable unit.
		again := mustAppend(t, s, "conversation-many", eventstore.ExpectAny, cmds[i].CommandID, msg(1))
		if !again.Duplicate || again.FirstVersion != r.FirstVersion || again.LastVersion != r.LastVersion {
			t.Fatalf("repeat of command %d: %+v, first %+v", i, again, r)
		}
	}
	if v, err := s.Verify(ctx, "conversation-many"); err != nil || v.FirstBadVersion != 0 || v.Events != total+1 {
		t.Fatalf("verify: %+v %v", v, err)
	}
}

// sameJSON compares JSON by value (jsonb gives it back with other spacing).
func sameJSON(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}
