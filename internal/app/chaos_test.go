//go:build chaos

package app

// The Postgres part of issue 14's chaos suite: `go test -tags chaos -run Chaos ./internal/app/`.
// Not in the default run: it takes about a minute and kills and freezes a real cluster.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/huddle-chat/huddle/api"
	"github.com/huddle-chat/huddle/internal/testenv"
)

// call sends a JSON request and returns the status and the decoded body (nil on a network
// error, status 0).
func call(base, method, path, tok, body string) (int, map[string]any) {
	var rd *strings.Reader
	if body != "" {
		rd = strings.NewReader(body)
	} else {
		rd = strings.NewReader("")
	}
	req, _ := http.NewRequest(method, base+path, rd)
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// Under a steady load of messages (each retried with its client_message_id until answered
// 2xx, as a client would), the managed Postgres is SIGKILLed and later frozen for 5 s. Every
// acknowledged message must be stored exactly once.
func TestChaos_PostgresKilledAndFrozenUnderLoad(t *testing.T) {
	cfg := testConfig(t)
	cfg.DatabaseURL = ""
	a, err := Start(context.Background(), cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	base := "http://" + a.Addr().String()
	waitReady(t, base, done)
	mint := func(user string, roles ...string) string {
		tok, err := api.MintToken(cfg.JWTSecret, user, "c1", roles, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	admin, ann := mint("boss", api.RoleAdmin), mint("u1", api.RoleStaff)
	for _, step := range [][3]string{
		{"PUT", "/v1/admin/users/u1", `{"name":"Ann","email":"ann@clinic.test"}`},
		{"PUT", "/v1/admin/users/u2", `{"name":"Bob","email":"bob@clinic.test"}`},
		{"PUT", "/v1/admin/rooms/r1", `{"name":"Ward"}`},
		{"PUT", "/v1/admin/rooms/r1/members/u1", ""},
		{"PUT", "/v1/admin/rooms/r1/members/u2", ""},
	} {
		if status, body := call(base, step[0], step[1], admin, step[2]); status >= 300 {
			t.Fatalf("%s %s: %d %v", step[0], step[1], status, body)
		}
	}
	// One group per sender: senders racing on one conversation would measure write
	// conflicts (issue 14's busy), not the database's outages.
	chats := make([]string, 4)
	for g := range chats {
		deadline := time.Now().Add(20 * time.Second)
		for chats[g] == "" {
			status, body := call(base, "POST", "/v1/conversations", ann, fmt.Sprintf(`{"participant_ids":["u2"],"title":"g%d"}`, g))
			if status < 300 {
				chats[g], _ = body["id"].(string)
			} else if time.Now().After(deadline) {
				t.Fatalf("start chat: %d %v", status, body)
			} else {
				time.Sleep(100 * time.Millisecond) // the directory projection catching up
			}
		}
	}

	// Load: 4 senders, each message retried until acknowledged.
	var sent, acked, retries atomic.Int64
	var mu sync.Mutex
	ackedIDs := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("m-%d-%d", g, i)
				sent.Add(1)
				body := fmt.Sprintf(`{"text":"message %s","client_message_id":%q}`, id, id)
				for give := time.Now().Add(90 * time.Second); time.Now().Before(give); {
					status, _ := call(base, "POST", "/v1/conversations/"+chats[g]+"/messages", ann, body)
					if status == http.StatusCreated || status == http.StatusOK {
						acked.Add(1)
						mu.Lock()
						ackedIDs[id] = true
						mu.Unlock()
						break
					}
					if status != 0 && status != http.StatusServiceUnavailable && status != http.StatusTooManyRequests {
						t.Errorf("message %s: unexpected %d", id, status)
						return
					}
					retries.Add(1)
					time.Sleep(200 * time.Millisecond)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}

	recovered := func(what string, since time.Time) time.Duration {
		waitStatus(t, base, "/readyz", "", http.StatusOK, 120*time.Second)
		took := time.Since(since)
		t.Logf("%s: ready again after %v", what, took.Round(10*time.Millisecond))
		return took
	}
	time.Sleep(3 * time.Second)
	killed := time.Now()
	if err := syscall.Kill(a.db.cluster.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	killRecovery := recovered("SIGKILL", killed)

	time.Sleep(3 * time.Second)
	thaw := freeze(t, a.db.cluster.PID())
	frozen := time.Now()
	time.Sleep(5 * time.Second)
	thaw()
	freezeRecovery := recovered("SIGSTOP 5 s", frozen)

	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()

	conn, err := pgx.Connect(context.Background(), a.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(),
		`SELECT data->>'client_message_id', count(*) FROM events WHERE type = 'MessageSent' GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int64{}
	for rows.Next() {
		var id string
		var n int64
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		stored[id] = n
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	var lost, doubled int
	for id := range ackedIDs {
		if stored[id] == 0 {
			lost++
		}
	}
	for _, n := range stored {
		if n > 1 {
			doubled++
		}
	}
	t.Logf("chaos: sent %d, acknowledged %d, retried %d, lost %d, doubled %d; recovery after SIGKILL %v, after a 5 s SIGSTOP %v",
		sent.Load(), acked.Load(), retries.Load(), lost, doubled, killRecovery.Round(10*time.Millisecond), freezeRecovery.Round(10*time.Millisecond))
	if lost != 0 || doubled != 0 || acked.Load() == 0 {
		t.Fatalf("lost %d, doubled %d, acknowledged %d", lost, doubled, acked.Load())
	}
}
