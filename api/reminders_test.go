package api_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/huddle-chat/huddle/api"
	"github.com/huddle-chat/huddle/internal/config"
	"github.com/huddle-chat/huddle/internal/testenv"
)

// API-v1.1 "Clinical messaging", reminders: until acknowledged, the recipient's stream repeats a
// `reminder` event every HUDDLE_URGENT_REMIND_EVERY, at most HUDDLE_URGENT_REMIND_MAX times,
// across restarts and instances. Real server(s) on a real store; short intervals.

const remindSecret = "reminders-secret-reminders-secret-reminders"

// startReminding starts an instance that reminds every interval, at most max times.
func startReminding(t *testing.T, dbURL, natsURL string, every time.Duration, max int) *instance {
	t.Helper()
	return startInstanceWith(t, dbURL, natsURL, []byte(remindSecret), func(c *config.Config) {
		c.RemindEvery, c.RemindMax = every, max
	})
}

// reminderLog collects the reminder events of one user's stream(s), by message, in order.
type reminderLog struct {
	mu     sync.Mutex
	counts map[string][]int // message id → counts, in arrival order
	other  map[string]bool  // reminders' conversation ids, to check them
	lastID int64
}

func newReminderLog() *reminderLog {
	return &reminderLog{counts: map[string][]int{}, other: map[string]bool{}}
}

// follow records c's reminder events until c ends, then closes the channel it returns.
func (l *reminderLog) follow(c *sseClient) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range c.events {
			l.mu.Lock()
			l.lastID = max(l.lastID, e.id)
			if e.event == "reminder" {
				msg, _ := e.data["message_id"].(string)
				n, _ := e.data["count"].(float64)
				conv, _ := e.data["conversation_id"].(string)
				l.counts[msg] = append(l.counts[msg], int(n))
				l.other[conv] = true
			}
			l.mu.Unlock()
		}
	}()
	return done
}

func (l *reminderLog) of(msg string) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.counts[msg])
}

func (l *reminderLog) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.counts {
		n += len(c)
	}
	return n
}

// waitFor waits until msg has had n reminders (a deadline, not a timing assertion).
func (l *reminderLog) waitFor(t *testing.T, msg string, n int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); len(l.of(msg)) < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("message %s: reminders %v, waited for %d", msg, l.of(msg), n)
		}
	}
}

// caughtUp waits until the log has received every entry user's feed holds now (the feed's
// newest sequence, read from the store's live_cursor).
func (l *reminderLog) caughtUp(t *testing.T, in *instance, user string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, in.app.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var newest int64
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(last_seq), 0) FROM live_cursor WHERE clinic_id = 'clinic-1' AND user_id = $1`, user).Scan(&newest); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		l.mu.Lock()
		last := l.lastID
		l.mu.Unlock()
		if last >= newest {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's stream is at %d, their feed at %d", user, last, newest)
		}
	}
}

// upTo is 1..n.
func upTo(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// remindingGroup puts ann, bob, cat and dan in a group started by ann and opens each one's
// stream from the start of their feed; it returns the group and the logs by user.
func remindingGroup(s *scenario) (string, map[string]*reminderLog) {
	s.t.Helper()
	tok := clinicalSetup(s)
	g := s.must(s.do("POST", "/v1/conversations", tok["ann"], map[string]any{"participant_ids": []string{"bob", "cat", "dan"}, "title": "Ward"}), 201, "").str("id")
	logs := map[string]*reminderLog{}
	for _, u := range []string{"ann", "bob", "cat", "dan", "eve"} {
		logs[u] = newReminderLog()
		logs[u].follow(s.stream(tok[u], "0"))
	}
	return g, logs
}

func TestReminders_RepeatUpToTheMaxOnTheRecipientsStreamsOnly(t *testing.T) {
	_, dbURL := testenv.Postgres(t)
	broker := testenv.NATS(t)
	in := startReminding(t, dbURL, broker.ClientURL(), 200*time.Millisecond, 3)
	g, logs := remindingGroup(in.scenario)
	ann := in.token("ann", api.RoleStaff)
	urgent := in.must(in.do("POST", "/v1/conversations/"+g+"/messages", ann, map[string]any{"text": "Bed 4 needs a doctor now", "priority": "urgent"}), 201, "").str("id")
	normal := in.must(in.do("POST", "/v1/conversations/"+g+"/messages", ann, map[string]any{"text": "Coffee's on"}), 201, "").str("id")
	for _, u := range []string{"bob", "cat", "dan"} {
		logs[u].waitFor(t, urgent, 3)
	}
	// Past the last one: three more intervals and then some bring nothing new.
	time.Sleep(time.Second)
	for _, u := range []string{"bob", "cat", "dan"} {
		if got := logs[u].of(urgent); !slices.Equal(got, upTo(3)) {
			t.Errorf("%s's reminders of the urgent message: %v, want [1 2 3]", u, got)
		}
		if got := logs[u].of(normal); len(got) != 0 {
			t.Errorf("%s was reminded of a normal message: %v", u, got)
		}
		if !logs[u].other[g] || len(logs[u].other) != 1 {
			t.Errorf("%s's reminders name conversations %v, want only %s", u, logs[u].other, g)
		}
	}
	for _, u := range []string{"ann", "eve"} { // the sender; someone outside the group
		if n := logs[u].total(); n != 0 {
			t.Errorf("%s got %d reminders, want none", u, n)
		}
	}
}

// An acknowledgement, a recall, leaving and removal each stop the reminders they concern; the
// others go on.
func TestReminders_StopOnAckRecallLeaveAndRemoval(t *testing.T) {
	_, dbURL := testenv.Postgres(t)
	broker := testenv.NATS(t)
	const max = 10
	in := startReminding(t, dbURL, broker.ClientURL(), 200*time.Millisecond, max)
	g, logs := remindingGroup(in.scenario)
	tok := func(u string) string { return in.token(u, api.RoleStaff) }
	send := func(text string) string {
		return in.must(in.do("POST", "/v1/conversations/"+g+"/messages", tok("ann"), map[string]any{"text": text, "priority": "urgent"}), 201, "").str("id")
	}
	acked, recalled := send("Bed 4"), send("Bed 5")
	for _, u := range []string{"bob", "cat", "dan"} {
		logs[u].waitFor(t, acked, 1)
		logs[u].waitFor(t, recalled, 1)
	}
	// Each action, then a read that waits until the read models applied it (Huddle-Min-Position),
	// then until the user's stream carried everything their feed held by then: a reminder the
	// scheduler wrote before the action was applied is counted before, and none may come after
	// (the scheduler holds the row it fires until it commits; the projection deletes it).
	applied := func(users ...string) {
		in.must(in.do("GET", "/v1/conversations/"+g+"/messages", tok("ann"), nil), 200, "")
		for _, u := range users {
			logs[u].caughtUp(t, in, u)
		}
	}
	in.must(in.do("POST", "/v1/conversations/"+g+"/messages/"+acked+"/ack", tok("bob"), nil), 204, "")
	applied("bob")
	bobAcked := len(logs["bob"].of(acked))
	in.must(in.do("DELETE", "/v1/conversations/"+g+"/messages/"+recalled, tok("ann"), nil), 204, "")
	applied("bob", "cat", "dan")
	recalledAt := map[string]int{}
	for _, u := range []string{"bob", "cat", "dan"} {
		recalledAt[u] = len(logs[u].of(recalled))
	}
	in.must(in.do("POST", "/v1/conversations/"+g+"/leave", tok("cat"), nil), 204, "")
	in.must(in.do("DELETE", "/v1/conversations/"+g+"/participants/dan", tok("ann"), nil), 204, "")
	applied("cat", "dan")
	catLeft, danRemoved := len(logs["cat"].of(acked)), len(logs["dan"].of(acked))
	// Whoever came back owes nothing of before (domain.PendingAcks): no reminder either.
	in.must(in.do("POST", "/v1/conversations/"+g+"/participants", tok("ann"), map[string]any{"user_id": "dan"}), 204, "")
	applied()

	time.Sleep(1500 * time.Millisecond) // seven intervals: an unstopped series would go on
	check := func(who, msg string, before int) {
		t.Helper()
		got := logs[who].of(msg)
		if len(got) != before || len(got) >= max {
			t.Errorf("%s's reminders of %s: %v, %d when it was stopped: it went on", who, msg, got, before)
		}
		if !slices.Equal(got, upTo(len(got))) {
			t.Errorf("%s's reminders of %s: %v, want 1, 2, 3, …", who, msg, got)
		}
	}
	check("bob", acked, bobAcked)
	check("cat", acked, catLeft)
	check("dan", acked, danRemoved)
	for _, u := range []string{"bob", "cat", "dan"} {
		check(u, recalled, recalledAt[u])
	}
	if n := logs["ann"].total(); n != 0 {
		t.Errorf("the sender got %d reminders", n)
	}
	// A control: the same wait without an action lets a series go on.
	control := send("Bed 6")
	logs["bob"].waitFor(t, control, 3)
}

// Two instances share the store and both run a scheduler: each reminder fires once.
func TestReminders_TwoInstancesFireEachReminderOnce(t *testing.T) {
	_, dbURL := testenv.Postgres(t)
	broker := testenv.NATS(t)
	const max = 6
	a := startReminding(t, dbURL, broker.ClientURL(), 200*time.Millisecond, max)
	b := startReminding(t, dbURL, broker.ClientURL(), 200*time.Millisecond, max)
	g, logs := remindingGroup(a.scenario)
	var urgent []string
	for i := range 4 {
		via := []*instance{a, b}[i%2]
		urgent = append(urgent, via.must(via.do("POST", "/v1/conversations/"+g+"/messages", via.token("ann", api.RoleStaff),
			map[string]any{"text": fmt.Sprint("urgent ", i), "priority": "urgent"}), 201, "").str("id"))
	}
	// bob follows his stream on the other instance too: the entries are the same feed.
	bobOnB := newReminderLog()
	bobOnB.follow(b.stream(b.token("bob", api.RoleStaff), "0"))
	for _, m := range urgent {
		for _, u := range []string{"bob", "cat", "dan"} {
			logs[u].waitFor(t, m, max)
		}
		bobOnB.waitFor(t, m, max)
	}
	time.Sleep(time.Second)
	for _, m := range urgent {
		for _, u := range []string{"bob", "cat", "dan"} {
			if got := logs[u].of(m); !slices.Equal(got, upTo(max)) {
				t.Errorf("%s's reminders of %s: %v, want each of 1..%d once", u, m, got, max)
			}
		}
		if got := bobOnB.of(m); !slices.Equal(got, upTo(max)) {
			t.Errorf("bob's reminders of %s read through the other instance: %v", m, got)
		}
	}
}

// A restart in the middle of a series: the next instance goes on counting from where the
// stopped one was, and the recipient's resumed stream sees each count once.
func TestReminders_ContinueAcrossARestart(t *testing.T) {
	_, dbURL := testenv.Postgres(t)
	broker := testenv.NATS(t)
	const max = 5
	first := startReminding(t, dbURL, broker.ClientURL(), 300*time.Millisecond, max)
	tok := clinicalSetup(first.scenario)
	g := first.must(first.do("POST", "/v1/conversations", tok["ann"], map[string]any{"participant_ids": []string{"bob"}}), 201, "").str("id")
	bob := newReminderLog()
	followed := bob.follow(first.stream(tok["bob"], "0"))
	urgent := first.must(first.do("POST", "/v1/conversations/"+g+"/messages", tok["ann"], map[string]any{"text": "now", "priority": "urgent"}), 201, "").str("id")
	bob.waitFor(t, urgent, 2)
	first.stop()
	<-followed // the stream ended with the instance; everything it carried is counted
	fired := len(bob.of(urgent))
	if fired >= max {
		t.Fatalf("the series ended before the restart: %v", bob.of(urgent))
	}

	second := startReminding(t, dbURL, broker.ClientURL(), 300*time.Millisecond, max)
	bob.mu.Lock()
	last := bob.lastID
	bob.mu.Unlock()
	bob.follow(second.stream(tok["bob"], strconv.FormatInt(last, 10)))
	bob.waitFor(t, urgent, max)
	time.Sleep(time.Second)
	if got := bob.of(urgent); !slices.Equal(got, upTo(max)) {
		t.Fatalf("reminders across the restart (%d before it): %v, want 1..%d once each", fired, got, max)
	}
}

// HUDDLE_URGENT_REMIND_MAX=0 turns reminders off: the instance runs no scheduler.
func TestReminders_OffWhenTheMaxIsZero(t *testing.T) {
	_, dbURL := testenv.Postgres(t)
	broker := testenv.NATS(t)
	in := startReminding(t, dbURL, broker.ClientURL(), 100*time.Millisecond, 0)
	if in.app.Reminders != nil {
		t.Fatal("a scheduler runs with HUDDLE_URGENT_REMIND_MAX=0")
	}
	g, logs := remindingGroup(in.scenario)
	urgent := in.must(in.do("POST", "/v1/conversations/"+g+"/messages", in.token("ann", api.RoleStaff), map[string]any{"text": "now", "priority": "urgent"}), 201, "").str("id")
	in.must(in.do("GET", "/v1/conversations/"+g+"/messages", in.token("bob", api.RoleStaff), nil), 200, "")
	time.Sleep(time.Second) // ten intervals
	logs["bob"].caughtUp(t, in, "bob")
	if got := logs["bob"].of(urgent); len(got) != 0 {
		t.Fatalf("reminders with the limit at 0: %v", got)
	}
}
