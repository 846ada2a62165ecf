package eventstore_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/testenv"
)

// BenchmarkHotStream compares ways to let many writers append to ONE stream (a busy group
// chat), on a cluster with production durability (fsync and synchronous_commit on; set
// HUDDLE_BENCH_FSYNC_OFF=1 to use the shared test cluster instead). Each writer decides on
// the stream's state (here a counter) and appends one event; ADR 0010 records the figures.
//
//   - execute: load, decide, append expecting the loaded version; retry on conflict.
//   - advisory-lock: the same under a per-stream session advisory lock in Postgres, so
//     writers queue in the database instead of conflicting.
//   - expect-any: load and decide, then append with ExpectAny (the "commutative events"
//     shortcut: no conflicts, but a decision can rest on a state that has moved on).
//   - sequencer: one queue per stream in the process, state in memory, queued commands
//     appended together (Sequencer).
func BenchmarkHotStream(b *testing.B) {
	for _, writers := range []int{8, 32} {
		for _, strategy := range []string{"execute", "advisory-lock", "expect-any", "sequencer"} {
			b.Run(fmt.Sprintf("%s/writers=%d", strategy, writers), func(b *testing.B) {
				benchHotStream(b, strategy, writers)
			})
		}
	}
}

func benchHotStream(b *testing.B, strategy string, writers int) {
	var s *eventstore.Store
	if os.Getenv("HUDDLE_BENCH_FSYNC_OFF") != "" {
		s, _ = benchStore(b, 2*writers+4)
	} else {
		pool, _ := testenv.DurablePostgres(b, int32(2*writers+4))
		s = eventstore.New(pool)
	}
	ctx := context.Background()
	const stream = "conversation-hot"
	seq := eventstore.NewSequencer(s, counterAgg, eventstore.SequencerOptions{})
	var conflicts atomic.Int64
	decide := func(c counter, v int64) ([]eventstore.EventData, error) { return increment(c, v) }
	op := func(w, i int) error {
		switch strategy {
		case "execute":
			attempt := 0
			_, err := eventstore.Execute(ctx, s, stream, counterAgg, "", func(c counter, v int64) ([]eventstore.EventData, error) {
				if attempt++; attempt > 1 {
					conflicts.Add(1)
				}
				return decide(c, v)
			})
			return err
		case "advisory-lock":
			conn, err := s.Pool().Acquire(ctx)
			if err != nil {
				return err
			}
			defer conn.Release()
			if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(42, hashtext($1))`, stream); err != nil {
				return err
			}
			defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(42, hashtext($1))`, stream)
			_, err = eventstore.Execute(ctx, s, stream, counterAgg, "", decide)
			return err
		case "expect-any":
			state, v, err := eventstore.Load(ctx, s, stream, counterAgg)
			if err != nil {
				return err
			}
			events, _ := decide(state, v)
			_, err = s.Append(ctx, stream, eventstore.ExpectAny, events, "")
			return err
		default:
			_, err := seq.Execute(ctx, stream, eventstore.Command[counter]{ID: fmt.Sprintf("w%d-%d", w, i), Decide: decide})
			return err
		}
	}
	b.ResetTimer()
	elapsed := parallel(b, writers, b.N, op)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "appends/s")
	b.ReportMetric(float64(conflicts.Load())/float64(b.N), "conflicts/op")
	if st := seq.Stats(); st.Appends > 0 {
		b.ReportMetric(float64(st.Commands)/float64(st.Appends), "commands/append")
	}
}
