//go:build chaos

package app

// The Postgres part of issue 14's chaos suite: `go test -tags chaos -run Chaos ./internal/app/`.
// Not in the default run: it takes about a minute and kills and freezes a real cluster.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/huddle-chat/huddle/api"
	"github.com/huddle-chat/huddle/internal/natsbroker"
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
	ann, chats := chaosSetup(t, base, cfg.JWTSecret)

	l := startLoad(t, base, ann, chats)
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
	l.stop()

	stored := storedMessages(t, a.DatabaseURL())
	var lost, doubled int
	for id := range l.ackedIDs {
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
		l.sent.Load(), l.acked.Load(), l.retries.Load(), lost, doubled, killRecovery.Round(10*time.Millisecond), freezeRecovery.Round(10*time.Millisecond))
	if lost != 0 || doubled != 0 || l.acked.Load() == 0 {
		t.Fatalf("lost %d, doubled %d, acknowledged %d", lost, doubled, l.acked.Load())
	}
}

// chaosSetup provisions two users in one room and four groups of theirs (one per sender:
// senders racing on one conversation would measure write conflicts, issue 14's busy, not the
// outages) and returns the first user's token and the groups.
func chaosSetup(t *testing.T, base string, secret []byte) (string, []string) {
	t.Helper()
	mint := func(user string, roles ...string) string {
		tok, err := api.MintToken(secret, user, "c1", roles, time.Hour)
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

	return ann, chats
}

// load is messages sent by four senders, each retried with its client_message_id until
// answered 2xx, as a client would; 503 and 429 are retried, anything else fails the test.
type load struct {
	sent, acked, retries atomic.Int64
	mu                   sync.Mutex
	ackedIDs             map[string]bool
	done                 chan struct{}
	wg                   sync.WaitGroup
}

func startLoad(t *testing.T, base, tok string, chats []string) *load {
	l := &load{ackedIDs: map[string]bool{}, done: make(chan struct{})}
	for g := range chats {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.done:
					return
				default:
				}
				id := fmt.Sprintf("m-%d-%d", g, i)
				l.sent.Add(1)
				body := fmt.Sprintf(`{"text":"message %s","client_message_id":%q}`, id, id)
				for give := time.Now().Add(90 * time.Second); time.Now().Before(give); {
					status, _ := call(base, "POST", "/v1/conversations/"+chats[g]+"/messages", tok, body)
					if status == http.StatusCreated || status == http.StatusOK {
						l.acked.Add(1)
						l.mu.Lock()
						l.ackedIDs[id] = true
						l.mu.Unlock()
						break
					}
					if status != 0 && status != http.StatusServiceUnavailable && status != http.StatusTooManyRequests {
						t.Errorf("message %s: unexpected %d", id, status)
						return
					}
					l.retries.Add(1)
					time.Sleep(200 * time.Millisecond)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	return l
}

// stop ends the load and waits for the senders.
func (l *load) stop() {
	close(l.done)
	l.wg.Wait()
}

// storedMessages counts the MessageSent events in the store by client_message_id.
func storedMessages(t *testing.T, url string) map[string]int64 {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
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
	return stored
}

// readModelMessages counts, per text, the messages the read model shows in chats.
func readModelMessages(t *testing.T, base, tok string, chats []string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for _, chat := range chats {
		before := ""
		for {
			path := "/v1/conversations/" + chat + "/messages?limit=100"
			if before != "" {
				path += "&before=" + url.QueryEscape(before)
			}
			status, body := call(base, "GET", path, tok, "")
			if status != http.StatusOK {
				t.Fatalf("GET %s: %d %v", path, status, body)
			}
			msgs, _ := body["messages"].([]any)
			for _, m := range msgs {
				if text, _ := m.(map[string]any)["text"].(string); strings.HasPrefix(text, "message ") {
					seen[strings.TrimPrefix(text, "message ")]++
				}
			}
			next, _ := body["next_cursor"].(string)
			if next == "" {
				break
			}
			before = next
		}
	}
	return seen
}

// NATS down for 30 s under load: commands keep committing (the store is the record), /readyz
// says not ready, and once NATS is back every acknowledged message reaches the read model,
// once.
func TestChaos_NATSDown30sUnderLoad(t *testing.T) {
	cfg := testConfig(t)
	dir := t.TempDir()
	l0, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l0.Addr().(*net.TCPAddr).Port
	l0.Close()
	startNATS := func() *natsbroker.Broker {
		b, err := natsbroker.Start(context.Background(), natsbroker.Options{StoreDir: dir, ListenPort: port})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := startNATS()
	cfg.NATSURL = b.ClientURL()
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
	ann, chats := chaosSetup(t, base, cfg.JWTSecret)
	l := startLoad(t, base, ann, chats)

	time.Sleep(3 * time.Second)
	b.Shutdown()
	waitStatus(t, base, "/readyz", "", http.StatusServiceUnavailable, 10*time.Second)
	ackedBefore := l.acked.Load()
	time.Sleep(30 * time.Second)
	ackedDuring := l.acked.Load() - ackedBefore
	back := time.Now()
	b = startNATS()
	defer b.Shutdown()
	waitStatus(t, base, "/readyz", "", http.StatusOK, 120*time.Second)
	recovery := time.Since(back)
	time.Sleep(3 * time.Second)
	l.stop()

	stored := storedMessages(t, a.DatabaseURL())
	var lost, doubled, missing int
	for id := range l.ackedIDs {
		if stored[id] == 0 {
			lost++
		}
	}
	for _, n := range stored {
		if n > 1 {
			doubled++
		}
	}
	// The read models catch up from JetStream (and the store, for gaps).
	var seen map[string]int
	for deadline := time.Now().Add(60 * time.Second); ; {
		seen, missing = readModelMessages(t, base, ann, chats), 0
		for id := range l.ackedIDs {
			if seen[id] == 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	caughtUp := time.Since(back)
	for _, n := range seen {
		if n > 1 {
			doubled++
		}
	}
	t.Logf("chaos: NATS down 30 s: sent %d, acknowledged %d (%d while NATS was down), retried %d, lost %d, doubled %d, "+
		"missing from the read model %d; ready %v after NATS returned, read models complete after %v",
		l.sent.Load(), l.acked.Load(), ackedDuring, l.retries.Load(), lost, doubled, missing,
		recovery.Round(10*time.Millisecond), caughtUp.Round(10*time.Millisecond))
	if lost != 0 || doubled != 0 || missing != 0 || ackedDuring == 0 {
		t.Fatalf("lost %d, doubled %d, missing %d, acknowledged during the outage %d", lost, doubled, missing, ackedDuring)
	}
}
