package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/huddle-chat/huddle/api"
	"github.com/huddle-chat/huddle/internal/app"
)

func init() {
	register(&Command{
		Name:    "bench",
		Summary: "measure a running server: throughput, hot conversations, CPU per message, live delivery",
		Usage: `Usage: huddle bench [flags]

Drives a running huddle serve over HTTP, as frontends would, in a fresh clinic of its own
(bench-<random>), with tokens minted from the server's JWT secret: run it with the server's
environment (HUDDLE_DATA_DIR or HUDDLE_JWT_SECRET, and HUDDLE_DATABASE_URL when external).
Start the server with HUDDLE_RATE_PER_USER=0: the bench sends far faster than a person.

Phases, in order (each can be turned off):

  baseline   pgbench inserting one row shaped like a stored event, --senders clients, on the
             server's own Postgres cluster (--pgbench-seconds, 0: skip): the floor cost of
             storing an event with the cluster's durability settings, which are reported.
  send       --senders clients each post into their own group of --group-size members for
             --duration; messages/s, latency, and the ratio to the baseline.
  hot        for each count in --hot-senders, that many clients post --hot-messages each into
             ONE group at once: every answer must be 201; messages/s of one conversation.
  paced      for each rate in --rates (messages/s, across the send groups) for --paced-duration:
             CPU per accepted message of huddle serve and its Postgres (from /proc, when they
             run on this machine), and the time from each send to the message event on another
             member's /v1/stream.
  fanout     one group of --fanout members, all connected to /v1/stream; --fanout-messages
             messages; the time until each member's stream shows each one.
  idle       --idle live streams left open (the bench's users in turn): the server's Go heap
             and stacks, resident set and goroutines per stream, from its /metrics and /proc.
  read       --reads times: post, then read back with Huddle-Min-Position (write-to-read).

--json prints one JSON object with every figure instead of the text report. Progress goes to
stderr. Measure on a quiet machine, and say which.`,
		Run: bench,
	})
}

type benchFlags struct {
	url            string
	senders        int
	groupSize      int
	duration       time.Duration
	pgbenchSeconds int
	hotSenders     []int
	hotMessages    int
	rates          []int
	pacedDuration  time.Duration
	fanout         int
	fanoutMessages int
	idle           int
	reads          int
	serverPID      int
	json           bool
}

func parseBenchFlags(args []string) (benchFlags, error) {
	var f benchFlags
	fs := newFlagSet(commands["bench"])
	fs.StringVar(&f.url, "url", "", "server base URL (default: http://HUDDLE_HTTP_ADDR)")
	fs.IntVar(&f.senders, "senders", 8, "concurrent senders (and pgbench clients); each has its own group")
	fs.IntVar(&f.groupSize, "group-size", 4, "members of each sender's group (a message fans out to all)")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "length of the send phase (0: skip)")
	fs.IntVar(&f.pgbenchSeconds, "pgbench-seconds", 10, "length of the pgbench baseline (0: skip)")
	hot := fs.String("hot-senders", "32,200", "comma-separated counts of concurrent senders into one group (empty: skip)")
	fs.IntVar(&f.hotMessages, "hot-messages", 25, "messages each hot sender posts")
	rates := fs.String("rates", "200,1000", "comma-separated send rates (messages/s) of the paced phase (empty: skip)")
	fs.DurationVar(&f.pacedDuration, "paced-duration", 10*time.Second, "length of each paced run")
	fs.IntVar(&f.fanout, "fanout", 100, "members of the fan-out group, all connected (0: skip)")
	fs.IntVar(&f.fanoutMessages, "fanout-messages", 20, "messages sent into the fan-out group")
	fs.IntVar(&f.idle, "idle", 2000, "idle live streams to open and measure the server with (0: skip; the goal is 20,000 a server: raise ulimit -n)")
	fs.IntVar(&f.reads, "reads", 200, "messages in the read-your-writes phase (0: skip)")
	fs.IntVar(&f.serverPID, "server-pid", 0, "pid of huddle serve for CPU figures (default: found in /proc)")
	fs.BoolVar(&f.json, "json", false, "print the report as one JSON object")
	if err := parseFlags(fs, args); err != nil {
		return f, err
	}
	var err error
	if f.hotSenders, err = intList(*hot); err != nil {
		return f, usagef("--hot-senders: %v", err)
	}
	if f.rates, err = intList(*rates); err != nil {
		return f, usagef("--rates: %v", err)
	}
	switch {
	case fs.NArg() > 0:
		return f, usagef("unexpected arguments: %v", fs.Args())
	case f.senders < 1 || f.senders > 1000:
		return f, usagef("--senders must be 1..1000")
	case f.groupSize < 2 || f.groupSize > 256:
		return f, usagef("--group-size must be 2..256")
	case f.duration < 0 || f.reads < 0 || f.pgbenchSeconds < 0 || f.pacedDuration <= 0:
		return f, usagef("--duration, --reads and --pgbench-seconds must not be negative, --paced-duration positive")
	case f.hotMessages < 1 || f.fanoutMessages < 1:
		return f, usagef("--hot-messages and --fanout-messages must be positive")
	case f.idle < 0 || f.idle > 1_000_000:
		return f, usagef("--idle must be 0..1000000")
	case f.fanout != 0 && (f.fanout < 2 || f.fanout > 1000):
		return f, usagef("--fanout must be 0 or 2..1000")
	}
	for _, n := range f.hotSenders {
		if n < 1 || n > 2000 {
			return f, usagef("--hot-senders: each count must be 1..2000")
		}
	}
	for _, r := range f.rates {
		if r < 1 || r > 100_000 {
			return f, usagef("--rates: each rate must be 1..100000")
		}
	}
	return f, nil
}

// intList parses "1,2,3" (empty: none).
func intList(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		n, err := strconv.Atoi(part)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", part)
		}
		out = append(out, n)
	}
	return out, nil
}

// benchReport is everything a run measured (--json prints it as it is).
type benchReport struct {
	Machine        machineInfo       `json:"machine"`
	Server         string            `json:"server"`
	Durability     map[string]string `json:"durability,omitempty"`
	Baseline       *baselineResult   `json:"baseline,omitempty"`
	Send           *sendResult       `json:"send,omitempty"`
	Hot            []hotResult       `json:"hot,omitempty"`
	Paced          []pacedResult     `json:"paced,omitempty"`
	Fanout         *fanoutResult     `json:"fanout,omitempty"`
	Idle           *idleResult       `json:"idle,omitempty"`
	ReadYourWrites *latencyStats     `json:"read_your_writes,omitempty"`
	Notes          []string          `json:"notes,omitempty"`
}

func bench(ctx context.Context, args []string) error {
	f, err := parseBenchFlags(args)
	if err != nil {
		return err
	}
	cfg, log, err := setup()
	if err != nil {
		return err
	}
	if f.url == "" {
		f.url = "http://" + cfg.HTTPAddr
	}
	r := benchReport{Machine: readMachine(), Server: f.url}
	b := benchClient{base: f.url, http: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: 512, MaxConnsPerHost: 0, IdleConnTimeout: time.Minute}}}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	clinic := "bench-" + hex.EncodeToString(suffix)
	c := &benchClinic{benchClient: b, clinic: clinic, secret: cfg.JWTSecret}

	benchProgress("setting up clinic %s on %s", clinic, f.url)
	users := max(f.senders+f.groupSize, 33, f.fanout)
	if err := c.setup(ctx, users); err != nil {
		return fmt.Errorf("setup (is huddle serve running at %s with the same HUDDLE_JWT_SECRET?): %w", f.url, err)
	}
	groups, err := c.sendGroups(ctx, f.senders, f.groupSize, users)
	if err != nil {
		return err
	}
	// The server's cluster: durability settings, the pgbench baseline, the postmaster's pid.
	// Opened once the server answered, so this attaches to the cluster serve runs and never
	// starts (and then stops) one of its own under a server that is still starting.
	var db *app.Database
	quiet := log.With()
	if opened, err := app.OpenDatabase(ctx, cfg, quiet); err != nil {
		r.Notes = append(r.Notes, "database not reachable from the bench ("+err.Error()+"): no baseline, no Postgres CPU")
	} else {
		db = opened
		defer db.Close(context.WithoutCancel(ctx))
		r.Durability = durability(ctx, db.Pool)
	}
	procs := findProcesses(cfg, f.serverPID)
	r.Notes = append(r.Notes, procs.notes...)

	if db != nil && f.pgbenchSeconds > 0 {
		benchProgress("baseline: pgbench, %d clients, %d s", f.senders, f.pgbenchSeconds)
		base, err := runBaseline(ctx, db, f.senders, f.pgbenchSeconds)
		if err != nil {
			r.Notes = append(r.Notes, "no baseline: "+err.Error())
		} else {
			r.Baseline = &base
		}
	}
	if f.duration > 0 {
		benchProgress("send: %d senders, groups of %d, %v", f.senders, f.groupSize, f.duration)
		s, err := c.sendPhase(ctx, groups, f.duration)
		if err != nil {
			return err
		}
		if r.Baseline != nil && r.Baseline.InsertsPerSecond > 0 {
			s.RatioToBaseline = s.PerSecond / r.Baseline.InsertsPerSecond
		}
		r.Send = &s
	}
	for _, n := range f.hotSenders {
		benchProgress("hot: %d senders × %d messages into one group", n, f.hotMessages)
		h, err := c.hotPhase(ctx, n, f.hotMessages)
		if err != nil {
			return err
		}
		r.Hot = append(r.Hot, h)
	}
	for _, rate := range f.rates {
		if behind, err := c.catchUp(ctx, groups[0]); err != nil {
			return err
		} else if behind > time.Second {
			r.Notes = append(r.Notes, fmt.Sprintf("before the %d/s run the projections needed %v to catch up", rate, behind.Round(time.Millisecond)))
		}
		benchProgress("paced: %d messages/s for %v", rate, f.pacedDuration)
		p, err := c.pacedPhase(ctx, groups, rate, f.pacedDuration, procs)
		if err != nil {
			return err
		}
		r.Paced = append(r.Paced, p)
	}
	if f.fanout > 0 {
		if _, err := c.catchUp(ctx, groups[0]); err != nil {
			return err
		}
		benchProgress("fanout: a group of %d, all connected, %d messages", f.fanout, f.fanoutMessages)
		fo, err := c.fanoutPhase(ctx, f.fanout, f.fanoutMessages)
		if err != nil {
			return err
		}
		r.Fanout = &fo
	}
	if f.idle > 0 {
		benchProgress("idle: %d live streams", f.idle)
		id, notes, err := c.idlePhase(ctx, f.idle, users, procs)
		r.Notes = append(r.Notes, notes...)
		if err != nil {
			return err
		}
		r.Idle = &id
	}
	if f.reads > 0 {
		benchProgress("read-your-writes: %d rounds", f.reads)
		rw, err := c.readPhase(ctx, groups[0], f.reads)
		if err != nil {
			return err
		}
		r.ReadYourWrites = &rw
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	printReport(stdout, r)
	return nil
}

func benchProgress(format string, args ...any) {
	fmt.Fprintf(stderr, format+"\n", args...)
}

// benchClient speaks HTTP to the server.
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
		rd = strings.NewReader(string(raw))
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
		if status == http.StatusTooManyRequests {
			return nil, fmt.Errorf("%s %s: 429 rate_limited: start huddle serve with HUDDLE_RATE_PER_USER=0 to bench it", method, path)
		}
		return nil, fmt.Errorf("%s %s: %d %s", method, path, status, out)
	}
	return out, nil
}

// benchClinic is the bench's own clinic: users u0…, one waiting room, tokens.
type benchClinic struct {
	benchClient
	clinic string
	secret []byte
}

func (c *benchClinic) token(user, role string) string {
	t, _ := api.MintToken(c.secret, user, c.clinic, []string{role}, 2*time.Hour)
	return t
}

func (c *benchClinic) staff(i int) string { return c.token(fmt.Sprintf("u%d", i), api.RoleStaff) }

func (c *benchClinic) setup(ctx context.Context, users int) error {
	admin := c.token("bench-admin", api.RoleAdmin)
	if _, err := c.must(ctx, 200, "PUT", "/v1/admin/rooms/bench-room", admin, map[string]string{"name": "Bench room"}); err != nil {
		return err
	}
	for i := 0; i < users; i++ {
		id := fmt.Sprintf("u%d", i)
		if _, err := c.must(ctx, 200, "PUT", "/v1/admin/users/"+id, admin, map[string]string{"name": "Bench user " + id, "email": id + "@bench.test"}); err != nil {
			return err
		}
		if _, err := c.must(ctx, 204, "PUT", "/v1/admin/rooms/bench-room/members/"+id, admin, nil); err != nil {
			return err
		}
	}
	return nil
}

// benchGroup is a group, the member who sends into it and the members who listen.
type benchGroup struct {
	id       string
	sender   int
	members  []int // the others
	listener int   // one of members, whose stream the paced phase watches
}

// group starts a group owned by owner with others.
func (c *benchClinic) group(ctx context.Context, owner int, others []int, title string) (string, error) {
	ids := make([]string, len(others))
	for i, o := range others {
		ids[i] = fmt.Sprintf("u%d", o)
	}
	out, err := c.must(ctx, 201, "POST", "/v1/conversations", c.staff(owner), map[string]any{"participant_ids": ids, "title": title})
	if err != nil {
		return "", err
	}
	var conv struct{ ID string }
	if err := json.Unmarshal(out, &conv); err != nil {
		return "", err
	}
	return conv.ID, nil
}

func (c *benchClinic) sendGroups(ctx context.Context, senders, size, users int) ([]benchGroup, error) {
	groups := make([]benchGroup, senders)
	for i := range groups {
		var others []int
		for j := 1; j < size; j++ {
			others = append(others, (i+j)%users)
		}
		id, err := c.group(ctx, i, others, fmt.Sprintf("Bench group %d", i))
		if err != nil {
			return nil, err
		}
		groups[i] = benchGroup{id: id, sender: i, members: others, listener: others[0]}
	}
	return groups, nil
}

// send posts one text message and returns its status.
func (c *benchClinic) send(ctx context.Context, token, conversation, text string) (int, http.Header, []byte, error) {
	return c.do(ctx, "POST", "/v1/conversations/"+conversation+"/messages", token, map[string]string{"text": text})
}

var errTooManyFailures = errors.New("too many failed sends")
