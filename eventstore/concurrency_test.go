package eventstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/huddle-chat/huddle/eventstore"
)

func TestAppend_RepeatedCommandReturnsFirstResultAndWritesNothing(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	first := mustAppend(t, s, "conversation-x", eventstore.ExpectNoStream, "cmd-1", msg(1), msg(2))
	// The repeat carries other events and a stale expected version: neither matters.
	again := mustAppend(t, s, "conversation-x", eventstore.ExpectNoStream, "cmd-1", msg(9))
	if !again.Duplicate || again.FirstVersion != 1 || again.LastVersion != 2 || again.LastPosition != first.LastPosition {
		t.Fatalf("repeat: %+v", again)
	}
	for i := range first.Events {
		if again.Events[i].EventID != first.Events[i].EventID || again.Events[i].Hash != first.Events[i].Hash {
			t.Fatalf("repeat event %d: %+v, first %+v", i, again.Events[i], first.Events[i])
		}
	}
	if first.Events[0].Metadata.CommandID != "cmd-1" {
		t.Fatalf("metadata command id not filled: %+v", first.Events[0].Metadata)
	}
	if n := len(readAllEvents(t, s, 2)); n != 2 {
		t.Fatalf("store holds %d events, want 2", n)
	}
}

func TestAppend_ConcurrentDuplicateCommandsWriteOnce(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name        string
		sameStream  bool
		concurrency int
	}{{"same stream", true, 8}, {"different streams", false, 8}} {
		var wg sync.WaitGroup
		results := make([]eventstore.AppendResult, tc.concurrency)
		errs := make([]error, tc.concurrency)
		for i := range tc.concurrency {
			stream := "conversation-dup-" + tc.name
			if !tc.sameStream {
				stream = fmt.Sprintf("conversation-dup-%d", i)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = s.Append(ctx, stream, eventstore.ExpectAny, []eventstore.EventData{msg(i)}, "cmd-"+tc.name)
			}()
		}
		wg.Wait()
		var originals int
		for i := range results {
			if errs[i] != nil {
				t.Fatalf("%s: writer %d: %v", tc.name, i, errs[i])
			}
			if !results[i].Duplicate {
				originals++
			}
			if results[i].Events[0].EventID != results[0].Events[0].EventID {
				t.Fatalf("%s: writers disagree on the command's event: %v vs %v", tc.name, results[i].Events[0].EventID, results[0].Events[0].EventID)
			}
		}
		if originals != 1 {
			t.Fatalf("%s: %d writers wrote, want exactly 1", tc.name, originals)
		}
	}
	if n := len(readAllEvents(t, s, 2)); n != 2 {
		t.Fatalf("store holds %d events, want 2 (one per command)", n)
	}
}

func TestAppend_ConcurrentWritersToOneStreamGetContiguousVersions(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	const writers, each = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := s.Append(ctx, "conversation-hot", eventstore.ExpectAny, []eventstore.EventData{msg(w*each + i)}, ""); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := s.ReadStream(ctx, "conversation-hot", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != writers*each {
		t.Fatalf("%d events, want %d", len(got), writers*each)
	}
	for i, e := range got {
		if e.StreamVersion != int64(i+1) {
			t.Fatalf("event %d has version %d", i, e.StreamVersion)
		}
		if i > 0 && e.PrevHash != got[i-1].Hash {
			t.Fatalf("version %d does not chain to %d", e.StreamVersion, got[i-1].StreamVersion)
		}
	}
	if r, err := s.Verify(ctx, "conversation-hot"); err != nil || !r.OK || r.Events != writers*each {
		t.Fatalf("verify: %+v, %v", r, err)
	}
}

// TestReadAll_WaitsForSlowerTransactionInsteadOfSkippingIt is the bug Marten, Eventuous and
// Axon shipped: a transaction takes a lower position, others commit higher positions first, and
// a reader that already moved past them never sees the slow one.
func TestReadAll_WaitsForSlowerTransactionInsteadOfSkippingIt(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	mustAppend(t, s, "conversation-before", eventstore.ExpectNoStream, "", msg(0))

	// The slow writer inserts first (lower position, lower tx id) and stays open.
	slow, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Rollback(ctx) //nolint:errcheck
	var slowPos int64
	err = slow.QueryRow(ctx, `INSERT INTO events (stream_id, stream_version, event_id, type, data, metadata, recorded_at, hash)
		VALUES ('conversation-slow', 1, gen_random_uuid(), 'MessageSent', '{}', '{}', now(), 'x') RETURNING global_position`).Scan(&slowPos)
	if err != nil {
		t.Fatal(err)
	}
	fast1 := mustAppend(t, s, "conversation-fast1", eventstore.ExpectNoStream, "", msg(1))
	fast2 := mustAppend(t, s, "conversation-fast2", eventstore.ExpectNoStream, "", msg(2))
	if fast1.LastPosition < slowPos {
		t.Fatalf("setup: fast position %d below slow %d", fast1.LastPosition, slowPos)
	}

	// A reader polling now sees only what came before the open transaction.
	seen := readAllEvents(t, s, 1)
	if len(seen) != 1 || seen[0].StreamID != "conversation-before" {
		t.Fatalf("while the slow transaction is open, ReadAll returned %v", streams(seen))
	}
	cp := eventstore.CheckpointOf(seen[0])

	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var rest []eventstore.RecordedEvent
	eventually(t, "3 events after the checkpoint", func() bool {
		var err error
		if rest, err = s.ReadAll(ctx, cp, 100); err != nil {
			t.Fatal(err)
		}
		return len(rest) >= 3
	})
	want := []string{"conversation-slow", "conversation-fast1", "conversation-fast2"}
	if got := streams(rest); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after commit, reader resuming from its checkpoint got %v, want %v", got, want)
	}
	if rest[2].EventID != fast2.Events[0].EventID {
		t.Fatalf("last event %s, want %s", rest[2].EventID, fast2.Events[0].EventID)
	}
}

func streams(events []eventstore.RecordedEvent) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.StreamID
	}
	return out
}
