package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

// idleResult is what idle live streams cost the server, per stream: the Go heap and goroutine
// stacks in use (from its /metrics, as BenchmarkIdleStreams measures in process) and its
// resident set (from /proc, when it runs on this machine).
type idleResult struct {
	Requested           int     `json:"requested"`
	Opened              int     `json:"opened"`
	HeapStackPerStream  float64 `json:"heap_and_stack_bytes_per_stream"`
	RSSPerStream        float64 `json:"rss_bytes_per_stream,omitempty"`
	GoroutinesPerStream float64 `json:"goroutines_per_stream"`
	Seconds             float64 `json:"seconds_to_open"`
}

// idleSlack is how many descriptors the bench keeps for itself beyond its streams.
const idleSlack = 200

// idlePhase opens n idle GET /v1/stream connections (the bench's users in turn: a user may
// have several tabs), waits for the server to settle, measures it, and closes them.
func (c *benchClinic) idlePhase(ctx context.Context, n, users int, procs benchProcesses) (idleResult, []string, error) {
	var notes []string
	if limit := raiseFileLimit(); limit > 0 && uint64(n+idleSlack) > limit {
		notes = append(notes, fmt.Sprintf("idle: %d streams asked, %d opened: this process may hold %d descriptors (ulimit -n; the server needs one a stream too)", n, int(limit)-idleSlack, limit))
		n = int(limit) - idleSlack
	}
	u, err := url.Parse(c.base)
	if err != nil {
		return idleResult{}, notes, err
	}
	before, err := c.serverMemory(ctx, procs.huddle)
	if err != nil {
		return idleResult{}, notes, err
	}
	conns := make([]net.Conn, n)
	defer func() {
		for _, conn := range conns {
			if conn != nil {
				_ = conn.Close()
			}
		}
	}()
	began := time.Now()
	var opened atomic.Int64
	progress, endProgress := context.WithCancel(ctx)
	stop := progressEverySecond(progress, &opened)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range n {
		g.Go(func() error {
			conn, err := openIdleStream(gctx, u.Host, c.staff(i%users))
			if err != nil {
				return fmt.Errorf("idle stream %d: %w", i, err)
			}
			conns[i] = conn
			opened.Add(1)
			return nil
		})
	}
	err = g.Wait()
	endProgress()
	stop()
	if err != nil {
		return idleResult{}, notes, err
	}
	r := idleResult{Requested: n, Opened: n, Seconds: time.Since(began).Seconds()}
	time.Sleep(2 * time.Second) // let the handshakes' garbage be collected
	after, err := c.serverMemory(ctx, procs.huddle)
	if err != nil {
		return idleResult{}, notes, err
	}
	per := func(a, b float64) float64 { return (a - b) / float64(n) }
	r.HeapStackPerStream = per(after.heapStack, before.heapStack)
	r.GoroutinesPerStream = per(after.goroutines, before.goroutines)
	if before.rss > 0 && after.rss > 0 {
		r.RSSPerStream = per(after.rss, before.rss)
	}
	return r, notes, nil
}

func openIdleStream(ctx context.Context, host, token string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET /v1/stream HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n", host, token); err != nil {
		_ = conn.Close()
		return nil, err
	}
	r := bufio.NewReaderSize(conn, 256)
	status, err := r.ReadString('\n')
	if err != nil || !strings.Contains(status, " 200 ") {
		_ = conn.Close()
		return nil, fmt.Errorf("answer %q: %v", strings.TrimSpace(status), err)
	}
	for { // the head, then "retry:": the stream is set up
		line, err := r.ReadString('\n')
		if err != nil {
			_ = conn.Close()
			return nil, err
		}
		if strings.HasPrefix(line, "retry:") {
			break
		}
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// raiseFileLimit lifts this process's descriptor limit to its hard limit and returns it (0:
// unknown).
func raiseFileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
	return l.Cur
}

type serverMemory struct{ heapStack, goroutines, rss float64 }

// serverMemory reads the server's Go heap and stacks in use and goroutines from /metrics, and
// its resident set from /proc when pid is known.
func (c *benchClinic) serverMemory(ctx context.Context, pid int) (serverMemory, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/metrics", nil)
	if err != nil {
		return serverMemory{}, err
	}
	res, err := c.http.Do(req)
	if err != nil {
		return serverMemory{}, fmt.Errorf("server metrics: %w", err)
	}
	defer res.Body.Close()
	var m serverMemory
	found := 0
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes":
			m.heapStack += v
			found++
		case "go_goroutines":
			m.goroutines = v
			found++
		}
	}
	if found < 3 {
		return serverMemory{}, fmt.Errorf("server metrics: go_memstats_heap_inuse_bytes, go_memstats_stack_inuse_bytes or go_goroutines missing from %s/metrics", c.base)
	}
	if pid > 0 {
		if f, err := procStat(pid); err == nil {
			m.rss = float64(f.rssPages * int64(os.Getpagesize()))
		}
	}
	return m, nil
}
