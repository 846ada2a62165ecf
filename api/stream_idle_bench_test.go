package api

import (
	"bufio"
	"fmt"
	"net"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/internal/testenv"
	"github.com/huddle-chat/huddle/live"
)

// BenchmarkIdleStreams opens HUDDLE_BENCH_STREAMS (default 2000) idle GET /v1/stream connections
// to one server and reports what each costs the process: heap and goroutine stacks in use after
// GC, per stream. The clients' sockets live in the same process, so it is an upper bound.
//
//	go test -run '^$' -bench IdleStreams -benchtime 1x ./api/
func BenchmarkIdleStreams(b *testing.B) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("HUDDLE_BENCH_STREAMS")); err == nil && v > 0 {
		n = v
	}
	pool, _ := testenv.Postgres(b)
	broker := testenv.NATS(b)
	nc, err := broker.Connect()
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	secret := []byte("idle-secret-idle-secret-idle-secret")
	srv := httptest.NewServer(New(Deps{Logger: testenv.Logger(b), JWTSecret: secret, Live: live.NewHub(nc), Feed: live.NewFeed(pool)}).Handler())
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	inUse := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse + m.StackInuse
	}
	for i := 0; i < b.N; i++ {
		before, g0 := inUse(), runtime.NumGoroutine()
		conns := make([]net.Conn, 0, n)
		for j := 0; j < n; j++ {
			c, err := net.Dial("tcp", u.Host)
			if err != nil {
				b.Fatal(err)
			}
			tok, _ := MintToken(secret, fmt.Sprintf("idle%05d", j), "c1", []string{RoleStaff}, time.Hour)
			fmt.Fprintf(c, "GET /v1/stream HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", u.Host, tok)
			line, err := bufio.NewReaderSize(c, 64).ReadString('\n')
			if err != nil || !strings.Contains(line, "200") {
				b.Fatalf("stream %d: %q %v", j, line, err)
			}
			conns = append(conns, c)
		}
		after, g1 := inUse(), runtime.NumGoroutine()
		b.ReportMetric(float64(after-before)/float64(n), "bytes/stream")
		b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/stream")
		for _, c := range conns {
			_ = c.Close()
		}
	}
}
