package api

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/internal/testenv"
	"github.com/huddle-chat/huddle/live"
)

func TestStream_HeartbeatsAndResetAfterRetention(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testenv.Postgres(t)
	b := testenv.NATS(t)
	nc, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	feed := live.NewFeed(pool)
	secret := []byte("stream-secret-stream-secret-stream")
	srv := httptest.NewServer(New(Deps{Logger: testenv.Logger(t), JWTSecret: secret, Live: live.NewHub(nc), Feed: feed,
		StreamHeartbeat: 50 * time.Millisecond}).Handler())
	defer srv.Close()
	tok, _ := MintToken(secret, "ann", "c1", []string{RoleStaff}, time.Hour)
	ann := live.Target{ClinicID: "c1", UserID: "ann"}

	for i := 0; i < 3; i++ {
		tx, _ := pool.Begin(ctx)
		if _, err := live.Append(ctx, tx, ann, live.KindUnread, map[string]int{"total": i}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Entries 1 and 2 age out of the retention window.
	if _, err := pool.Exec(ctx, `UPDATE live_feed SET created_at = now() - interval '2 days' WHERE seq < 3`); err != nil {
		t.Fatal(err)
	}
	if _, err := feed.Prune(ctx, 24*time.Hour); err != nil {
		t.Fatal(err)
	}

	read := func(lastEventID string) []string {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(cctx, "GET", srv.URL+"/v1/stream", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Last-Event-ID", lastEventID)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var lines []string
		sc := bufio.NewScanner(res.Body)
		heartbeats := 0
		for sc.Scan() && heartbeats < 2 {
			line := sc.Text()
			if line == ": heartbeat" {
				heartbeats++
			}
			if line != "" {
				lines = append(lines, line)
			}
		}
		return lines
	}

	// Resuming after entry 2 still works: entry 3 is retained.
	got := read("2")
	if !strings.Contains(strings.Join(got, "\n"), "id: 3\nevent: unread") || strings.Contains(strings.Join(got, "\n"), "reset") {
		t.Errorf("resume after 2: %q", got)
	}
	// Resuming after entry 0 would need entries 1 and 2, which are gone: reset.
	got = read("0")
	joined := strings.Join(got, "\n")
	if !strings.Contains(joined, "event: reset") || strings.Contains(joined, "event: unread") {
		t.Errorf("resume after 0 with 1..2 pruned: %q", got)
	}
	if !strings.Contains(joined, ": heartbeat") {
		t.Errorf("no heartbeat on an idle stream: %q", got)
	}
}
