package eventstore_test

import (
	"context"
	"encoding/json"
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

	"github.com/google/uuid"
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
// into a copy of the events table, in autocommit: the floor cost of storing an event. The data
// and metadata differ per row, as real events do: with constant JSON literals a prepared INSERT
// parses the JSON once at prepare time and never again, which no real append can do.
const pgbenchScript = `\set n random(1, 1000000000)
INSERT INTO bench_events (stream_id, stream_version, event_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
VALUES ('conversation-' || gen_random_uuid(), 1, gen_random_uuid(), 'MessageSent', 1,
 ('{"n": ' || :n || ', "text": "hello ' || :n || '"}')::jsonb,
 ('{"actor_id": "u' || :n || '", "clinic_id": "c1", "command_id": "", "causation_id": "", "correlation_id": ""}')::jsonb,
 now(), '', 'c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ff');
`

// pgbenchAppendScript calls the append function itself with the same event: the store's
// database-side cost without the Go client.
const pgbenchAppendScript = `\set n random(1, 1000000000)
SELECT * FROM eventstore_append('conversation-' || gen_random_uuid(), 0, '',
 ARRAY[gen_random_uuid()::text], ARRAY['MessageSent'], ARRAY[1],
 ARRAY[('{"n": ' || :n || ', "text": "hello ' || :n || '"}')::jsonb],
 ARRAY[('{"actor_id": "u' || :n || '", "clinic_id": "c1", "command_id": "", "causation_id": "", "correlation_id": ""}')::jsonb],
 now(), ARRAY['c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ff']);
`

// pgxInsertSQL is pgbenchScript's INSERT issued from Go through pgx: what a Go client pays for
// the bare insert on this machine.
const pgxInsertSQL = `INSERT INTO bench_events (stream_id, stream_version, event_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
VALUES ($1, 1, $2, 'MessageSent', 1, $3, $4, now(), '', 'c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ff')`

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
	dir := b.TempDir()
	runPgbench := func(name, body string) float64 {
		script := filepath.Join(dir, name)
		if err := os.WriteFile(script, []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
		out, err := exec.CommandContext(ctx, pgbench, "-n", "-M", "prepared", "-c", strconv.Itoa(clients), "-j", "2",
			"-T", strconv.Itoa(seconds), "-f", script, url).CombinedOutput()
		if err != nil {
			b.Fatalf("pgbench: %v\n%s", err, out)
		}
		m := tpsRE.FindSubmatch(out)
		if m == nil {
			b.Fatalf("pgbench output has no tps line:\n%s", out)
		}
		tps, _ := strconv.ParseFloat(string(m[1]), 64)
		return tps
	}
	for range b.N {
		pgTPS := runPgbench("insert.sql", pgbenchScript)
		fnTPS := runPgbench("append.sql", pgbenchAppendScript)

		pgxTPS := forDuration(b, clients, seconds, func(w, i int) error {
			e := msg(i)
			md, _ := json.Marshal(e.Metadata)
			_, err := s.Pool().Exec(ctx, pgxInsertSQL, fmt.Sprintf("conversation-x%d-%d", w, i), uuid.NewString(), string(e.Data), string(md))
			return err
		})
		ours := forDuration(b, clients, seconds, func(w, i int) error {
			_, err := s.Append(ctx, fmt.Sprintf("conversation-w%d-%d", w, i), eventstore.ExpectNoStream, []eventstore.EventData{msg(i)}, "")
			return err
		})
		fmt.Printf("pgbench single-row insert, %d clients: %.0f inserts/s\n", clients, pgTPS)
		fmt.Printf("pgbench eventstore_append(), %d clients: %.0f appends/s (database side only, %.2fx)\n", clients, fnTPS, fnTPS/pgTPS)
		fmt.Printf("pgx single-row insert, %d goroutines: %.0f inserts/s (%.2fx)\n", clients, pgxTPS, pgxTPS/pgTPS)
		fmt.Printf("eventstore Append, %d writers:         %.0f appends/s\n", clients, ours)
		fmt.Printf("ratio Append/pgbench:                   %.2f\n", ours/pgTPS)
		b.ReportMetric(pgTPS, "pgbench-inserts/s")
		b.ReportMetric(ours, "appends/s")
		b.ReportMetric(fnTPS, "pgbench-append-fn/s")
		b.ReportMetric(pgxTPS, "pgx-inserts/s")
		b.ReportMetric(ours/pgTPS, "ratio")
	}
}

// forDuration runs op from writers goroutines for the given seconds and returns ops/s.
func forDuration(b *testing.B, writers, seconds int, op func(w, i int) error) float64 {
	b.Helper()
	var done atomic.Int64
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				if err := op(w, i); err != nil {
					b.Error(err)
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(start).Seconds()
}
