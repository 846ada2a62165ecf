package reminders_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/huddle-chat/huddle/internal/testenv"
	"github.com/huddle-chat/huddle/live"
	"github.com/huddle-chat/huddle/reminders"
)

// owe inserts n rows due now: message versions 1..n of conversation c owed by user u.
func owe(t testing.TB, ctx context.Context, pool *pgxpool.Pool, c, u string, n int, count int) {
	t.Helper()
	if _, err := pool.Exec(ctx, `INSERT INTO reminders (clinic_id, conversation_id, message_version, user_id, count, last_at)
		SELECT 'c1', $1, v, $2, $4, now() - interval '1 hour' FROM generate_series(1, $3::int) v`, c, u, n, count); err != nil {
		t.Fatal(err)
	}
}

// fedCounts returns the counts of the reminder entries in u's live feed, per message id.
func fedCounts(t *testing.T, ctx context.Context, pool *pgxpool.Pool, u string) map[string][]int {
	t.Helper()
	rows, err := pool.Query(ctx, `SELECT body->>'message_id', (body->>'count')::int FROM live_feed
		WHERE clinic_id = 'c1' AND user_id = $1 AND kind = $2 ORDER BY seq`, u, live.KindReminder)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		out[id] = append(out[id], n)
	}
	return out
}

// Schedulers racing on the same due rows (as on several instances) fire each reminder once:
// the rows one holds are skipped by the others, and a row moved on is no longer due.
func TestScheduler_RacingSchedulersFireEachReminderOnce(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t)
	ctx := context.Background()
	const rows = 400
	owe(t, ctx, pool, "g", "bob", rows, 0)
	var wg sync.WaitGroup
	fired := make([]int, 4)
	var schedulers []*reminders.Scheduler
	for i := range fired {
		s := reminders.NewScheduler(pool, nil, time.Hour, 3, testenv.Logger(t))
		s.Batch = 25
		schedulers = append(schedulers, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n, err := s.Fire(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				if n == 0 {
					return
				}
				fired[i] += n
			}
		}()
	}
	wg.Wait()
	got := fedCounts(t, ctx, pool, "bob")
	if len(got) != rows {
		t.Fatalf("%d messages reminded, want %d", len(got), rows)
	}
	for id, counts := range got {
		if len(counts) != 1 || counts[0] != 1 {
			t.Fatalf("%s: reminders %v, want one with count 1", id, counts)
		}
	}
	busy := 0
	for _, n := range fired {
		if n > 0 {
			busy++
		}
	}
	t.Logf("rows fired per scheduler: %v", fired)
	total := int64(0)
	for _, s := range schedulers {
		total += s.Fired()
	}
	if total != rows {
		t.Fatalf("the schedulers count %d reminders fired, want %d", total, rows)
	}
	if busy < 2 {
		t.Logf("only one scheduler found work: the race was not exercised this time")
	}
}

// The last reminder closes the row; a row already at a lowered limit closes without firing.
func TestScheduler_StopsAtTheLimitAndClosesRowsAboveALoweredOne(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t)
	ctx := context.Background()
	owe(t, ctx, pool, "last", "ann", 1, 2) // two fired: the third is the last
	owe(t, ctx, pool, "over", "ann", 1, 5) // five fired under a higher limit
	s := reminders.NewScheduler(pool, nil, time.Millisecond, 3, testenv.Logger(t))
	for range 3 {
		if _, err := s.Fire(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	got := fedCounts(t, ctx, pool, "ann")
	if fmt.Sprint(got) != "map[last.1:[3]]" {
		t.Fatalf("reminders: %v, want only the last one of 'last' (count 3)", got)
	}
	var open int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM reminders WHERE last_at < 'infinity'`).Scan(&open); err != nil || open != 0 {
		t.Fatalf("%d rows still scheduled (%v), want none", open, err)
	}
}

// BenchmarkScheduler_Fire measures one round of the scheduler firing a batch of due reminders
// (take the rows, append the feed entries, move the rows on), per reminder.
func BenchmarkScheduler_Fire(b *testing.B) {
	pool, _ := testenv.Postgres(b)
	ctx := context.Background()
	s := reminders.NewScheduler(pool, nil, time.Hour, 1<<30, testenv.Logger(b))
	users := 50
	for u := range users {
		owe(b, ctx, pool, "g", fmt.Sprint("u", u), s.Batch/users, 0)
	}
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		if _, err := pool.Exec(ctx, `UPDATE reminders SET last_at = now() - interval '2 hours'`); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		n, err := s.Fire(ctx)
		if err != nil || n != s.Batch {
			b.Fatalf("fired %d (%v), want %d", n, err, s.Batch)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*s.Batch), "µs/reminder")
}
