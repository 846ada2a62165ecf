package projections_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/huddle-chat/huddle/directory"
	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/inbox"
	"github.com/huddle-chat/huddle/internal/projtest"
	"github.com/huddle-chat/huddle/internal/testenv"
	"github.com/huddle-chat/huddle/projections"
	"github.com/nats-io/nats.go"
)

// benchEvents is the generated store's size: HUDDLE_BENCH_EVENTS (default 50k, small enough for
// CI; the figure is 1M events with 1k users and 20k conversations, i.e. the same ratios).
func benchEvents() int {
	if n, err := strconv.Atoi(os.Getenv("HUDDLE_BENCH_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 50_000
}

// generateStore appends about n events: n/1000 users in rooms of 50, n/50 group
// conversations of 3–8 room mates with messages, plus read markers, mutes and archives.
func generateStore(tb testing.TB, ctx context.Context, store *eventstore.Store, n int) (users []string, total int) {
	tb.Helper()
	rng := rand.New(rand.NewPCG(42, 7))
	clinic := "c1"
	nUsers := max(20, n/1000)
	nConvs := max(10, n/50)
	md := func(actor string) eventstore.Metadata {
		return eventstore.Metadata{ActorID: actor, ClinicID: clinic, CorrelationID: "bench", CommandID: uuid.NewString()}
	}
	appendAll := func(stream string, actor string, evs []domain.Event) {
		for start := 0; start < len(evs); start += 200 {
			chunk := evs[start:min(start+200, len(evs))]
			data := make([]eventstore.EventData, len(chunk))
			for i, ev := range chunk {
				typ, raw, err := domain.Encode(ev)
				if err != nil {
					tb.Fatal(err)
				}
				data[i] = eventstore.EventData{Type: typ, Data: raw, Metadata: md(actor)}
			}
			if _, err := store.Append(ctx, stream, eventstore.ExpectAny, data, uuid.NewString()); err != nil {
				tb.Fatalf("append %s: %v", stream, err)
			}
			total += len(chunk)
		}
	}
	var dir []domain.Event
	for i := 0; i < nUsers; i++ {
		u := fmt.Sprintf("u%05d", i)
		users = append(users, u)
		dir = append(dir, domain.UserProfileSet{UserID: u, Name: "User " + u, Email: u + "@clinic.test"},
			domain.RoomMemberAdded{RoomID: fmt.Sprintf("r%03d", i/50), UserID: u})
	}
	appendAll(domain.DirectoryStream(clinic), "admin", dir)

	perConv := max(2, (n-total)/nConvs)
	member := map[string][]domain.Event{}
	for c := 0; c < nConvs; c++ {
		id := fmt.Sprintf("g%06d", c)
		room := rng.IntN((nUsers + 49) / 50)
		size := 3 + rng.IntN(6)
		seen := map[string]bool{}
		var ps []string
		for len(ps) < size {
			u := users[min(room*50+rng.IntN(50), nUsers-1)]
			if !seen[u] {
				seen[u] = true
				ps = append(ps, u)
			}
		}
		evs := []domain.Event{domain.ConversationStarted{ConversationID: id, Kind: domain.KindGroup, Title: "Group " + id,
			OwnerID: ps[0], StartedBy: ps[0], ParticipantIDs: ps}}
		for m := 1; m < perConv; m++ {
			sender := ps[rng.IntN(len(ps))]
			evs = append(evs, domain.MessageSent{MessageID: fmt.Sprintf("%s-%d", id, m), SenderID: sender, Text: "message text " + strconv.Itoa(m)})
			switch r := rng.IntN(100); {
			case r < 8:
				member[sender] = append(member[sender], domain.ReadMarkerMoved{ConversationID: id, UpToVersion: int64(m + 1)})
			case r < 9:
				member[ps[rng.IntN(len(ps))]] = append(member[ps[rng.IntN(len(ps))]], domain.ConversationArchived{ConversationID: id})
			}
		}
		appendAll(domain.ConversationStream(id), ps[0], evs)
	}
	for u, evs := range member {
		appendAll(domain.MemberStream(clinic, u), u, evs)
	}
	return users, total
}

// BenchmarkProjections measures rebuild throughput and inbox list latency on a generated store.
//
//	go test -run '^$' -bench Projections -benchtime 1x ./projections/
//	HUDDLE_BENCH_EVENTS=1000000 go test -run '^$' -bench Projections -benchtime 1x -timeout 2h ./projections/
func BenchmarkProjections(b *testing.B) {
	ctx := context.Background()
	pool, _ := testenv.Postgres(b)
	store := eventstore.New(pool)
	start := time.Now()
	users, total := generateStore(b, ctx, store, benchEvents())
	b.Logf("generated %d events for %d users in %s", total, len(users), time.Since(start).Round(time.Millisecond))
	e := projections.NewEngine(pool, store, "", slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})), nil,
		[]*projections.ReadModel{directory.ReadModel(), inbox.ReadModel()})

	// The yardstick: a rebuild should apply events at ≥ 0.9× the rate a client reads the
	// same store with ReadAll (1,000 a call), so rebuilding costs little more than reading.
	var readRate float64
	b.Run("read_all", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			var at eventstore.Checkpoint
			n := 0
			for {
				evs, err := store.ReadAll(ctx, at, 1000)
				if err != nil {
					b.Fatal(err)
				}
				if len(evs) == 0 {
					break
				}
				n += len(evs)
				at = eventstore.CheckpointOf(evs[len(evs)-1])
			}
			if n != total {
				b.Fatalf("read %d events, the store holds %d", n, total)
			}
		}
		readRate = float64(total) * float64(b.N) / b.Elapsed().Seconds()
		b.ReportMetric(readRate, "events/s")
	})
	b.Run("rebuild", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if err := e.Rebuild(ctx, nil, nil); err != nil {
				b.Fatal(err)
			}
		}
		rate := float64(total) * float64(b.N) / b.Elapsed().Seconds()
		b.ReportMetric(rate, "events/s")
		if readRate > 0 {
			b.ReportMetric(rate/readRate, "x_read_all")
		}
	})
	b.Run("inbox_list", func(b *testing.B) {
		benchInbox(b, ctx, pool, users)
	})
}

func benchInbox(b *testing.B, ctx context.Context, pool *pgxpool.Pool, users []string) {
	q := inbox.NewQueries(pool)
	rng := rand.New(rand.NewPCG(1, 2))
	f := false
	const perOp = 500 // queries per b.N, so percentiles mean something with -benchtime 1x
	lat := make([]time.Duration, 0, b.N*perOp)
	b.ResetTimer()
	for i := 0; i < b.N*perOp; i++ {
		u := users[rng.IntN(len(users))]
		t0 := time.Now()
		page, err := q.ListConversations(ctx, "c1", u, inbox.ListOptions{Archived: &f, Limit: 20})
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		_ = page
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
}

// BenchmarkLiveDrain measures the live path's throughput: a reader applying a generated store
// from its cursor, in batches, with the live feed (events/s until every event is applied).
//
//	HUDDLE_BENCH_EVENTS=20000 go test -run '^$' -bench LiveDrain -benchtime 1x ./projections/
func BenchmarkLiveDrain(b *testing.B) {
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		pool, _ := testenv.Postgres(b)
		broker := testenv.NATS(b)
		store := eventstore.New(pool)
		_, total := generateStore(b, ctx, store, benchEvents())
		var last eventstore.Checkpoint
		for {
			refs, err := store.EventRefsIn(ctx, pool, last, eventstore.Checkpoint{}, 10000)
			if err != nil {
				b.Fatal(err)
			}
			if len(refs) == 0 {
				break
			}
			last = refs[len(refs)-1].Checkpoint
		}
		nc, err := nats.Connect(broker.ClientURL())
		if err != nil {
			b.Fatal(err)
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		e := projections.NewEngine(pool, store, broker.ClientURL(), log, nil, projtest.ReadModels(nc, log))
		e.Bootstrap = false
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		go func() { done <- e.Run(runCtx) }()
		if err := e.WaitForAll(ctx, last); err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		cancel()
		<-done
		nc.Close()
		b.ReportMetric(float64(total)/elapsed.Seconds(), "events/s")
	}
}
