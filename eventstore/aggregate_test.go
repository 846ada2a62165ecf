package eventstore_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/eventstore"
)

type counter struct {
	N    int   `json:"n"`
	Seen []int `json:"seen"`
}

var counterAgg = eventstore.Aggregate[counter]{
	Initial: func() counter { return counter{} },
	Evolve: func(c counter, e eventstore.RecordedEvent) (counter, error) {
		c.N++
		c.Seen = append(c.Seen, int(e.StreamVersion))
		return c, nil
	},
	SnapshotVersion: 1,
	SnapshotEvery:   3,
}

func increment(c counter, version int64) ([]eventstore.EventData, error) {
	return []eventstore.EventData{msg(c.N + 1)}, nil
}

func TestExecute_SnapshotsAndLoadAgree(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	for range 10 {
		if _, err := eventstore.Execute(ctx, s, "member-snap", counterAgg, "", increment); err != nil {
			t.Fatal(err)
		}
	}
	var snapVersion int64
	if err := s.Pool().QueryRow(ctx, `SELECT snapshot_version FROM streams WHERE stream_id = 'member-snap'`).Scan(&snapVersion); err != nil {
		t.Fatal(err)
	}
	if snapVersion < 7 {
		t.Fatalf("snapshot at version %d, want one within SnapshotEvery of 10", snapVersion)
	}
	withSnap, v1, err := eventstore.Load(ctx, s, "member-snap", counterAgg)
	if err != nil {
		t.Fatal(err)
	}
	noSnap := counterAgg
	noSnap.SnapshotVersion = 0
	replayed, v2, err := eventstore.Load(ctx, s, "member-snap", noSnap)
	if err != nil {
		t.Fatal(err)
	}
	if withSnap.N != 10 || replayed.N != 10 || v1 != 10 || v2 != 10 || mustJSON(withSnap) != mustJSON(replayed) {
		t.Fatalf("snapshot load %+v@%d, replay %+v@%d", withSnap, v1, replayed, v2)
	}
	// A bumped SnapshotVersion ignores the old snapshot.
	bumped := counterAgg
	bumped.SnapshotVersion = 2
	if st, v, err := eventstore.Load(ctx, s, "member-snap", bumped); err != nil || st.N != 10 || v != 10 {
		t.Fatalf("bumped snapshot version: %+v@%d %v", st, v, err)
	}
}

func TestExecute_RepeatedCommandSkipsDecide(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	first, err := eventstore.Execute(ctx, s, "member-idem", counterAgg, "cmd-a", increment)
	if err != nil {
		t.Fatal(err)
	}
	called := false
	again, err := eventstore.Execute(ctx, s, "member-idem", counterAgg, "cmd-a", func(c counter, v int64) ([]eventstore.EventData, error) {
		called = true
		return increment(c, v)
	})
	if err != nil || called || !again.Duplicate || again.Events[0].EventID != first.Events[0].EventID {
		t.Fatalf("repeat: called=%v %+v %v", called, again, err)
	}
	none, err := eventstore.Execute(ctx, s, "member-idem", counterAgg, "cmd-b", func(counter, int64) ([]eventstore.EventData, error) { return nil, nil })
	if err != nil || none.LastVersion != 1 || len(none.Events) != 0 {
		t.Fatalf("no-op decide: %+v %v", none, err)
	}
	boom := errors.New("rule broken")
	if _, err := eventstore.Execute(ctx, s, "member-idem", counterAgg, "cmd-c", func(counter, int64) ([]eventstore.EventData, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("decide error: %v", err)
	}
}

func TestExecute_RetriesConflictsOnHotStream(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	agg := counterAgg
	const writers, each = 8, 10
	var conflicts atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				attempt := 0
				_, err := eventstore.Execute(ctx, s, "conversation-busy", agg, "", func(c counter, v int64) ([]eventstore.EventData, error) {
					if attempt++; attempt > 1 {
						conflicts.Add(1)
					}
					return increment(c, v)
				})
				if err != nil {
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
	st, v, err := eventstore.Load(ctx, s, "conversation-busy", agg)
	if err != nil || st.N != writers*each || v != writers*each {
		t.Fatalf("after %d increments: %+v@%d %v", writers*each, st.N, v, err)
	}
	t.Logf("%d conflict retries", conflicts.Load())
}

func TestExecute_GivesUpWithTypedConflict(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	agg := counterAgg
	agg.MaxAttempts = 2
	// decide sneaks a competing append in every time, so every attempt conflicts.
	_, err := eventstore.Execute(ctx, s, "member-lose", agg, "", func(c counter, v int64) ([]eventstore.EventData, error) {
		mustAppend(t, s, "member-lose", eventstore.ExpectAny, "", msg(0))
		return increment(c, v)
	})
	var wrong *eventstore.ErrWrongExpectedVersion
	if !errors.As(err, &wrong) || !errors.Is(err, eventstore.ErrConflict) || !errors.Is(err, eventstore.ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy wrapping a *ErrWrongExpectedVersion", err)
	}
}

func TestExecute_RetriesUntilTheDeadlineThenBusy(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	attempts := 0
	_, err := eventstore.Execute(ctx, s, "member-deadline", counterAgg, "", func(c counter, v int64) ([]eventstore.EventData, error) {
		attempts++
		mustAppend(t, s, "member-deadline", eventstore.ExpectAny, "", msg(0))
		return increment(c, v)
	})
	if !errors.Is(err, eventstore.ErrBusy) || !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("err = %v, want ErrBusy after conflicts", err)
	}
	if attempts <= 5 {
		t.Fatalf("%d attempts: conflicts must be retried until the deadline, not a fixed few times", attempts)
	}
}
