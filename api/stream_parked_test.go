package api

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/huddle-chat/huddle/internal/testenv"
	"github.com/huddle-chat/huddle/live"
)

// parkedServer is a server whose streams beat every heartbeat, its feed's pool, a notifier, and
// a raw HTTP/1.1 client that opens a stream.
func parkedServer(t *testing.T, heartbeat time.Duration) (s *Server, pool *pgxpool.Pool, notify *live.Notifier, open func(user string) (net.Conn, *bufio.Reader)) {
	t.Helper()
	pool, _ = testenv.Postgres(t)
	nc, err := testenv.NATS(t).Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	secret := []byte("parked-secret-parked-secret-parked")
	s = New(Deps{Logger: testenv.Logger(t), JWTSecret: secret, Live: live.NewHub(nc), Feed: live.NewFeed(pool),
		StreamHeartbeat: heartbeat})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(s.EndStreams)
	u, _ := url.Parse(srv.URL)
	open = func(user string) (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := MintToken(secret, user, "c1", []string{RoleStaff}, time.Hour)
		fmt.Fprintf(c, "GET /v1/stream HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", u.Host, tok)
		return c, bufio.NewReader(c)
	}
	return s, pool, live.NewNotifier(nc, testenv.Logger(t)), open
}

// readUntil reads lines until one equals want, failing after 5 s.
func readUntil(t *testing.T, c net.Conn, r *bufio.Reader, want string) []string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var lines []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading for %q after %q: %v", want, lines, err)
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if line == want {
			return lines
		}
	}
}

func TestStream_ParkedStreamAnswersAsAnEventStreamAndWakesOnAPing(t *testing.T) {
	t.Parallel()
	// No heartbeat within the test: only the ping can deliver the entry.
	s, pool, notify, open := parkedServer(t, time.Hour)
	c, r := open("ann")
	defer c.Close()
	head := readUntil(t, c, r, "retry: 3000")
	joined := strings.Join(head, "\n")
	for _, want := range []string{"HTTP/1.1 200 OK", "Content-Type: text/event-stream", "Cache-Control: no-cache", "Connection: close", "X-Request-Id: "} {
		if !strings.Contains(joined, want) {
			t.Errorf("response head lacks %q:\n%s", want, joined)
		}
	}
	if strings.Contains(joined, "Transfer-Encoding") {
		t.Errorf("a parked stream's body runs to the close, unchunked:\n%s", joined)
	}
	waitFor(t, func() bool { return s.parked.Len() == 1 })

	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := live.Append(ctx, tx, live.Target{ClinicID: "c1", UserID: "ann"}, live.KindUnread, map[string]int{"total": 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	notify.Notify(live.Target{ClinicID: "c1", UserID: "ann"})
	got := readUntil(t, c, r, `data: {"total": 7}`)
	if !strings.Contains(strings.Join(got, "\n"), fmt.Sprintf("id: %d\nevent: unread", seq)) {
		t.Errorf("entry %d not framed as an event: %q", seq, got)
	}
}

func TestStream_ParkedStreamBeatsAndRereadsTheFeedWithoutAPing(t *testing.T) {
	t.Parallel()
	s, pool, _, open := parkedServer(t, 50*time.Millisecond)
	c, r := open("eve")
	defer c.Close()
	readUntil(t, c, r, ": heartbeat")
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := live.Append(ctx, tx, live.Target{ClinicID: "c1", UserID: "eve"}, live.KindUnread, map[string]int{"total": 3}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	readUntil(t, c, r, `data: {"total": 3}`)
	readUntil(t, c, r, ": heartbeat")
	if n := s.parked.Len(); n != 1 {
		t.Errorf("parked streams = %d, want 1", n)
	}
}

func TestStream_ParkedStreamOfAGoneClientIsDroppedAtTheNextHeartbeat(t *testing.T) {
	t.Parallel()
	s, _, _, open := parkedServer(t, 50*time.Millisecond)
	c, r := open("bob")
	readUntil(t, c, r, "retry: 3000")
	waitFor(t, func() bool { return s.parked.Len() == 1 && s.Live.Watched() == 1 })
	_ = c.Close()
	waitFor(t, func() bool { return s.parked.Len() == 0 && s.Live.Watched() == 0 })
}

func TestStream_EndStreamsClosesParkedStreamsAndRefusesNewOnes(t *testing.T) {
	t.Parallel()
	s, _, _, open := parkedServer(t, time.Hour)
	c, r := open("cat")
	defer c.Close()
	readUntil(t, c, r, "retry: 3000")
	waitFor(t, func() bool { return s.parked.Len() == 1 })
	s.EndStreams()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(r); err != nil {
		t.Fatalf("stream not closed by EndStreams: %v", err)
	}
	c2, r2 := open("dan")
	defer c2.Close()
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(r2); err != nil {
		t.Fatalf("a stream opened after EndStreams stays open: %v", err)
	}
	if n := s.parked.Len(); n != 0 {
		t.Errorf("%d streams parked after EndStreams", n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStream_ParkedStreamWritesPushedEntriesAndReadsTheFeedOnAGap(t *testing.T) {
	t.Parallel()
	s, pool, notify, open := parkedServer(t, time.Hour)
	c, r := open("fay")
	defer c.Close()
	readUntil(t, c, r, "retry: 3000")
	waitFor(t, func() bool { return s.parked.Len() == 1 })
	ctx := context.Background()
	fay := live.Target{ClinicID: "c1", UserID: "fay"}
	store := func(n int) {
		t.Helper()
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := live.Append(ctx, tx, fay, live.KindUnread, map[string]int{"n": n}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Entry 1 follows on from the cursor: the stream writes what the ping carried (Postgres
	// would have answered its own spelling, {"n": 1}).
	store(1)
	notify.Deliver([]live.Written{{To: fay, Entry: live.Entry{Seq: 1, Kind: live.KindUnread, Body: []byte(`{"n":1,"via":"ping"}`)}}})
	readUntil(t, c, r, `data: {"n":1,"via":"ping"}`)
	// Entry 3 arrives without entry 2 (a lost ping): the stream reads the feed and sends both, in order.
	store(2)
	store(3)
	notify.Deliver([]live.Written{{To: fay, Entry: live.Entry{Seq: 3, Kind: live.KindUnread, Body: []byte(`{"n":3,"via":"ping"}`)}}})
	got := strings.Join(readUntil(t, c, r, `data: {"n": 3}`), "\n")
	if !strings.Contains(got, "id: 2\nevent: unread\ndata: {\"n\": 2}") || strings.Contains(got, "ping") {
		t.Errorf("after a gap the stream should send entries 2 and 3 from the feed: %q", got)
	}
}
