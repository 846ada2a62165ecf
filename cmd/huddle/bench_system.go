package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/huddle-chat/huddle/internal/app"
	"github.com/huddle-chat/huddle/internal/config"
)

type machineInfo struct {
	Cores   int    `json:"cores"`
	CPU     string `json:"cpu,omitempty"`
	LoadAvg string `json:"load_average_at_start,omitempty"`
	Host    string `json:"host,omitempty"`
}

func readMachine() machineInfo {
	m := machineInfo{Cores: runtime.NumCPU()}
	m.Host, _ = os.Hostname()
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if raw, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.Join(strings.Fields(string(raw))[:3], " ")
	}
	return m
}

// durability reads the settings that decide what a commit costs: the figures are only
// comparable between runs with the same ones.
func durability(ctx context.Context, pool *pgxpool.Pool) map[string]string {
	out := map[string]string{}
	for _, name := range []string{"fsync", "synchronous_commit", "wal_sync_method", "full_page_writes", "server_version"} {
		var v string
		if err := pool.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err == nil {
			out[name] = v
		}
	}
	return out
}

// benchProcesses are the processes whose CPU the paced phase counts.
type benchProcesses struct {
	huddle     int // huddle serve
	postmaster int // its Postgres cluster's postmaster (0: external, not measured)
	notes      []string
}

// findProcesses finds huddle serve (pid given, or the only "huddle serve" in /proc) and the
// managed cluster's postmaster (its postmaster.pid).
func findProcesses(cfg config.Config, pid int) benchProcesses {
	p := benchProcesses{huddle: pid}
	if p.huddle == 0 {
		var found []int
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			n, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err != nil {
				continue
			}
			args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
			if len(args) >= 2 && filepath.Base(args[0]) == "huddle" && args[1] == "serve" {
				found = append(found, n)
			}
		}
		switch len(found) {
		case 1:
			p.huddle = found[0]
		case 0:
			p.notes = append(p.notes, "no huddle serve process on this machine: no huddle CPU figures (--server-pid)")
		default:
			p.notes = append(p.notes, fmt.Sprintf("several huddle serve processes %v: pass --server-pid for CPU figures", found))
		}
	}
	if cfg.EmbeddedPostgres() {
		raw, err := os.ReadFile(filepath.Join(cfg.PostgresDir(), "data", "postmaster.pid"))
		if err == nil {
			p.postmaster, _ = strconv.Atoi(strings.TrimSpace(strings.SplitN(string(raw), "\n", 2)[0]))
		}
	}
	if p.postmaster == 0 {
		p.notes = append(p.notes, "Postgres is external or not found: CPU figures are huddle's alone")
	}
	return p
}

// cpuSample is CPU time used so far, in clock ticks (USER_HZ, 100 on Linux).
type cpuSample struct {
	huddle, postgres int64
	ok               bool
}

const clockTicksPerSecond = 100

// sample reads /proc: huddle serve's utime+stime, and the cluster's: the postmaster's own and
// its reaped children's (cutime+cstime: backends that already exited) plus every live child's.
func (p benchProcesses) sample() cpuSample {
	s := cpuSample{ok: p.huddle != 0}
	if p.huddle != 0 {
		f, err := procStat(p.huddle)
		if err != nil {
			s.ok = false
		}
		s.huddle = f.utime + f.stime
	}
	if p.postmaster != 0 {
		pm, err := procStat(p.postmaster)
		if err == nil {
			s.postgres = pm.utime + pm.stime + pm.cutime + pm.cstime
		}
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			n, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if f, err := procStat(n); err == nil && f.ppid == int64(p.postmaster) {
				s.postgres += f.utime + f.stime
			}
		}
	}
	return s
}

// procFields are a process's parent, CPU ticks and resident set (in pages).
type procFields struct{ ppid, utime, stime, cutime, cstime, rssPages int64 }

func procStat(pid int) (procFields, error) {
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procFields{}, err
	}
	// The command name may hold spaces and parentheses: fields start after the last ')'.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return procFields{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 22 {
		return procFields{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	num := func(k int) int64 { n, _ := strconv.ParseInt(f[k], 10, 64); return n }
	// After the name: state(0) ppid(1) … utime(11) stime(12) cutime(13) cstime(14) … rss(21).
	return procFields{ppid: num(1), utime: num(11), stime: num(12), cutime: num(13), cstime: num(14), rssPages: num(21)}, nil
}

type cpuResult struct {
	HuddleMS   float64 `json:"huddle_ms_per_message"`
	PostgresMS float64 `json:"postgres_ms_per_message,omitempty"`
	TotalMS    float64 `json:"total_ms_per_message"`
}

func cpuPerMessage(before, after cpuSample, messages int64) *cpuResult {
	if !before.ok || !after.ok || messages == 0 {
		return nil
	}
	per := func(ticks int64) float64 {
		return float64(ticks) * 1000 / clockTicksPerSecond / float64(messages)
	}
	r := &cpuResult{HuddleMS: per(after.huddle - before.huddle), PostgresMS: per(after.postgres - before.postgres)}
	r.TotalMS = r.HuddleMS + r.PostgresMS
	return r
}

type baselineResult struct {
	Tool             string  `json:"tool"`
	Clients          int     `json:"clients"`
	Seconds          int     `json:"seconds"`
	InsertsPerSecond float64 `json:"inserts_per_s"`
}

// baselineScript inserts one row shaped like a stored MessageSent (same columns, indexes and
// sizes, in a copy of the events table) in autocommit: the floor cost of storing an event on
// this cluster. Data and metadata differ per row, as real events do.
const baselineScript = `\set n random(1, 1000000000)
INSERT INTO %[1]s (stream_id, stream_version, event_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
VALUES ('conversation-' || gen_random_uuid(), 1, gen_random_uuid(), 'MessageSent', 1,
 ('{"message_id": "m' || :n || '", "sender_id": "u' || :n || '", "text": "bench message ' || :n || '"}')::jsonb,
 ('{"actor_id": "u' || :n || '", "clinic_id": "bench", "command_id": "' || gen_random_uuid() || '", "causation_id": "", "correlation_id": "r' || :n || '"}')::jsonb,
 now(), '', 'c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ff');
`

var pgbenchTPS = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// runBaseline runs pgbench against a scratch copy of the events table on db's cluster.
func runBaseline(ctx context.Context, db *app.Database, clients, seconds int) (baselineResult, error) {
	bin, err := findPgbench()
	if err != nil {
		return baselineResult{}, err
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	table := "bench_events_" + hex.EncodeToString(suffix)
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE `+table+` (LIKE events INCLUDING ALL)`); err != nil {
		return baselineResult{}, fmt.Errorf("scratch table: %w", err)
	}
	defer db.Pool.Exec(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS `+table)
	script, err := os.CreateTemp("", "huddle-bench-*.sql")
	if err != nil {
		return baselineResult{}, err
	}
	defer os.Remove(script.Name())
	if _, err := io.WriteString(script, fmt.Sprintf(baselineScript, table)); err != nil {
		return baselineResult{}, err
	}
	_ = script.Close()
	out, err := exec.CommandContext(ctx, bin, "-n", "-M", "prepared", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, runtime.NumCPU())),
		"-T", strconv.Itoa(seconds), "-f", script.Name(), db.URL).CombinedOutput()
	if err != nil {
		return baselineResult{}, fmt.Errorf("pgbench: %v: %s", err, lastLines(out, 5))
	}
	m := pgbenchTPS.FindSubmatch(out)
	if m == nil {
		return baselineResult{}, fmt.Errorf("pgbench printed no tps line: %s", lastLines(out, 5))
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	return baselineResult{Tool: bin, Clients: clients, Seconds: seconds, InsertsPerSecond: tps}, nil
}

func findPgbench() (string, error) {
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if p := filepath.Join(strings.TrimSpace(string(out)), "pgbench"); fileExists(p) {
			return p, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	if len(matches) > 0 {
		return matches[len(matches)-1], nil
	}
	return "", fmt.Errorf("pgbench not found (PATH, pg_config --bindir, /usr/lib/postgresql/*/bin)")
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// printReport writes the text report.
func printReport(w io.Writer, r benchReport) {
	fmt.Fprintf(w, "machine: %d cores, %s, load %s (%s)\n", r.Machine.Cores, r.Machine.CPU, r.Machine.LoadAvg, r.Machine.Host)
	if len(r.Durability) > 0 {
		fmt.Fprintf(w, "cluster: fsync=%s synchronous_commit=%s wal_sync_method=%s (PostgreSQL %s)\n",
			r.Durability["fsync"], r.Durability["synchronous_commit"], r.Durability["wal_sync_method"], r.Durability["server_version"])
	}
	if b := r.Baseline; b != nil {
		fmt.Fprintf(w, "baseline: pgbench single-row insert of the event shape, %d clients: %.0f inserts/s\n", b.Clients, b.InsertsPerSecond)
	}
	if s := r.Send; s != nil {
		fmt.Fprintf(w, "send: %d messages in %.1fs = %.0f messages/s (%d senders, groups of %d, %d failed)\n",
			s.Accepted, s.Seconds, s.PerSecond, s.Senders, s.GroupSize, s.Failed)
		fmt.Fprintf(w, "send latency: %s\n", s.Latency)
		fmt.Fprintf(w, "send -> another member's stream at that rate: %s; %d missing, %d later than 1 s, the last %.1f s after the phase\n",
			s.Delivery, s.Missing, s.LateOver1s, s.CaughtUpSeconds)
		if s.RatioToBaseline > 0 {
			fmt.Fprintf(w, "ratio send/baseline: %.2f\n", s.RatioToBaseline)
		}
	}
	for _, h := range r.Hot {
		fmt.Fprintf(w, "hot group, %d senders: %d of %d answered 201 (answers %v), %.0f messages/s into one conversation, stored once in one order: %v\n",
			h.Senders, h.Accepted, h.Messages, h.Answers, h.PerSecond, h.StoredOnce)
		fmt.Fprintf(w, "hot group, %d senders, latency: %s\n", h.Senders, h.Latency)
	}
	for _, p := range r.Paced {
		fmt.Fprintf(w, "paced %d/s: %d accepted at %.0f/s (%d failed); send %s\n", p.Rate, p.Accepted, p.PerSecond, p.Failed, p.Send)
		fmt.Fprintf(w, "paced %d/s: send -> another member's stream: %s; %d delivered, %d missing, %d later than 2 s\n",
			p.Rate, p.Delivery, p.Delivered, p.Missing, p.LateOver2s)
		if p.CPU != nil {
			fmt.Fprintf(w, "paced %d/s: CPU per accepted message: %.3f ms (huddle %.3f + postgres %.3f)\n", p.Rate, p.CPU.TotalMS, p.CPU.HuddleMS, p.CPU.PostgresMS)
		}
	}
	if f := r.Fanout; f != nil {
		fmt.Fprintf(w, "fanout: group of %d, %d messages: %d of %d deliveries; send -> stream %s\n", f.Members, f.Messages, f.Delivered, f.Expected, f.Delivery)
	}
	if id := r.Idle; id != nil {
		fmt.Fprintf(w, "idle: %d live streams opened in %.1f s; per stream the server holds %.0f B of Go heap and stacks", id.Opened, id.Seconds, id.HeapStackPerStream)
		if id.RSSPerStream > 0 {
			fmt.Fprintf(w, ", %.0f B resident", id.RSSPerStream)
		}
		fmt.Fprintf(w, ", %.3f goroutines\n", id.GoroutinesPerStream)
	}
	if rw := r.ReadYourWrites; rw != nil {
		fmt.Fprintf(w, "write-to-read (POST, then GET with Huddle-Min-Position): %s\n", rw)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}
