package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// latencyStats summarise durations, in milliseconds.
type latencyStats struct {
	Samples int     `json:"samples"`
	P50     float64 `json:"p50_ms"`
	P95     float64 `json:"p95_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
}

func statsOf(ds []time.Duration) latencyStats {
	if len(ds) == 0 {
		return latencyStats{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(p float64) float64 { return ms(s[min(len(s)-1, int(p*float64(len(s))))]) }
	return latencyStats{Samples: len(s), P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: ms(s[len(s)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (l latencyStats) String() string {
	if l.Samples == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, max %.2f ms (%d samples)", l.P50, l.P95, l.P99, l.Max, l.Samples)
}

// latencies collects durations from many goroutines.
type latencies struct {
	mu sync.Mutex
	ds []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.ds = append(l.ds, d)
	l.mu.Unlock()
}

func (l *latencies) stats() latencyStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return statsOf(l.ds)
}

type sendResult struct {
	Senders         int          `json:"senders"`
	GroupSize       int          `json:"group_size"`
	Seconds         float64      `json:"seconds"`
	Accepted        int64        `json:"accepted"`
	Failed          int64        `json:"failed"`
	PerSecond       float64      `json:"messages_per_s"`
	Latency         latencyStats `json:"latency"`
	RatioToBaseline float64      `json:"ratio_to_baseline,omitempty"`
	// Delivery is each accepted message's time from its send to the message event on another
	// member's stream: how far the projections trail the API at the rate it accepts.
	Delivery   latencyStats `json:"send_to_stream"`
	Missing    int          `json:"missing"`
	LateOver1s int          `json:"later_than_1s"`
	// CaughtUp is how long after the phase the last message reached its stream.
	CaughtUpSeconds float64 `json:"caught_up_after_s"`
}

// sendPhase: every sender posts into its own group as fast as the server answers, while one
// other member of each group watches their stream.
func (c *benchClinic) sendPhase(ctx context.Context, groups []benchGroup, d time.Duration) (sendResult, error) {
	tokens := make([]string, len(groups))
	for i, g := range groups {
		tokens[i] = c.staff(g.listener)
	}
	w := c.watch(ctx, tokens)
	defer w.stop()
	var sent, failed atomic.Int64
	var lat latencies
	type sentMessage struct {
		text string
		at   time.Time
	}
	accepted := make([][]sentMessage, len(groups))
	tag := fmt.Sprintf("send-%d", time.Now().UnixNano())
	phase, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	stop := progressEverySecond(phase, &sent)
	began := time.Now()
	g, gctx := errgroup.WithContext(phase)
	for gi, grp := range groups {
		tok := c.staff(grp.sender)
		g.Go(func() error {
			for n := 0; gctx.Err() == nil; n++ {
				t0 := time.Now()
				text := fmt.Sprintf("%s %d-%d", tag, gi, n)
				status, _, body, err := c.send(gctx, tok, grp.id, text)
				if gctx.Err() != nil {
					return nil
				}
				if err != nil || status != http.StatusCreated {
					if failed.Add(1) > 100 {
						return fmt.Errorf("%w; last: %d %s %v", errTooManyFailures, status, body, err)
					}
					continue
				}
				lat.add(time.Since(t0))
				accepted[gi] = append(accepted[gi], sentMessage{text, t0})
				sent.Add(1)
			}
			return nil
		})
	}
	err := g.Wait()
	elapsed := time.Since(began)
	stop()
	if err != nil {
		return sendResult{}, err
	}
	r := sendResult{Senders: len(groups), GroupSize: len(groups[0].members) + 1, Seconds: elapsed.Seconds(),
		Accepted: sent.Load(), Failed: failed.Load(), PerSecond: float64(sent.Load()) / elapsed.Seconds(),
		Latency: lat.stats()}
	ended := time.Now()
	deadline := ended.Add(5 * time.Minute)
	var delivery []time.Duration
	for {
		delivery, r.Missing, r.LateOver1s = delivery[:0], 0, 0
		var last time.Time
		for _, msgs := range accepted {
			for _, m := range msgs {
				at := w.arrived(m.text)
				if len(at) == 0 {
					r.Missing++
					continue
				}
				if at[0].After(last) {
					last = at[0]
				}
				dd := at[0].Sub(m.at)
				if dd > time.Second {
					r.LateOver1s++
				}
				delivery = append(delivery, dd)
			}
		}
		r.CaughtUpSeconds = max(0, last.Sub(ended).Seconds())
		if r.Missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.Delivery = statsOf(delivery)
	return r, nil
}

// progressEverySecond prints how many messages were sent each second until ctx ends; the
// returned stop waits for it to finish.
func progressEverySecond(ctx context.Context, sent *atomic.Int64) (stop func()) {
	done := make(chan struct{})
	go func() {
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
				benchProgress("  %d messages sent (%d/s)", n, n-last)
				last = n
			}
		}
	}()
	return func() { <-done }
}

type hotResult struct {
	Senders    int            `json:"senders"`
	Messages   int            `json:"messages"`
	Accepted   int            `json:"accepted"`
	Answers    map[string]int `json:"answers"` // "status code" → count; all "201" when healthy
	Seconds    float64        `json:"seconds"`
	PerSecond  float64        `json:"messages_per_s"`
	Latency    latencyStats   `json:"latency"`
	StoredOnce bool           `json:"stored_once"`
}

// hotPhase: n senders post m messages each into one group at the same moment.
func (c *benchClinic) hotPhase(ctx context.Context, n, m int) (hotResult, error) {
	const members = 32
	others := make([]int, 0, members-1)
	for i := 1; i < members; i++ {
		others = append(others, i)
	}
	id, err := c.group(ctx, 0, others, fmt.Sprintf("Hot group of %d senders", n))
	if err != nil {
		return hotResult{}, err
	}
	var lat latencies
	var mu sync.Mutex
	answers := map[string]int{}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		tok := c.staff(i % members)
		go func() {
			defer wg.Done()
			<-start
			for k := range m {
				t0 := time.Now()
				status, _, body, err := c.send(ctx, tok, id, fmt.Sprintf("hot %d-%d", i, k))
				answer := fmt.Sprint(status)
				if err != nil {
					answer = "error"
				} else if status != http.StatusCreated {
					var p struct{ Code string }
					_ = json.Unmarshal(body, &p)
					answer += " " + p.Code
				} else {
					lat.add(time.Since(t0))
				}
				mu.Lock()
				answers[answer]++
				mu.Unlock()
			}
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(began)
	r := hotResult{Senders: n, Messages: n * m, Accepted: answers["201"], Answers: answers, Seconds: elapsed.Seconds(),
		PerSecond: float64(answers["201"]) / elapsed.Seconds(), Latency: lat.stats()}
	// Read the group back: every accepted message once, in one order.
	texts, err := c.history(ctx, c.staff(1), id)
	if err != nil {
		return r, err
	}
	seen := map[string]bool{}
	r.StoredOnce = true
	for _, t := range texts {
		if seen[t] {
			r.StoredOnce = false
		}
		seen[t] = true
	}
	r.StoredOnce = r.StoredOnce && len(seen) == r.Accepted
	return r, nil
}

// history reads every text message of a conversation (oldest pages last), waiting for the
// read models to have caught up with everything sent so far.
func (c *benchClinic) history(ctx context.Context, token, id string) ([]string, error) {
	// A probe write, then a read with its position: everything before it is in the read models.
	status, h, body, err := c.send(ctx, token, id, "probe")
	if err != nil || status != http.StatusCreated {
		return nil, fmt.Errorf("probe: %d %s %v", status, body, err)
	}
	pos := h.Get("Huddle-Position")
	var texts []string
	before := ""
	for {
		path := "/v1/conversations/" + id + "/messages?limit=100"
		if before != "" {
			path += "&before=" + before
		}
		status, page, err := c.readAt(ctx, path, token, pos, 5*time.Minute, nil)
		if err != nil || status != http.StatusOK {
			return nil, fmt.Errorf("history: %d %s %v", status, page, err)
		}
		var out struct {
			Messages []struct {
				Text string `json:"text"`
				Kind string `json:"kind"`
			} `json:"messages"`
			NextCursor string `json:"next_cursor"`
		}
		if err := json.Unmarshal(page, &out); err != nil {
			return nil, err
		}
		for _, m := range out.Messages {
			if m.Kind == "text" && m.Text != "probe" {
				texts = append(texts, m.Text)
			}
		}
		if out.NextCursor == "" {
			return texts, nil
		}
		before = out.NextCursor
	}
}

// catchUp waits until the read models have applied everything written so far (a probe write,
// then a read with its position), so one phase's backlog does not count against the next.
func (c *benchClinic) catchUp(ctx context.Context, g benchGroup) (time.Duration, error) {
	t0 := time.Now()
	tok := c.staff(g.sender)
	status, h, body, err := c.send(ctx, tok, g.id, "catch-up probe")
	if err != nil || status != http.StatusCreated {
		return 0, fmt.Errorf("catch-up probe: %d %s %v", status, body, err)
	}
	status, body, err = c.readAt(ctx, "/v1/conversations/"+g.id+"/messages?limit=1", tok, h.Get("Huddle-Position"), 10*time.Minute,
		func() { benchProgress("  projections still catching up after %v", time.Since(t0).Round(time.Second)) })
	if err != nil || status != http.StatusOK {
		return 0, fmt.Errorf("catch-up: %d %s %v", status, body, err)
	}
	return time.Since(t0), nil
}

// readAt GETs path with Huddle-Min-Position pos, again while the read models answer 503 (still
// catching up) and limit has not passed; waiting, if not nil, is called before each retry.
func (c *benchClinic) readAt(ctx context.Context, path, token, pos string, limit time.Duration, waiting func()) (int, []byte, error) {
	began := time.Now()
	for {
		status, _, body, err := c.do(ctx, "GET", path, token, nil, "Huddle-Min-Position", pos)
		if err != nil || status != http.StatusServiceUnavailable || time.Since(began) > limit {
			return status, body, err
		}
		if waiting != nil {
			waiting()
		}
	}
}

// streamWatch follows users' /v1/stream and records when each message text arrived.
type streamWatch struct {
	mu       sync.Mutex
	arrivals map[string][]time.Time // text → one arrival per stream that showed it
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	ready    sync.WaitGroup
	errs     atomic.Int64
}

// watch opens one stream per token; it returns once every stream answered.
func (c *benchClinic) watch(ctx context.Context, tokens []string) *streamWatch {
	ctx, cancel := context.WithCancel(ctx)
	w := &streamWatch{arrivals: map[string][]time.Time{}, cancel: cancel}
	for _, tok := range tokens {
		w.wg.Add(1)
		w.ready.Add(1)
		go func() {
			defer w.wg.Done()
			if err := c.follow(ctx, tok, w); err != nil && ctx.Err() == nil {
				w.errs.Add(1)
			}
		}()
	}
	w.ready.Wait()
	return w
}

func (w *streamWatch) stop() { w.cancel(); w.wg.Wait() }

func (w *streamWatch) arrived(text string) []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.arrivals[text]
}

// follow reads one SSE stream until ctx ends, recording message events by text.
func (c *benchClinic) follow(ctx context.Context, token string, w *streamWatch) error {
	readied := false
	defer func() {
		if !readied {
			w.ready.Done()
		}
	}()
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/v1/stream", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	res, err := (&http.Client{}).Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("stream: %d", res.StatusCode)
	}
	readied = true
	w.ready.Done()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	event := ""
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:") && event == "message":
			at := time.Now()
			var m struct {
				Text string `json:"text"`
			}
			if json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(line, "data:"))), &m) == nil {
				w.mu.Lock()
				w.arrivals[m.Text] = append(w.arrivals[m.Text], at)
				w.mu.Unlock()
			}
		case line == "":
			event = ""
		}
	}
	return sc.Err()
}

type pacedResult struct {
	Rate      int          `json:"target_messages_per_s"`
	Seconds   float64      `json:"seconds"`
	Accepted  int64        `json:"accepted"`
	Failed    int64        `json:"failed"`
	PerSecond float64      `json:"messages_per_s"`
	Send      latencyStats `json:"send_latency"`
	// Delivery: from the start of each send to the message event on another member's stream.
	Delivery   latencyStats `json:"send_to_stream"`
	Delivered  int          `json:"delivered"`
	Missing    int          `json:"missing"`
	LateOver2s int          `json:"later_than_2s"`
	CPU        *cpuResult   `json:"cpu,omitempty"`
}

// pacedPhase sends rate messages/s across the groups for d, watching one other member of
// each group, and measures CPU per accepted message.
func (c *benchClinic) pacedPhase(ctx context.Context, groups []benchGroup, rate int, d time.Duration, procs benchProcesses) (pacedResult, error) {
	tokens := make([]string, len(groups))
	for i, g := range groups {
		tokens[i] = c.staff(g.listener)
	}
	w := c.watch(ctx, tokens)
	defer w.stop()
	total := int(float64(rate) * d.Seconds())
	sentAt := make([]time.Time, total)
	texts := make([]string, total)
	ok := make([]bool, total)
	var accepted, failed atomic.Int64
	var lat latencies
	jobs := make(chan int, total)
	var wg sync.WaitGroup
	for range min(256, max(8, rate/10)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				g := groups[i%len(groups)]
				t0 := time.Now()
				sentAt[i] = t0
				status, _, _, err := c.send(ctx, c.staff(g.sender), g.id, texts[i])
				if err != nil || status != http.StatusCreated {
					failed.Add(1)
					continue
				}
				lat.add(time.Since(t0))
				ok[i] = true
				accepted.Add(1)
			}
		}()
	}
	before := procs.sample()
	began := time.Now()
	tag := fmt.Sprintf("paced-%d-%d", rate, began.UnixNano())
	for i := range total {
		texts[i] = fmt.Sprintf("%s %d", tag, i)
		if wait := time.Until(began.Add(time.Duration(float64(i) / float64(rate) * float64(time.Second)))); wait > 0 {
			time.Sleep(wait)
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(began)
	r := pacedResult{Rate: rate, Seconds: elapsed.Seconds(), Accepted: accepted.Load(), Failed: failed.Load(),
		PerSecond: float64(accepted.Load()) / elapsed.Seconds(), Send: lat.stats()}
	// Let late deliveries arrive (bounded), then count.
	deadline := time.Now().Add(30 * time.Second)
	var delivery []time.Duration
	var after cpuSample
	for {
		delivery, r.Missing, r.LateOver2s = delivery[:0], 0, 0
		for i := range total {
			if !ok[i] {
				continue
			}
			at := w.arrived(texts[i])
			if len(at) == 0 {
				r.Missing++
				continue
			}
			dd := at[0].Sub(sentAt[i])
			if dd > 2*time.Second {
				r.LateOver2s++
			}
			delivery = append(delivery, dd)
		}
		if r.Missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	after = procs.sample()
	r.CPU = cpuPerMessage(before, after, accepted.Load())
	r.Delivered = len(delivery)
	r.Delivery = statsOf(delivery)
	return r, nil
}

type fanoutResult struct {
	Members   int          `json:"members"`
	Messages  int          `json:"messages"`
	Expected  int          `json:"expected_deliveries"`
	Delivered int          `json:"delivered"`
	Delivery  latencyStats `json:"send_to_stream"`
}

// fanoutPhase: one group of n members, all watching their streams; m messages from member 0.
func (c *benchClinic) fanoutPhase(ctx context.Context, n, m int) (fanoutResult, error) {
	others := make([]int, 0, n-1)
	for i := 1; i < n; i++ {
		others = append(others, i)
	}
	id, err := c.group(ctx, 0, others, fmt.Sprintf("Fan-out group of %d", n))
	if err != nil {
		return fanoutResult{}, err
	}
	tokens := make([]string, 0, n-1)
	for _, o := range others {
		tokens = append(tokens, c.staff(o))
	}
	w := c.watch(ctx, tokens)
	defer w.stop()
	tok := c.staff(0)
	sentAt := make([]time.Time, m)
	tag := fmt.Sprintf("fanout-%d", time.Now().UnixNano())
	for i := range m {
		sentAt[i] = time.Now()
		if status, _, body, err := c.send(ctx, tok, id, fmt.Sprintf("%s %d", tag, i)); err != nil || status != http.StatusCreated {
			return fanoutResult{}, fmt.Errorf("fanout send: %d %s %v", status, body, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := fanoutResult{Members: n, Messages: m, Expected: m * (n - 1)}
	deadline := time.Now().Add(30 * time.Second)
	var delivery []time.Duration
	for {
		delivery = delivery[:0]
		for i := range m {
			for _, at := range w.arrived(fmt.Sprintf("%s %d", tag, i)) {
				delivery = append(delivery, at.Sub(sentAt[i]))
			}
		}
		if len(delivery) >= r.Expected || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.Delivered = len(delivery)
	r.Delivery = statsOf(delivery)
	return r, nil
}

// readPhase: post, then read back through the read models with Huddle-Min-Position.
func (c *benchClinic) readPhase(ctx context.Context, g benchGroup, rounds int) (latencyStats, error) {
	tok := c.staff(g.sender)
	var visible []time.Duration
	for n := 0; n < rounds && ctx.Err() == nil; n++ {
		t0 := time.Now()
		status, h, body, err := c.send(ctx, tok, g.id, "read-your-writes")
		if err != nil || status != http.StatusCreated {
			return latencyStats{}, fmt.Errorf("read phase send: %d %s %v", status, body, err)
		}
		status, body, err = c.readAt(ctx, "/v1/conversations/"+g.id+"/messages?limit=1", tok, h.Get("Huddle-Position"), time.Minute, nil)
		if err != nil || status != http.StatusOK {
			return latencyStats{}, fmt.Errorf("read phase read: %d %s %v", status, body, err)
		}
		visible = append(visible, time.Since(t0))
	}
	return statsOf(visible), nil
}
