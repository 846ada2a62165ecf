package eventstore_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/huddle-chat/huddle/eventstore"
)

// The narrow reads agree with ReadAll on the same store: the replay read is ReadAll without
// ids, hashes and metadata but the clinic; the references and spans locate the same events.
func TestNarrowReads_AgreeWithReadAll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	if last, err := s.LastPosition(ctx); err != nil || last != 0 {
		t.Fatalf("empty store: last position %d, %v; want 0", last, err)
	}
	mustAppend(t, s, "conversation-a", eventstore.ExpectAny, "", msg(1), msg(2))
	mustAppend(t, s, "member-u", eventstore.ExpectAny, "", msg(3))
	mustAppend(t, s, "conversation-a", eventstore.ExpectAny, "", msg(4))
	all := readAllEvents(t, s, 4)

	if last, err := s.LastPosition(ctx); err != nil || last != all[3].Position {
		t.Fatalf("last position %d, %v; want %d", last, err, all[3].Position)
	}
	replay, err := s.ReadAllForReplayIn(ctx, s.Pool(), eventstore.Checkpoint{}, 10)
	if err != nil || len(replay) != 4 {
		t.Fatalf("replay: %d events, %v", len(replay), err)
	}
	for i, e := range replay {
		w := all[i]
		if e.StreamID != w.StreamID || e.StreamVersion != w.StreamVersion || string(e.Data) != string(w.Data) ||
			e.Metadata.ClinicID != "c1" || e.EventID != "" || eventstore.CheckpointOf(e) != eventstore.CheckpointOf(w) {
			t.Fatalf("replay[%d] = %+v, want %+v without id and hashes", i, e, w)
		}
	}

	refs, err := s.EventRefsIn(ctx, s.Pool(), eventstore.CheckpointOf(all[0]), eventstore.CheckpointOf(all[2]), 10)
	if err != nil || len(refs) != 2 {
		t.Fatalf("refs after the first up to the third: %d, %v; want 2", len(refs), err)
	}
	if refs[0].StreamID != all[1].StreamID || refs[0].StreamVersion != 2 || refs[1].Checkpoint != eventstore.CheckpointOf(all[2]) ||
		refs[1].ClinicID != "c1" {
		t.Fatalf("refs %+v, want the second and third events", refs)
	}
	if refs, err := s.EventRefsIn(ctx, s.Pool(), eventstore.Checkpoint{}, eventstore.Checkpoint{}, 3); err != nil || len(refs) != 3 {
		t.Fatalf("unbounded refs with limit 3: %d, %v", len(refs), err)
	}

	spans, err := s.StreamSpansIn(ctx, s.Pool(), eventstore.CheckpointOf(all[0]), eventstore.Checkpoint{}, []string{"conversation"})
	if err != nil || len(spans) != 1 {
		t.Fatalf("spans: %+v, %v; want conversation-a's", spans, err)
	}
	if sp := spans[0]; sp.StreamID != "conversation-a" || sp.First != 2 || sp.Last != 3 || sp.FirstPosition != all[1].Position {
		t.Fatalf("span %+v, want conversation-a 2..3 from position %d", sp, all[1].Position)
	}
	spans, err = s.StreamSpansIn(ctx, s.Pool(), eventstore.Checkpoint{}, eventstore.CheckpointOf(all[1]), []string{"conversation", "member"})
	if err != nil || len(spans) != 1 || spans[0].Last != 2 {
		t.Fatalf("spans up to the second event: %+v, %v; want conversation-a 1..2", spans, err)
	}
}

func TestLookupIn_NamesWhatTheStoreHolds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	res := mustAppend(t, s, "conversation-a", eventstore.ExpectAny, "", msg(1))
	got, err := eventstore.LookupIn(ctx, s.Pool(), []eventstore.StreamVersionRef{{StreamID: "conversation-a", Version: 2}, {StreamID: "conversation-a", Version: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Found || !got[1].Found || got[1].EventID != res.Events[0].EventID || got[1].Hash != res.Events[0].Hash {
		t.Fatalf("got %+v; want version 2 missing and version 1 as appended", got)
	}
}

func TestFirstWithFieldIn_FindsTheFirstMatchingEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	mustAppend(t, s, "conversation-a", eventstore.ExpectAny, "",
		ev("FileShared", map[string]any{"file_id": "f2"}), ev("FileShared", map[string]any{"file_id": "f1"}), ev("FileShared", map[string]any{"file_id": "f1"}))
	for _, c := range []struct {
		file, clinic string
		want         int64
	}{{"f1", "c1", 2}, {"f2", "c1", 1}, {"f3", "c1", 0}, {"f1", "other", 0}} {
		got, err := eventstore.FirstWithFieldIn(ctx, s.Pool(), "conversation-a", "FileShared", "file_id", c.file, c.clinic)
		if err != nil || got != c.want {
			t.Fatalf("%s in %s: %d, %v; want %d", c.file, c.clinic, got, err, c.want)
		}
	}
}

// A checkpoint saved with AdvanceCheckpointIn only moves forward; the queued load reads it.
func TestAdvanceCheckpoint_OnlyForward(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	if cp, err := eventstore.LoadCheckpointIn(ctx, s.Pool(), "reader/x"); err != nil || cp != (eventstore.Checkpoint{}) {
		t.Fatalf("never saved: %+v, %v; want zero", cp, err)
	}
	at := eventstore.Checkpoint{TxID: 10, Position: 5}
	for _, cp := range []eventstore.Checkpoint{at, {TxID: 10, Position: 4}, {TxID: 9, Position: 50}} {
		if err := eventstore.AdvanceCheckpointIn(ctx, s.Pool(), "reader/x", cp); err != nil {
			t.Fatal(err)
		}
	}
	b := &pgx.Batch{}
	b.Queue("SELECT 1") // something before, as the engine's batch has
	got := map[string]eventstore.Checkpoint{}
	eventstore.QueueLoadCheckpoints(b, []string{"reader/x", "reader/none"}, func(name string, cp eventstore.Checkpoint) { got[name] = cp })
	eventstore.QueueAdvanceCheckpoint(b, "reader/x", eventstore.Checkpoint{TxID: 11, Position: 1})
	if err := s.Pool().SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["reader/x"] != at {
		t.Fatalf("loaded %+v; want only reader/x at %+v (older saves do not move it back)", got, at)
	}
	if cp, err := eventstore.LoadCheckpointIn(ctx, s.Pool(), "reader/x"); err != nil || cp != (eventstore.Checkpoint{TxID: 11, Position: 1}) {
		t.Fatalf("after the queued advance: %+v, %v", cp, err)
	}
}
