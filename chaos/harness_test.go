//go:build chaos

// Package chaos breaks a running Huddle on purpose, under load, and checks what every client
// was told: each acknowledged message is stored exactly once, and how long Huddle took to
// answer again. Run it with `go test -tags chaos ./chaos/` (a few minutes); each scenario
// logs a line "chaos <scenario>: sent … acknowledged … lost … doubled … recovered in …".
package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/huddle-chat/huddle/api"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// huddleBinary builds cmd/huddle once per test run.
func huddleBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "huddle-chaos-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "huddle")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/huddle").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// server is one `huddle serve` on the embedded default, restartable on the same data dir.
type server struct {
	t       *testing.T
	bin     string
	env     []string
	dataDir string
	base    string
	secret  []byte
	cmd     *exec.Cmd
	exited  chan struct{}
	log     *lockedBuffer
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newServer prepares a huddle serve on its own data dir and port; env adds or overrides
// variables (HUDDLE_DATABASE_URL and HUDDLE_NATS_URL for instances sharing a store and a NATS).
func newServer(t *testing.T, env ...string) *server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &server{t: t, bin: huddleBinary(t), dataDir: filepath.Join(t.TempDir(), "data"),
		base: fmt.Sprintf("http://127.0.0.1:%d", port), secret: []byte("chaos-secret-chaos-secret-chaos-secret"), log: &lockedBuffer{}}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HUDDLE_") {
			s.env = append(s.env, kv)
		}
	}
	s.env = append(s.env, "HUDDLE_DATA_DIR="+s.dataDir, fmt.Sprintf("HUDDLE_HTTP_ADDR=127.0.0.1:%d", port),
		"HUDDLE_NATS_LISTEN=127.0.0.1:0", "HUDDLE_JWT_SECRET="+string(s.secret), "HUDDLE_RATE_PER_USER=0")
	s.env = append(s.env, env...) // exec uses the last value of a repeated variable
	t.Cleanup(func() {
		if s.running() {
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.exited:
			case <-time.After(30 * time.Second):
				_ = s.cmd.Process.Kill()
			}
		}
		if t.Failed() {
			t.Logf("server log (tail):\n%s", tail(s.log.String(), 60))
		}
	})
	return s
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (s *server) running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// start runs huddle serve and waits for /readyz; it returns how long that took.
func (s *server) start() time.Duration {
	s.t.Helper()
	s.cmd = exec.Command(s.bin, "serve")
	s.cmd.Env = s.env
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	began := time.Now()
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan struct{})
	cmd := s.cmd
	go func() { _ = cmd.Wait(); close(s.exited) }()
	s.waitReady(2 * time.Minute)
	return time.Since(began)
}

func (s *server) waitReady(limit time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if res, err := http.Get(s.base + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("not ready after %v\n%s", limit, tail(s.log.String(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL to huddle serve and waits for it to be gone.
func (s *server) kill() {
	s.t.Helper()
	_ = s.cmd.Process.Kill()
	<-s.exited
}

func (s *server) token(user, role string) string {
	tok, err := api.MintToken(s.secret, user, "chaos", []string{role}, 2*time.Hour)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

// call sends one request; status 0 means no answer (connection refused, reset, timeout).
func (s *server) call(ctx context.Context, method, path, token string, body any, header ...string) (int, http.Header, []byte) {
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, rd)
	if err != nil {
		return 0, nil, nil
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, nil, nil
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, out
}

var client = &http.Client{Timeout: 20 * time.Second}

func (s *server) must(method, path, token string, body any, want int) []byte {
	s.t.Helper()
	status, _, out := s.call(context.Background(), method, path, token, body)
	if status != want {
		s.t.Fatalf("%s %s: %d %s (want %d)", method, path, status, out, want)
	}
	return out
}

// ward sets up the clinic (staff in one room) and a group of them; it returns the group id.
func (s *server) ward(staff []string) string {
	s.t.Helper()
	admin := s.token("root", api.RoleAdmin)
	s.must("PUT", "/v1/admin/rooms/ward", admin, map[string]string{"name": "Ward"}, 200)
	for _, u := range staff {
		s.must("PUT", "/v1/admin/users/"+u, admin, map[string]string{"name": "Staff " + u, "email": u + "@chaos.test"}, 200)
		s.must("PUT", "/v1/admin/rooms/ward/members/"+u, admin, nil, 204)
	}
	var g struct{ ID string }
	_ = json.Unmarshal(s.must("POST", "/v1/conversations", s.token(staff[0], api.RoleStaff),
		map[string]any{"participant_ids": staff[1:], "title": "Chaos ward"}, 201), &g)
	return g.ID
}

// load posts messages into a group from several senders, each with a client_message_id, and
// keeps what it was told. A sender retries a message that got no answer or a 5xx with the
// same id (as a client should), so a message counts as acknowledged once any try got a 201.
// With several instances, senders are spread over them and one whose instance does not answer
// retries on the next (as behind a load balancer).
type load struct {
	targets           []*server
	group             string
	sent, acked, errs atomic.Int64
	mu                sync.Mutex
	ackedIDs          map[string]bool
	cancel            context.CancelFunc
	wg                sync.WaitGroup
	lastAck           atomic.Int64 // unix nanos of the latest 201
}

func (s *server) startLoad(group string, senders []string, perSecond int) *load {
	return startLoadOn([]*server{s}, group, senders, perSecond)
}

// startLoadOn spreads the senders over targets (instances sharing one store and one secret).
func startLoadOn(targets []*server, group string, senders []string, perSecond int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{targets: targets, group: group, ackedIDs: map[string]bool{}, cancel: cancel}
	for i, u := range senders {
		tok := targets[0].token(u, api.RoleStaff)
		target := i % len(targets)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			tick := time.NewTicker(time.Second * time.Duration(len(senders)) / time.Duration(perSecond))
			defer tick.Stop()
			for n := 0; ; n++ {
				id := fmt.Sprintf("%s-%d", u, n)
				l.sent.Add(1)
				for try := 0; ; try++ {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
					rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
					status, _, _ := targets[target].call(rctx, "POST", "/v1/conversations/"+group+"/messages", tok,
						map[string]any{"text": "chaos " + id, "client_message_id": id})
					rcancel()
					if status == 0 {
						target = (target + 1) % len(targets) // no answer: the next instance
					}
					if status == http.StatusCreated {
						l.acked.Add(1)
						l.lastAck.Store(time.Now().UnixNano())
						l.mu.Lock()
						l.ackedIDs[id] = true
						l.mu.Unlock()
						break
					}
					if status >= 400 && status < 500 {
						l.errs.Add(1) // refused for good: a bug, reported by verify
						break
					}
				}
			}
		}()
	}
	return l
}

func (l *load) stop() { l.cancel(); l.wg.Wait() }

// live returns an instance of the load's that is running.
func (l *load) live(t *testing.T) *server {
	t.Helper()
	for _, s := range l.targets {
		if s.running() {
			return s
		}
	}
	t.Fatal("no instance is running")
	return nil
}

// verify reads the group's history from the store (audit API) and counts, for every
// acknowledged client_message_id, how often it is stored.
func (l *load) verify(t *testing.T) (lost, doubled int) {
	t.Helper()
	s := l.live(t)
	auditor := s.token("auditor", api.RoleAuditor)
	count := map[string]int{}
	after := ""
	for {
		path := "/v1/audit/conversations/" + l.group + "/events?limit=100"
		if after != "" {
			path += "&after=" + after
		}
		status, _, out := s.call(context.Background(), "GET", path, auditor, nil)
		if status != http.StatusOK {
			t.Fatalf("audit events: %d %s", status, out)
		}
		var page struct {
			Events []struct {
				Type string `json:"type"`
				Data struct {
					ClientMessageID string `json:"client_message_id"`
				} `json:"data"`
			} `json:"events"`
			NextCursor string `json:"next_cursor"`
		}
		if err := json.Unmarshal(out, &page); err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			if e.Type == "MessageSent" && e.Data.ClientMessageID != "" {
				count[e.Data.ClientMessageID]++
			}
		}
		if page.NextCursor == "" {
			break
		}
		after = page.NextCursor
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id := range l.ackedIDs {
		switch c := count[id]; {
		case c == 0:
			lost++
		case c > 1:
			doubled++
		}
	}
	for id, c := range count {
		if c > 1 && !l.ackedIDs[id] {
			doubled++
		}
	}
	return lost, doubled
}

// readBack waits until a fresh write is readable through the read models (Huddle-Min-Position)
// and returns how long that took from now: Huddle answers reads again.
func (s *server) readBack(group, user string, limit time.Duration) time.Duration {
	s.t.Helper()
	tok := s.token(user, api.RoleStaff)
	began := time.Now()
	for {
		status, h, _ := s.call(context.Background(), "POST", "/v1/conversations/"+group+"/messages", tok,
			map[string]any{"text": "probe", "client_message_id": fmt.Sprintf("probe-%d", began.UnixNano())})
		if status == http.StatusCreated {
			st, _, _ := s.call(context.Background(), "GET", "/v1/conversations/"+group+"/messages?limit=1", tok, nil,
				"Huddle-Min-Position", h.Get("Huddle-Position"))
			if st == http.StatusOK {
				return time.Since(began)
			}
		}
		if time.Since(began) > limit {
			s.t.Fatalf("no write readable %v after recovery began\n%s", limit, tail(s.log.String(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// report logs the scenario's line and fails on any loss or double.
func report(t *testing.T, scenario string, l *load, lost, doubled int, recovered []time.Duration) {
	t.Helper()
	worst := time.Duration(0)
	for _, d := range recovered {
		worst = max(worst, d)
	}
	t.Logf("chaos %s: sent %d, acknowledged %d, lost %d, doubled %d, refused %d; recovered in %v (worst of %d)",
		scenario, l.sent.Load(), l.acked.Load(), lost, doubled, l.errs.Load(), worst.Round(time.Millisecond), len(recovered))
	if lost != 0 || doubled != 0 || l.errs.Load() != 0 {
		t.Fatalf("%s: %d acknowledged messages lost, %d stored twice, %d refused", scenario, lost, doubled, l.errs.Load())
	}
	if l.acked.Load() == 0 {
		t.Fatalf("%s: nothing was acknowledged", scenario)
	}
}

func cycles(def int) int {
	if n, err := strconv.Atoi(os.Getenv("CHAOS_CYCLES")); err == nil && n > 0 {
		return n
	}
	return def
}

// readModel counts, by client_message_id, the load's messages the read model shows in the
// group (through the query API, paging back from the newest).
func (l *load) readModel(t *testing.T) map[string]int {
	t.Helper()
	s := l.live(t)
	tok := s.token("ann", api.RoleStaff)
	seen := map[string]int{}
	before := ""
	for {
		path := "/v1/conversations/" + l.group + "/messages?limit=100"
		if before != "" {
			path += "&before=" + url.QueryEscape(before)
		}
		status, _, out := s.call(context.Background(), "GET", path, tok, nil)
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, status, out)
		}
		var page struct {
			Messages []struct {
				Text string `json:"text"`
			} `json:"messages"`
			NextCursor string `json:"next_cursor"`
		}
		if err := json.Unmarshal(out, &page); err != nil {
			t.Fatal(err)
		}
		for _, m := range page.Messages {
			if id, ok := strings.CutPrefix(m.Text, "chaos "); ok {
				seen[id]++
			}
		}
		if page.NextCursor == "" {
			return seen
		}
		before = page.NextCursor
	}
}

// missingOrDoubled compares what a copy (read model, NATS stream) holds with what was
// acknowledged: acknowledged messages it lacks, and messages it holds more than once.
func (l *load) missingOrDoubled(held map[string]int) (missing, doubled int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id := range l.ackedIDs {
		if held[id] == 0 {
			missing++
		}
	}
	for _, n := range held {
		if n > 1 {
			doubled++
		}
	}
	return missing, doubled
}

// messageSubject is where the relay publishes the load's MessageSent events.
const messageSubject = "huddle.events.*.conversation.MessageSent"

// streamMessages counts, by client_message_id, the MessageSent events in JetStream's
// HUDDLE_EVENTS stream (an ordered consumer from the first message to the last).
func streamMessages(t *testing.T, natsURL string) map[string]int {
	t.Helper()
	nc, err := nats.Connect(natsURL, nats.Name("chaos-stream-count"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	sub, err := js.SubscribeSync(messageSubject, nats.OrderedConsumer(), nats.DeliverAll())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // the connection closes next
	seen := map[string]int{}
	for {
		m, err := sub.NextMsg(20 * time.Second)
		if err != nil {
			t.Fatalf("reading HUDDLE_EVENTS after %d messages: %v", len(seen), err)
		}
		var d struct {
			ClientMessageID string `json:"client_message_id"`
		}
		if err := json.Unmarshal(m.Data, &d); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(d.ClientMessageID, "probe-") {
			d.ClientMessageID = "" // probes are not the load's
		}
		if d.ClientMessageID != "" {
			seen[d.ClientMessageID]++
		}
		meta, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if meta.NumPending == 0 {
			return seen
		}
	}
}

// probeUntilPublished posts a probe message through s every half second until one of them is
// seen on NATS (a core subscription on natsURL), and returns when that was: the relay
// publishes again. limit bounds the wait.
func (s *server) probeUntilPublished(group, natsURL string, limit time.Duration) time.Time {
	s.t.Helper()
	nc, err := nats.Connect(natsURL, nats.Name("chaos-probe"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		s.t.Fatal(err)
	}
	defer nc.Close()
	seen := make(chan time.Time, 1)
	if _, err := nc.Subscribe(messageSubject, func(m *nats.Msg) {
		var d struct {
			ClientMessageID string `json:"client_message_id"`
		}
		if json.Unmarshal(m.Data, &d) == nil && strings.HasPrefix(d.ClientMessageID, "probe-") {
			select {
			case seen <- time.Now():
			default:
			}
		}
	}); err != nil {
		s.t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		s.t.Fatal(err)
	}
	tok := s.token("ann", api.RoleStaff)
	deadline := time.After(limit)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		s.call(context.Background(), "POST", "/v1/conversations/"+group+"/messages", tok,
			map[string]any{"text": "probe", "client_message_id": fmt.Sprintf("probe-%d-%d", time.Now().UnixNano(), n)})
		select {
		case at := <-seen:
			return at
		case <-deadline:
			s.t.Fatalf("no probe reached NATS within %v\n%s", limit, tail(s.log.String(), 40))
		case <-tick.C:
		}
	}
}

// relayActive reports whether this instance's relay holds the lock (its /metrics gauge).
func (s *server) relayActive() bool {
	res, err := client.Get(s.base + "/metrics")
	if err != nil {
		return false
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return strings.Contains(string(out), "\nhuddle_relay_active 1\n")
}
