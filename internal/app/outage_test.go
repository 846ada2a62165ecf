package app

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/api"
	"github.com/huddle-chat/huddle/commands"
	"github.com/huddle-chat/huddle/internal/testenv"
)

// embeddedApp runs an app on a managed Postgres cluster of its own (the embedded default), so
// that a test may freeze or kill it, and returns its base URL and a staff token.
func embeddedApp(t *testing.T) (*App, string, string) {
	t.Helper()
	cfg := testConfig(t)
	cfg.DatabaseURL = ""
	cfg.RequestTimeout = 10 * time.Second // the default: the watchdog must answer well before it
	a, err := Start(context.Background(), cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	base := "http://" + a.Addr().String()
	waitReady(t, base, done)
	// Staff must be active users of their clinic's directory.
	if _, _, err := a.Server.Commands.SetUser(context.Background(), commands.Actor{UserID: "root", ClinicID: "c1"}, "u1", "User One", "u1@clinic.test", ""); err != nil {
		t.Fatal(err)
	}
	tok, err := api.MintToken(cfg.JWTSecret, "u1", "c1", []string{api.RoleStaff}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return a, base, tok
}

// get returns the status of GET base+path and how long the answer took.
func get(t *testing.T, base, path, tok string) (int, http.Header, time.Duration) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	client := &http.Client{Timeout: 30 * time.Second}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header, time.Since(start)
}

// waitStatus polls until GET path answers want, within limit.
func waitStatus(t *testing.T, base, path, tok string, want int, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		status, _, _ := get(t, base, path, tok)
		if status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s still answers %d after %v, want %d", path, status, limit, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitStopped waits until the postmaster is in the stopped state (signals are asynchronous).
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err == nil && strings.Contains(string(b), ") T ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres (pid %d) not stopped: %s %v", pid, b, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freeze stops the postmaster and every process it forked (PostgreSQL puts each backend in a
// session of its own, so signalling the process group is not enough), as a hung host or a
// stuck disk would; the returned function resumes them (idempotent).
func freeze(t *testing.T, postmaster int) func() {
	t.Helper()
	pids := []int{postmaster}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so parse after the last ')'.
		fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(postmaster) {
			pid, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(filepath.Dir(f)), "/"), "/"))
			pids = append(pids, pid)
		}
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Logf("SIGSTOP %d: %v", pid, err)
		}
	}
	for _, pid := range pids {
		waitStopped(t, pid)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		})
	}
}

// A frozen Postgres (SIGSTOP of the whole cluster) must not hang requests: queries answer 503
// with Retry-After within 5 s, /readyz says not ready, and all recovers once it thaws.
func TestApp_FrozenPostgresAnswers503AndRecovers(t *testing.T) {
	t.Parallel()
	a, base, tok := embeddedApp(t)
	if status, _, _ := get(t, base, "/v1/conversations", tok); status != http.StatusOK {
		t.Fatalf("before the freeze: %d", status)
	}
	thaw := freeze(t, a.db.cluster.PID())
	defer thaw()

	for _, path := range []string{"/v1/conversations", "/v1/contacts?q=ann", "/readyz"} {
		status, h, took := get(t, base, path, tok)
		if status != http.StatusServiceUnavailable || took > 5*time.Second {
			t.Fatalf("GET %s with Postgres frozen: %d after %v, want 503 within 5 s", path, status, took)
		}
		if path != "/readyz" && h.Get("Retry-After") == "" {
			t.Errorf("GET %s: 503 without Retry-After", path)
		}
	}
	thaw()
	waitStatus(t, base, "/v1/conversations", tok, http.StatusOK, 30*time.Second)
	waitStatus(t, base, "/readyz", tok, http.StatusOK, 30*time.Second)
}

// put sends an admin command (a directory change) and returns its status.
func put(t *testing.T, base, tok, user string) int {
	t.Helper()
	req, _ := http.NewRequest("PUT", base+"/v1/admin/users/"+user,
		strings.NewReader(`{"name":"Ann","email":"`+user+`@clinic.test"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("PUT: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A killed managed Postgres is restarted: meanwhile /readyz and commands answer 503, then
// everything recovers by itself, with what was committed before the kill still there.
func TestApp_KilledPostgresIsRestartedAndServiceRecovers(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.DatabaseURL = ""
	a, err := Start(context.Background(), cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	// Long enough to observe the outage deterministically (the default is 500 ms).
	a.restartBackoff = 4 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	base := "http://" + a.Addr().String()
	waitReady(t, base, done)
	admin, err := api.MintToken(cfg.JWTSecret, "boss", "c1", []string{api.RoleAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if status := put(t, base, admin, "u1"); status >= 300 {
		t.Fatalf("command before the kill: %d", status)
	}

	if err := syscall.Kill(a.db.cluster.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, base, "/readyz", "", http.StatusServiceUnavailable, 3*time.Second)
	if status := put(t, base, admin, "u2"); status != http.StatusServiceUnavailable {
		t.Fatalf("command while Postgres is down: %d, want 503", status)
	}
	select {
	case err := <-done:
		t.Fatalf("Run ended when Postgres died: %v", err)
	default:
	}

	waitStatus(t, base, "/readyz", "", http.StatusOK, 60*time.Second)
	if status := put(t, base, admin, "u2"); status >= 300 {
		t.Fatalf("command after recovery: %d", status)
	}
}
