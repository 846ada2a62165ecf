package eventstore_test

import (
	"context"
	"testing"

	"github.com/huddle-chat/huddle/eventstore"
)

// A reader of some categories gets their events, complete, and the checkpoint of the last event
// the read passed, of any category, so it resumes after events it does not consume.
func TestReadAllOfIn_ReturnsTheCategoriesAndHowFarItRead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	a := mustAppend(t, s, "conversation-a", eventstore.ExpectAny, "", msg(1), msg(2))
	mustAppend(t, s, "member-u", eventstore.ExpectAny, "", msg(3))
	last := mustAppend(t, s, "directory-c", eventstore.ExpectAny, "", msg(4))

	// Once ReadAll shows all four (other databases' transactions in the shared test cluster
	// hold the gap-safe horizon back a moment), so does any later read.
	all := readAllEvents(t, s, 4)
	got, passed, err := s.ReadAllOfIn(ctx, s.Pool(), eventstore.Checkpoint{}, []string{"conversation"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].EventID != a.Events[0].EventID || got[1].EventID != a.Events[1].EventID ||
		string(got[1].Data) != string(all[1].Data) || got[1].Metadata != all[1].Metadata || got[1].Hash != all[1].Hash {
		t.Fatalf("got %+v, want the conversation's two events as ReadAll reads them", got)
	}
	if want := eventstore.CheckpointOf(last.Events[0]); passed != want {
		t.Fatalf("passed %+v, want the last event's %+v", passed, want)
	}
	got, again, err := s.ReadAllOfIn(ctx, s.Pool(), passed, []string{"conversation"}, 10)
	if err != nil || len(got) != 0 || again != passed {
		t.Fatalf("after the end: %d events, %+v, %v; want none, where it was", len(got), again, err)
	}
	got, passed, err = s.ReadAllOfIn(ctx, s.Pool(), eventstore.Checkpoint{}, []string{"member"}, 2)
	if err != nil || len(got) != 0 || passed != eventstore.CheckpointOf(a.Events[1]) {
		t.Fatalf("limit 2 over the conversation's events: %d events, passed %+v, %v", len(got), passed, err)
	}
}
