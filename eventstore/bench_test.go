package eventstore_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/testenv"
)

// benchStore returns a store whose pool has a connection per writer (pgxpool's default is
// max(4, NumCPU), which would cap the concurrency being measured).
func benchStore(b *testing.B, writers int) (*eventstore.Store, string) {
	b.Helper()
	_, url := testenv.Postgres(b)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = int32(writers + 2)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return eventstore.New(pool), url
}

// parallel runs op n times spread over writers goroutines and returns the elapsed time.
func parallel(b *testing.B, writers, n int, op func(w, i int) error) time.Duration {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := op(w, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return elapsed
}

// BenchmarkAppend measures single-event appends/s:
//   - distinct: each append to its own stream (no contention);
//   - distinct-cmd: the same with a command id (idempotency check and index);
//   - hot-any: every writer appends to one stream with ExpectAny (serialised on its row lock);
//   - hot-execute: every writer runs Execute on one stream (load, decide, append with the
//     expected version; conflicts are retried, reported as retries/op).
func BenchmarkAppend(b *testing.B) {
	for _, mode := range []string{"distinct", "distinct-cmd", "hot-any", "hot-execute"} {
		for _, writers := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("%s/writers=%d", mode, writers), func(b *testing.B) {
				s, _ := benchStore(b, writers)
				ctx := context.Background()
				agg := counterAgg
				agg.SnapshotEvery = 20
				agg.MaxAttempts = 10000
				var retries atomic.Int64
				b.ResetTimer()
				elapsed := parallel(b, writers, b.N, func(w, i int) error {
					switch mode {
					case "distinct":
						_, err := s.Append(ctx, fmt.Sprintf("conversation-b%d", i), eventstore.ExpectNoStream, []eventstore.EventData{msg(i)}, "")
						return err
					case "distinct-cmd":
						_, err := s.Append(ctx, fmt.Sprintf("conversation-b%d", i), eventstore.ExpectNoStream, []eventstore.EventData{msg(i)}, fmt.Sprintf("cmd-%d", i))
						return err
					case "hot-any":
						_, err := s.Append(ctx, "conversation-hot", eventstore.ExpectAny, []eventstore.EventData{msg(i)}, "")
						return err
					default:
						calls := 0
						_, err := eventstore.Execute(ctx, s, "conversation-hot", agg, "", func(c counter, v int64) ([]eventstore.EventData, error) {
							if calls++; calls > 1 {
								retries.Add(1)
							}
							return []eventstore.EventData{msg(c.N)}, nil
						})
						return err
					}
				})
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "appends/s")
				if mode == "hot-execute" {
					b.ReportMetric(float64(retries.Load())/float64(b.N), "retries/op")
				}
			})
		}
	}
}

// BenchmarkReadAll measures gap-safe reads of the whole store in pages of 1000.
func BenchmarkReadAll(b *testing.B) {
	s, _ := benchStore(b, 4)
	ctx := context.Background()
	const streams, perStream = 200, 100
	batch := make([]eventstore.EventData, perStream)
	for i := range batch {
		batch[i] = msg(i)
	}
	for i := range streams {
		if _, err := s.Append(ctx, fmt.Sprintf("conversation-r%d", i), eventstore.ExpectNoStream, batch, ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	total := 0
	for range b.N {
		var cp eventstore.Checkpoint
		n := 0
		for n < streams*perStream {
			events, err := s.ReadAll(ctx, cp, 1000)
			if err != nil {
				b.Fatal(err)
			}
			if len(events) == 0 {
				time.Sleep(time.Millisecond) // another backend's transaction holds the horizon
				continue
			}
			n += len(events)
			cp = eventstore.CheckpointOf(events[len(events)-1])
		}
		total += n
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
}

// pgbenchScript inserts one row shaped like an appended event (same columns, indexes, sizes)
// into a copy of the events table, in autocommit: the floor cost of storing an event.
const pgbenchScript = `INSERT INTO bench_events (stream_id, stream_version, event_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
VALUES ('conversation-' || gen_random_uuid(), 1, gen_random_uuid(), 'MessageSent', 1,
 '{"n": 1, "text": "hello 1"}',
 '{"actor_id": "u1", "clinic_id": "c1", "command_id": "", "causation_id": "", "correlation_id": ""}',
 now(), '', 'c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ff');
`

var tpsRE = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// BenchmarkPgbenchComparison runs pgbench (HUDDLE_PGBENCH = its path) with 8 clients and then
// Append with 8 writers on the same cluster for the same time, and reports both rates and
// their ratio. scripts/bench-pgbench.sh runs it.
func BenchmarkPgbenchComparison(b *testing.B) {
	pgbench := os.Getenv("HUDDLE_PGBENCH")
	if pgbench == "" {
		b.Skip("set HUDDLE_PGBENCH to the pgbench binary (scripts/bench-pgbench.sh does)")
	}
	seconds := 10
	if v, err := strconv.Atoi(os.Getenv("HUDDLE_PGBENCH_SECONDS")); err == nil && v > 0 {
		seconds = v
	}
	const clients = 8
	s, url := benchStore(b, clients)
	ctx := context.Background()
	if _, err := s.Pool().Exec(ctx, `CREATE TABLE bench_events (LIKE events INCLUDING ALL)`); err != nil {
		b.Fatal(err)
	}
	script := filepath.Join(b.TempDir(), "append.sql")
	if err := os.WriteFile(script, []byte(pgbenchScript), 0o644); err != nil {
		b.Fatal(err)
	}
	for range b.N {
		out, err := exec.CommandContext(ctx, pgbench, "-n", "-M", "prepared", "-c", strconv.Itoa(clients), "-j", "2",
			"-T", strconv.Itoa(seconds), "-f", script, url).CombinedOutput()
		if err != nil {
			b.Fatalf("pgbench: %v\n%s", err, out)
		}
		m := tpsRE.FindSubmatch(out)
		if m == nil {
			b.Fatalf("pgbench output has no tps line:\n%s", out)
		}
		pgTPS, _ := strconv.ParseFloat(string(m[1]), 64)

		var done atomic.Int64
		deadline := time.Now().Add(time.Duration(seconds) * time.Second)
		var wg sync.WaitGroup
		start := time.Now()
		for w := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; time.Now().Before(deadline); i++ {
					if _, err := s.Append(ctx, fmt.Sprintf("conversation-w%d-%d", w, i), eventstore.ExpectNoStream, []eventstore.EventData{msg(i)}, ""); err != nil {
						b.Error(err)
						return
					}
					done.Add(1)
				}
			}()
		}
		wg.Wait()
		ours := float64(done.Load()) / time.Since(start).Seconds()
		fmt.Printf("pgbench single-row insert, %d clients: %.0f inserts/s\n", clients, pgTPS)
		fmt.Printf("eventstore Append, %d writers:         %.0f appends/s\n", clients, ours)
		fmt.Printf("ratio Append/pgbench:                   %.2f\n", ours/pgTPS)
		b.ReportMetric(pgTPS, "pgbench-inserts/s")
		b.ReportMetric(ours, "appends/s")
		b.ReportMetric(ours/pgTPS, "ratio")
	}
}
