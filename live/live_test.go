package live_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/internal/testenv"
	"github.com/huddle-chat/huddle/live"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestFeed_ConcurrentAppendsGetGapFreeSequencesPerUser(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testenv.Postgres(t)
	feed := live.NewFeed(pool)
	ann := live.Target{ClinicID: "c1", UserID: "ann"}
	bob := live.Target{ClinicID: "c1", UserID: "bob"}

	const writers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				tx, err := pool.Begin(ctx)
				if err != nil {
					errs <- err
					return
				}
				for _, to := range []live.Target{ann, bob} {
					if _, err := live.Append(ctx, tx, to, live.KindUnread, map[string]int{"i": i}); err != nil {
						errs <- err
						_ = tx.Rollback(ctx)
						return
					}
				}
				if err := tx.Commit(ctx); err != nil {
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
	for _, to := range []live.Target{ann, bob} {
		entries, err := feed.After(ctx, to, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != writers*each {
			t.Fatalf("%s: %d entries, want %d", to.UserID, len(entries), writers*each)
		}
		for i, e := range entries {
			if e.Seq != int64(i+1) {
				t.Fatalf("%s: entry %d has seq %d: sequences must be 1..n without holes", to.UserID, i, e.Seq)
			}
		}
		oldest, newest, err := feed.Bounds(ctx, to)
		if err != nil || oldest != 1 || newest != writers*each {
			t.Fatalf("bounds %d..%d, %v", oldest, newest, err)
		}
	}
	// A rolled-back append leaves no hole either: the cursor increment rolls back with it.
	tx, _ := pool.Begin(ctx)
	if _, err := live.Append(ctx, tx, ann, live.KindUnread, 1); err != nil {
		t.Fatal(err)
	}
	_ = tx.Rollback(ctx)
	tx, _ = pool.Begin(ctx)
	seq, err := live.Append(ctx, tx, ann, live.KindUnread, 2)
	if err != nil || tx.Commit(ctx) != nil {
		t.Fatal(err)
	}
	if seq != writers*each+1 {
		t.Errorf("after a rollback the next seq is %d, want %d", seq, writers*each+1)
	}
}

func TestFeed_PruneDropsOldEntries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testenv.Postgres(t)
	feed := live.NewFeed(pool)
	to := live.Target{ClinicID: "c1", UserID: "ann"}
	for i := 0; i < 3; i++ {
		tx, _ := pool.Begin(ctx)
		if _, err := live.Append(ctx, tx, to, live.KindMessage, i); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool.Exec(ctx, `UPDATE live_feed SET created_at = now() - interval '2 days' WHERE seq < 3`); err != nil {
		t.Fatal(err)
	}
	n, err := feed.Prune(ctx, 24*time.Hour)
	if err != nil || n != 2 {
		t.Fatalf("pruned %d, %v; want 2", n, err)
	}
	oldest, newest, _ := feed.Bounds(ctx, to)
	if oldest != 3 || newest != 3 {
		t.Errorf("bounds after prune %d..%d, want 3..3", oldest, newest)
	}
}

func TestHub_WakesEveryStreamOfTheUserPinged(t *testing.T) {
	t.Parallel()
	b := testenv.NATS(t)
	nc, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	hub := live.NewHub(nc)
	ann := live.Target{ClinicID: "c1", UserID: "ann"}
	bob := live.Target{ClinicID: "c1", UserID: "bob"}

	w1, stop1, err := hub.Watch(ann)
	if err != nil {
		t.Fatal(err)
	}
	w2, stop2, _ := hub.Watch(ann)
	w3, stop3, _ := hub.Watch(bob)
	defer stop3()
	if got := hub.Watched(); got != 2 {
		t.Fatalf("%d users watched for 3 streams of 2 users, want 2", got)
	}
	pub, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	live.NewNotifier(pub, testenv.Logger(t)).Notify(ann, ann)
	for i, w := range []<-chan struct{}{w1, w2} {
		select {
		case <-w:
		case <-time.After(5 * time.Second):
			t.Fatalf("ann's stream %d was not woken", i+1)
		}
	}
	select {
	case <-w3:
		t.Fatal("bob's stream woke for ann's ping")
	case <-time.After(100 * time.Millisecond):
	}
	stop1()
	stop2()
	if got := hub.Watched(); got != 1 {
		t.Errorf("after ann's streams closed: %d users watched, want 1", got)
	}
	dotted := live.Target{ClinicID: "c.1", UserID: "dr.who@clinic.test"}
	w4, stop4, err := hub.Watch(dotted)
	if err != nil {
		t.Fatal(err)
	}
	defer stop4()
	live.NewNotifier(pub, testenv.Logger(t)).Notify(dotted)
	select {
	case <-w4:
	case <-time.After(5 * time.Second):
		t.Fatal("a user whose id holds dots was not woken")
	}
}

func TestHub_PingsCarryEntriesOnlyToTheUserTheyAreFor(t *testing.T) {
	t.Parallel()
	b := testenv.NATS(t)
	nc, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	hub := live.NewHub(nc)
	// Both ids map to the subject huddle.live.c1.a_b: they share wake-ups, never entries.
	dotted := live.Target{ClinicID: "c1", UserID: "a.b"}
	underscored := live.Target{ClinicID: "c1", UserID: "a_b"}
	if live.Subject(dotted) != live.Subject(underscored) {
		t.Fatalf("test premise: %q and %q should share a subject", live.Subject(dotted), live.Subject(underscored))
	}
	got := map[string]chan []live.Entry{"a.b": make(chan []live.Entry, 4), "a_b": make(chan []live.Entry, 4)}
	for _, to := range []live.Target{dotted, underscored} {
		stop, err := hub.WatchFunc(to, func(es []live.Entry) { got[to.UserID] <- es })
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
	}
	pub, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	live.NewNotifier(pub, testenv.Logger(t)).Deliver([]live.Written{
		{To: dotted, Entry: live.Entry{Seq: 7, Kind: live.KindUnread, Body: []byte(`{"total":1}`)}},
		{To: dotted, Entry: live.Entry{Seq: 8, Kind: live.KindUnread, Body: []byte(`{"total":2}`)}},
	})
	receive := func(user string) []live.Entry {
		select {
		case es := <-got[user]:
			return es
		case <-time.After(5 * time.Second):
			t.Fatalf("%s's stream was not woken", user)
			return nil
		}
	}
	es := receive("a.b")
	if len(es) != 2 || es[0].Seq != 7 || es[1].Seq != 8 || string(es[1].Body) != `{"total":2}` || es[0].Kind != live.KindUnread {
		t.Errorf("a.b received %+v, want its two entries in order", es)
	}
	if es := receive("a_b"); es != nil {
		t.Errorf("a_b, sharing the subject, was handed a.b's entries: %+v", es)
	}
}
