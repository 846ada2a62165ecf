package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/huddle-chat/huddle/api"
)

func init() {
	register(&Command{
		Name:    "bench",
		Summary: "measure a running server: command throughput and write-to-read latency",
		Usage: `Usage: huddle bench [--url URL] [--senders N] [--group-size N] [--duration D] [--reads N]

Drives a running huddle serve over HTTP, as frontends would, in a fresh clinic of its own
(bench-<random>), with tokens minted from the server's JWT secret (run it with the server's
environment). Two phases:

  1. send: --senders concurrent staff each post text messages into their own group of
     --group-size members for --duration; prints messages/s and latency p50/p95/p99.
  2. read-your-writes: --reads times, post a message and read it back with
     Huddle-Min-Position; prints how long until the read models showed it (p50/p95/p99).

A line of progress per second goes to stderr. Measure on a quiet machine and say which.`,
		Run: bench,
	})
}

type benchClient struct {
	base string
	http *http.Client
}

func (b benchClient) do(ctx context.Context, method, path, token string, body any, header ...string) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return 0, nil, nil, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.base+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := b.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, out, err
}

// must performs a setup request and fails unless it answers want.
func (b benchClient) must(ctx context.Context, want int, method, path, token string, body any) ([]byte, error) {
	status, _, out, err := b.do(ctx, method, path, token, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if status != want {
		return nil, fmt.Errorf("%s %s: %d %s", method, path, status, out)
	}
	return out, nil
}

func bench(ctx context.Context, args []string) error {
	fs := newFlagSet(commands["bench"])
	url := fs.String("url", "", "server base URL (default: http://HUDDLE_HTTP_ADDR)")
	senders := fs.Int("senders", 8, "concurrent senders in the send phase")
	groupSize := fs.Int("group-size", 5, "members of each sender's group (a message fans out to all)")
	duration := fs.Duration("duration", 10*time.Second, "length of the send phase")
	reads := fs.Int("reads", 200, "messages in the read-your-writes phase")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usagef("unexpected arguments: %v", fs.Args())
	case *senders < 1 || *senders > 1000:
		return usagef("--senders must be 1..1000")
	case *groupSize < 2 || *groupSize > 256:
		return usagef("--group-size must be 2..256")
	case *duration <= 0 || *reads < 0:
		return usagef("--duration must be positive and --reads not negative")
	}
	cfg, _, err := setup()
	if err != nil {
		return err
	}
	if *url == "" {
		*url = "http://" + cfg.HTTPAddr
	}
	b := benchClient{base: *url, http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *senders + 4}}}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	clinic := "bench-" + hex.EncodeToString(suffix)
	token := func(user string, role string) string {
		t, _ := api.MintToken(cfg.JWTSecret, user, clinic, []string{role}, time.Hour)
		return t
	}
	admin := token("bench-admin", api.RoleAdmin)

	fmt.Fprintf(stderr, "setting up clinic %s on %s: %d senders, groups of %d\n", clinic, *url, *senders, *groupSize)
	if _, err := b.must(ctx, 200, "PUT", "/v1/admin/rooms/bench-room", admin, map[string]string{"name": "Bench room"}); err != nil {
		return fmt.Errorf("setup (is huddle serve running at %s with the same HUDDLE_JWT_SECRET?): %w", *url, err)
	}
	users := *senders + *groupSize
	for i := 0; i < users; i++ {
		id := fmt.Sprintf("u%d", i)
		if _, err := b.must(ctx, 200, "PUT", "/v1/admin/users/"+id, admin, map[string]string{"name": "Bench user " + id, "email": id + "@bench.test"}); err != nil {
			return err
		}
		if _, err := b.must(ctx, 204, "PUT", "/v1/admin/rooms/bench-room/members/"+id, admin, nil); err != nil {
			return err
		}
	}
	groups := make([]string, *senders)
	for i := range groups {
		var others []string
		for j := 1; j < *groupSize; j++ {
			others = append(others, fmt.Sprintf("u%d", (i+j)%users))
		}
		out, err := b.must(ctx, 201, "POST", "/v1/conversations", token(fmt.Sprintf("u%d", i), api.RoleStaff),
			map[string]any{"participant_ids": others, "title": fmt.Sprintf("Bench group %d", i)})
		if err != nil {
			return err
		}
		var conv struct{ ID string }
		if err := json.Unmarshal(out, &conv); err != nil {
			return err
		}
		groups[i] = conv.ID
	}

	// Phase 1: send.
	var sent, failed atomic.Int64
	latencies := make([][]time.Duration, *senders)
	phase, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()
	progressDone := make(chan struct{})
	go benchProgress(phase, progressDone, &sent)
	began := time.Now()
	g, gctx := errgroup.WithContext(phase)
	for i := 0; i < *senders; i++ {
		i := i
		tok := token(fmt.Sprintf("u%d", i), api.RoleStaff)
		g.Go(func() error {
			for n := 0; gctx.Err() == nil; n++ {
				t0 := time.Now()
				status, _, body, err := b.do(gctx, "POST", "/v1/conversations/"+groups[i]+"/messages", tok, map[string]string{"text": fmt.Sprintf("bench message %d", n)})
				if gctx.Err() != nil {
					return nil
				}
				if err != nil || status != http.StatusCreated {
					failed.Add(1)
					if failed.Load() > 100 {
						return fmt.Errorf("too many failures; last: %d %s %v", status, body, err)
					}
					continue
				}
				latencies[i] = append(latencies[i], time.Since(t0))
				sent.Add(1)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	elapsed := time.Since(began)
	<-progressDone
	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	fmt.Fprintf(stdout, "send: %d messages in %v = %.0f messages/s (%d senders, groups of %d, %d failed)\n",
		sent.Load(), elapsed.Round(time.Millisecond), float64(sent.Load())/elapsed.Seconds(), *senders, *groupSize, failed.Load())
	fmt.Fprintf(stdout, "send latency: %s\n", percentiles(all))

	// Phase 2: write, then read it back through the read models. First let the projectors
	// work off the backlog the send phase may have left (a saturated machine queues events).
	if *reads > 0 {
		tok := token("u0", api.RoleStaff)
		caught := time.Now()
		for {
			status, h, body, err := b.do(ctx, "POST", "/v1/conversations/"+groups[0]+"/messages", tok, map[string]string{"text": "catch-up probe"})
			if err != nil || status != http.StatusCreated {
				return fmt.Errorf("catch-up probe: %d %s %v", status, body, err)
			}
			status, _, body, err = b.do(ctx, "GET", "/v1/conversations/"+groups[0]+"/messages?limit=1", tok, nil, "Huddle-Min-Position", h.Get("Huddle-Position"))
			if err == nil && status == http.StatusOK {
				break
			}
			if err != nil || status != http.StatusServiceUnavailable || time.Since(caught) > 5*time.Minute {
				return fmt.Errorf("catch-up: %d %s %v", status, body, err)
			}
			fmt.Fprintf(stderr, "  projections still catching up after %v\n", time.Since(caught).Round(time.Second))
		}
		behind := time.Since(caught)
		fmt.Fprintf(stdout, "projections caught up with the send phase %v after it ended: %.0f messages/s projected (sent, over the send phase plus that)\n",
			behind.Round(time.Millisecond), float64(sent.Load())/(elapsed+behind).Seconds())
		var visible []time.Duration
		for n := 0; n < *reads && ctx.Err() == nil; n++ {
			t0 := time.Now()
			status, h, body, err := b.do(ctx, "POST", "/v1/conversations/"+groups[0]+"/messages", tok, map[string]string{"text": "read-your-writes"})
			if err != nil || status != http.StatusCreated {
				return fmt.Errorf("read phase send: %d %s %v", status, body, err)
			}
			status, _, body, err = b.do(ctx, "GET", "/v1/conversations/"+groups[0]+"/messages?limit=1", tok, nil, "Huddle-Min-Position", h.Get("Huddle-Position"))
			if err != nil || status != http.StatusOK {
				return fmt.Errorf("read phase read: %d %s %v", status, body, err)
			}
			visible = append(visible, time.Since(t0))
		}
		fmt.Fprintf(stdout, "write-to-read (POST, then GET with Huddle-Min-Position), %d rounds: %s\n", len(visible), percentiles(visible))
	}
	host, _ := os.Hostname()
	fmt.Fprintf(stdout, "machine: %s\n", host)
	return nil
}

func benchProgress(ctx context.Context, done chan<- struct{}, sent *atomic.Int64) {
	defer close(done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			n := sent.Load()
			fmt.Fprintf(stderr, "  %d messages sent (%d/s)\n", n, n-last)
			last = n
		}
	}
}

// percentiles formats p50/p95/p99/max of ds.
func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return fmt.Sprintf("p50 %v, p95 %v, p99 %v, max %v", at(0.50).Round(10*time.Microsecond),
		at(0.95).Round(10*time.Microsecond), at(0.99).Round(10*time.Microsecond), s[len(s)-1].Round(10*time.Microsecond))
}
