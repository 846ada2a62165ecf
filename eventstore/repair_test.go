package eventstore_test

import (
	"context"
	"testing"

	"github.com/huddle-chat/huddle/eventstore"
)

// TestRepairAfterRestore_RelayResumes simulates a restore into a cluster whose transaction
// counter is behind the dump's: every stored tx_id and the relay checkpoint are moved far above
// the current xid through the escape hatch, which is exactly what such a restore leaves.
func TestRepairAfterRestore_RelayResumes(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	if repaired, err := eventstore.RepairAfterRestore(ctx, s.Pool()); err != nil || repaired {
		t.Fatalf("healthy store: repaired=%v err=%v", repaired, err)
	}
	for i := range 4 {
		mustAppend(t, s, "conversation-r", eventstore.ExpectAny, "", msg(i))
	}
	all := readAllEvents(t, s, 4)
	// The relay had published the first two.
	if err := s.SaveCheckpoint(ctx, "relay", eventstore.CheckpointOf(all[1])); err != nil {
		t.Fatal(err)
	}
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		`SET LOCAL huddle.allow_event_rewrite = 'on'`,
		`UPDATE events SET tx_id = (tx_id::text::bigint + 1000000000)::text::xid8`,
		`UPDATE eventstore_checkpoints SET tx_id = (tx_id::text::bigint + 1000000000)::text::xid8`,
	} {
		if _, err := tx.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "conversation-r", eventstore.ExpectAny, "", msg(4))

	// Broken: the relay's checkpoint is above everything the new cluster writes.
	cp, err := s.LoadCheckpoint(ctx, "relay")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReadAll(ctx, cp, 100); err != nil || len(got) != 0 {
		t.Fatalf("before repair the relay would see %d events (%v); the test setup is wrong", len(got), err)
	}

	repaired, err := eventstore.RepairAfterRestore(ctx, s.Pool())
	if err != nil || !repaired {
		t.Fatalf("repair: repaired=%v err=%v", repaired, err)
	}
	cp, err = s.LoadCheckpoint(ctx, "relay")
	if err != nil {
		t.Fatal(err)
	}
	var rest []eventstore.RecordedEvent
	eventually(t, "the 3 unpublished events", func() bool {
		if rest, err = s.ReadAll(ctx, cp, 100); err != nil {
			t.Fatal(err)
		}
		return len(rest) >= 3
	})
	for i, e := range rest {
		if e.StreamVersion != int64(i+3) {
			t.Fatalf("after repair the relay resumes with versions %v, want 3, 4, 5", versions(rest))
		}
	}
	if again, err := eventstore.RepairAfterRestore(ctx, s.Pool()); err != nil || again {
		t.Fatalf("second repair: repaired=%v err=%v", again, err)
	}
	if r, err := s.Verify(ctx, "conversation-r"); err != nil || !r.OK {
		t.Fatalf("verify after repair: %+v %v", r, err)
	}
}

func versions(events []eventstore.RecordedEvent) []int64 {
	out := make([]int64, len(events))
	for i, e := range events {
		out[i] = e.StreamVersion
	}
	return out
}
