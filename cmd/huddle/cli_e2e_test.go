package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCLI_TailAndAuditBesideARunningServer runs the integrators' and auditors' commands the
// way they would: the real binary, with the server's environment, while `huddle serve` runs.
func TestCLI_TailAndAuditBesideARunningServer(t *testing.T) {
	s := newServer(t)
	s.start()
	alice, _, conv := s.directChat()
	s.expect(http.StatusCreated, "POST", "/v1/conversations/"+conv.ID+"/messages", alice, `{"text":"first"}`)

	// Follow from the beginning in the background: "first" comes from history, later ones
	// from history or live, whichever the seam gives them to, each exactly once.
	follow := exec.Command(s.bin, "tail", "--from", "beginning", "--type", "MessageSent")
	follow.Env = s.env
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer follow.Process.Kill()
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	nextText := func() string {
		t.Helper()
		select {
		case line := <-lines:
			var ce map[string]any
			if err := json.Unmarshal([]byte(line), &ce); err != nil {
				t.Fatalf("tail printed %q: %v", line, err)
			}
			if ce["type"] != "MessageSent" || ce["specversion"] != "1.0" || ce["subject"] != "conversation-"+conv.ID {
				t.Fatalf("tail line: %s", line)
			}
			text, _ := ce["data"].(map[string]any)["text"].(string)
			return text
		case <-time.After(20 * time.Second):
			t.Fatal("huddle tail printed nothing for 20 s")
			return ""
		}
	}
	if got := nextText(); got != "first" {
		t.Fatalf("tail's first message %q", got)
	}
	s.expect(http.StatusCreated, "POST", "/v1/conversations/"+conv.ID+"/messages", alice, `{"text":"second"}`)
	if got := nextText(); got != "second" {
		t.Fatalf("tail's second message %q", got)
	}

	// History: every event, once, in a gap-free order per stream.
	history := strings.Split(s.run("tail", "--from", "beginning", "--no-follow"), "\n")
	versions := map[string]float64{}
	for _, line := range history {
		var ce map[string]any
		if err := json.Unmarshal([]byte(line), &ce); err != nil {
			t.Fatalf("history line %q: %v", line, err)
		}
		stream := ce["streamid"].(string)
		if ce["streamversion"].(float64) != versions[stream]+1 {
			t.Fatalf("%s: version %v after %v", stream, ce["streamversion"], versions[stream])
		}
		versions[stream]++
	}
	if versions["conversation-"+conv.ID] != 3 {
		t.Fatalf("history holds %v events of the chat, want 3 (started, two messages)", versions["conversation-"+conv.ID])
	}

	// Auditors: events, state, export, verify.
	events := strings.Split(s.run("audit", "events", "--clinic", "clinic-1", "--conversation", conv.ID), "\n")
	if len(events) != 3 || !strings.Contains(events[2], `"MessageSent"`) {
		t.Fatalf("audit events: %q", events)
	}
	var state struct {
		Kind         string
		Participants []struct{ ID, Role, State string }
		Messages     []struct{ Text string }
	}
	if err := json.Unmarshal([]byte(s.run("audit", "state", "--clinic", "clinic-1", "--conversation", conv.ID)), &state); err != nil {
		t.Fatal(err)
	}
	if state.Kind != "direct" || len(state.Participants) != 2 || len(state.Messages) != 2 || state.Messages[1].Text != "second" {
		t.Fatalf("audit state: %+v", state)
	}
	out := filepath.Join(t.TempDir(), "export.csv")
	s.run("audit", "export", "--clinic", "clinic-1", "--conversation", conv.ID, "--format", "csv", "--out", out)
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != 4 {
		t.Fatalf("export has %d rows (%v), want a header and 3 events", len(rows), err)
	}
	if got := s.run("audit", "verify"); !strings.HasPrefix(got, "ok:") {
		t.Fatalf("audit verify: %s", got)
	}
	// Against the feed: every event the relay published is in the store as published.
	if got := s.run("audit", "verify", "--feed"); !strings.Contains(got, "ok: feed, ") || strings.Contains(got, "FEED ") {
		t.Fatalf("audit verify --feed: %s", got)
	}
	// Another clinic's auditor learns nothing.
	cmd := exec.Command(s.bin, "audit", "state", "--clinic", "clinic-2", "--conversation", conv.ID)
	cmd.Env = s.env
	if outb, err := cmd.CombinedOutput(); err == nil || strings.Contains(string(outb), "u-alice") {
		t.Fatalf("clinic-2 audit of clinic-1's chat: err=%v output=%s", err, outb)
	}
	// The audit reads above are on record, in the store and so in the feed.
	trail := s.run("tail", "--from", "beginning", "--no-follow", "--type", "AuditRead", "--clinic", "clinic-1")
	if n := len(strings.Split(trail, "\n")); n != 3 {
		t.Fatalf("%d AuditRead events after events, state and export, want 3:\n%s", n, trail)
	}
}

// directChat sets up clinic-1 with u-alice and u-bob in one waiting room and starts their
// direct chat; it returns their tokens and the chat.
func (s *server) directChat() (alice, bob string, conv struct{ ID string }) {
	s.t.Helper()
	admin := s.run("token", "--user", "admin-1", "--clinic", "clinic-1", "--role", "admin")
	alice = s.run("token", "--user", "u-alice", "--clinic", "clinic-1", "--role", "staff")
	bob = s.run("token", "--user", "u-bob", "--clinic", "clinic-1", "--role", "staff")
	s.expect(http.StatusOK, "PUT", "/v1/admin/rooms/room-1", admin, `{"name":"Front desk"}`)
	for _, u := range []string{"u-alice", "u-bob"} {
		s.expect(http.StatusOK, "PUT", "/v1/admin/users/"+u, admin, `{"name":"`+u+`","email":"`+u+`@example.com"}`)
		s.expect(http.StatusNoContent, "PUT", "/v1/admin/rooms/room-1/members/"+u, admin, "")
	}
	s.expect(http.StatusCreated, "POST", "/v1/conversations", alice, `{"participant_ids":["u-bob"]}`).json(s.t, &conv)
	return alice, bob, conv
}

func TestBench_MeasuresARunningServer(t *testing.T) {
	s := newServer(t)
	s.env = append(s.env, "HUDDLE_RATE_PER_USER=0") // the bench sends faster than a person
	s.start()
	// Every phase, briefly; the figures themselves mean nothing here (a loaded test machine),
	// but each must be measured and complete: all sends accepted, every delivery seen.
	out := s.run("bench", "--json", "--server-pid", strconv.Itoa(s.cmd.Process.Pid),
		"--duration", "1s", "--senders", "2", "--group-size", "3", "--pgbench-seconds", "1",
		"--hot-senders", "6", "--hot-messages", "4", "--rates", "20", "--paced-duration", "1s",
		"--fanout", "4", "--fanout-messages", "2", "--reads", "5", "--idle", "50")
	var r struct {
		Durability map[string]string `json:"durability"`
		Baseline   *struct {
			InsertsPerSecond float64 `json:"inserts_per_s"`
		} `json:"baseline"`
		Send struct {
			Accepted        int     `json:"accepted"`
			Failed          int     `json:"failed"`
			RatioToBaseline float64 `json:"ratio_to_baseline"`
			Missing         int     `json:"missing"`
			Delivery        struct {
				Samples int `json:"samples"`
			} `json:"send_to_stream"`
		} `json:"send"`
		Hot []struct {
			Messages   int            `json:"messages"`
			Accepted   int            `json:"accepted"`
			Answers    map[string]int `json:"answers"`
			StoredOnce bool           `json:"stored_once"`
		} `json:"hot"`
		Paced []struct {
			Accepted  int `json:"accepted"`
			Delivered int `json:"delivered"`
			Missing   int `json:"missing"`
			CPU       *struct {
				HuddleMS float64 `json:"huddle_ms_per_message"`
				TotalMS  float64 `json:"total_ms_per_message"`
			} `json:"cpu"`
		} `json:"paced"`
		Fanout struct {
			Expected  int `json:"expected_deliveries"`
			Delivered int `json:"delivered"`
		} `json:"fanout"`
		ReadYourWrites struct {
			Samples int `json:"samples"`
		} `json:"read_your_writes"`
		Idle *struct {
			Opened     int     `json:"opened"`
			HeapStack  float64 `json:"heap_and_stack_bytes_per_stream"`
			RSS        float64 `json:"rss_bytes_per_stream"`
			Goroutines float64 `json:"goroutines_per_stream"`
		} `json:"idle"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bench --json: %v\n%s", err, out)
	}
	if r.Durability["fsync"] != "on" || r.Durability["synchronous_commit"] != "on" {
		t.Errorf("the embedded default's durability: %v", r.Durability)
	}
	if r.Baseline == nil || r.Baseline.InsertsPerSecond <= 0 || r.Send.RatioToBaseline <= 0 {
		t.Errorf("no pgbench baseline or ratio:\n%s", out)
	}
	if r.Send.Accepted < 1 || r.Send.Failed != 0 || r.Send.Missing != 0 || r.Send.Delivery.Samples != r.Send.Accepted {
		t.Errorf("send phase: %+v", r.Send)
	}
	if len(r.Hot) != 1 || r.Hot[0].Accepted != 24 || r.Hot[0].Answers["201"] != 24 || !r.Hot[0].StoredOnce {
		t.Errorf("hot phase: %+v", r.Hot)
	}
	if len(r.Paced) != 1 || r.Paced[0].Accepted != 20 || r.Paced[0].Delivered != 20 || r.Paced[0].Missing != 0 ||
		r.Paced[0].CPU == nil || r.Paced[0].CPU.HuddleMS <= 0 || r.Paced[0].CPU.TotalMS < r.Paced[0].CPU.HuddleMS {
		t.Errorf("paced phase: %+v (cpu %+v)", r.Paced, r.Paced[0].CPU)
	}
	if r.Fanout.Expected != 6 || r.Fanout.Delivered != 6 {
		t.Errorf("fanout phase: %+v", r.Fanout)
	}
	if r.ReadYourWrites.Samples != 5 {
		t.Errorf("read phase: %+v", r.ReadYourWrites)
	}
	// Parked streams hold no goroutine; a figure that is not measured reads 0 and fails here.
	if r.Idle == nil || r.Idle.Opened != 50 || r.Idle.HeapStack == 0 || r.Idle.Goroutines >= 1 {
		t.Errorf("idle phase: %+v", r.Idle)
	}
	// The text report names every figure.
	text := s.run("bench", "--server-pid", strconv.Itoa(s.cmd.Process.Pid), "--duration", "1s", "--senders", "2", "--group-size", "3", "--pgbench-seconds", "1",
		"--hot-senders", "3", "--hot-messages", "2", "--rates", "10", "--paced-duration", "1s", "--fanout", "0", "--reads", "3", "--idle", "10")
	for _, want := range []string{"idle: 10 live streams opened", "baseline: pgbench", "ratio send/baseline", "hot group, 3 senders: 6 of 6", "CPU per accepted message", "send -> another member's stream", "write-to-read"} {
		if !strings.Contains(text, want) {
			t.Errorf("text report lacks %q:\n%s", want, text)
		}
	}
}

// TestCLI_ProjectionsStatusAndRebuild runs the operators' projection commands with the real
// binary: status, a rebuild while `huddle serve` runs (readers keep their answers, live
// projection goes on after the swap), and a rebuild while it is stopped.
func TestCLI_ProjectionsStatusAndRebuild(t *testing.T) {
	s := newServer(t)
	s.start()
	alice, bob, conv := s.directChat()
	var pos string
	for _, text := range []string{"one", "two", "three"} {
		pos = s.expect(http.StatusCreated, "POST", "/v1/conversations/"+conv.ID+"/messages", alice, `{"text":"`+text+`"}`).header.Get("Huddle-Position")
	}
	inbox := func(position string) string {
		t.Helper()
		var hdr []string
		if position != "" {
			hdr = []string{"Huddle-Min-Position", position}
		}
		return string(s.expect(http.StatusOK, "GET", "/v1/conversations", bob, "", hdr...).body)
	}
	before := inbox(pos)
	if !strings.Contains(before, `"three"`) || !strings.Contains(before, `"unread_count":3`) {
		t.Fatalf("bob's chat list before any rebuild: %s", before)
	}

	var st []struct {
		Name      string
		Position  int64
		Watermark int64 `json:"watermark_position"`
		Poisoned  int64
	}
	if err := json.Unmarshal([]byte(s.run("projections", "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st) != 3 || st[0].Name != "directory" || st[1].Name != "inbox" || st[2].Name != "reminders" {
		t.Fatalf("status --json: %+v", st)
	}
	for _, p := range st {
		// Every event of the store is applied (the read above waited for it), so the watermark
		// has reached the projection's own last event.
		if p.Position < 1 || p.Watermark < p.Position || p.Poisoned != 0 {
			t.Errorf("status of %s: %+v", p.Name, p)
		}
	}
	table := strings.Split(s.run("projections", "status"), "\n")
	if len(table) != 4 || !strings.HasPrefix(table[0], "PROJECTION") || !strings.Contains(table[0], "WATERMARK") || !strings.HasPrefix(table[2], "inbox") {
		t.Fatalf("status table:\n%s", strings.Join(table, "\n"))
	}

	// With the server running: the same answers after the swap, and live projection goes on.
	rebuildOut := s.runCombined("projections", "rebuild")
	if !strings.Contains(rebuildOut, "rebuild directory, inbox, reminders: done,") {
		t.Fatalf("rebuild output: %s", rebuildOut)
	}
	if after := inbox(""); after != before {
		t.Fatalf("bob's chat list changed across a rebuild:\nbefore %s\nafter  %s", before, after)
	}
	pos = s.expect(http.StatusCreated, "POST", "/v1/conversations/"+conv.ID+"/messages", alice, `{"text":"four"}`).header.Get("Huddle-Position")
	if got := inbox(pos); !strings.Contains(got, `"four"`) || !strings.Contains(got, `"unread_count":4`) {
		t.Fatalf("after the rebuild, live projection did not go on: %s", got)
	}
	before = inbox("")

	// Stopped: a rebuild of one projection, then the server serves the same.
	s.stop()
	if out := s.runCombined("projections", "rebuild", "inbox"); !strings.Contains(out, "rebuild inbox: done,") {
		t.Fatalf("rebuild while stopped: %s", out)
	}
	s.start()
	if after := inbox(""); after != before {
		t.Fatalf("bob's chat list changed across an offline rebuild:\nbefore %s\nafter  %s", before, after)
	}
	if out, err := s.command("projections", "rebuild", "nonsense").CombinedOutput(); err == nil || !strings.Contains(string(out), "unknown projection") {
		t.Fatalf("rebuild of an unknown projection: err=%v output=%s", err, out)
	}
}
