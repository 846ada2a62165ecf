//go:build chaos

package chaos

import (
	"context"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/api"
)

var staff = []string{"ann", "bob", "cat", "dan"}

// TestChaos_KillNineUnderLoad kills huddle serve with SIGKILL while four staff post, restarts
// it, and repeats (CHAOS_CYCLES, default 5). Recovery is from the restart until a new write
// is readable through the read models.
func TestChaos_KillNineUnderLoad(t *testing.T) {
	s := newServer(t)
	s.start()
	group := s.ward(staff)
	l := s.startLoad(group, staff, 100)
	var recovered []time.Duration
	for range cycles(5) {
		time.Sleep(1500 * time.Millisecond)
		s.kill()
		began := time.Now()
		s.start()
		s.readBack(group, "ann", time.Minute)
		recovered = append(recovered, time.Since(began))
	}
	time.Sleep(time.Second)
	l.stop()
	lost, doubled := l.verify(t)
	report(t, "kill -9 huddle", l, lost, doubled, recovered)
}

// TestChaos_PostgresKilledUnderLoad kills the managed cluster's postmaster: huddle must
// restart it by itself and go on.
func TestChaos_PostgresKilledUnderLoad(t *testing.T) {
	s := newServer(t)
	s.start()
	group := s.ward(staff)
	l := s.startLoad(group, staff, 100)
	var recovered []time.Duration
	for range cycles(3) {
		time.Sleep(1500 * time.Millisecond)
		if err := syscall.Kill(s.postmaster(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		s.readBack(group, "bob", 2*time.Minute)
		recovered = append(recovered, time.Since(began))
		if !s.running() {
			t.Fatal("huddle serve exited when its Postgres was killed")
		}
	}
	time.Sleep(time.Second)
	l.stop()
	lost, doubled := l.verify(t)
	report(t, "kill -9 postgres", l, lost, doubled, recovered)
}

// TestChaos_PostgresFrozen stops the cluster with SIGSTOP for 15 s: requests must get an
// answer (503) within 5 s instead of hanging, and everything goes on after SIGCONT.
func TestChaos_PostgresFrozen(t *testing.T) {
	s := newServer(t)
	s.start()
	group := s.ward(staff)
	l := s.startLoad(group, staff, 50)
	time.Sleep(time.Second)
	pm := s.postmaster()
	if err := syscall.Kill(-pm, syscall.SIGSTOP); err != nil { // the whole process group
		if err := syscall.Kill(pm, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	frozen := time.Now()
	var slowest time.Duration
	tok := s.token("cat", api.RoleStaff)
	for time.Since(frozen) < 15*time.Second {
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		status, _, body := s.call(ctx, "GET", "/v1/conversations", tok, nil)
		cancel()
		took := time.Since(t0)
		slowest = max(slowest, took)
		if status != http.StatusServiceUnavailable && status != http.StatusOK {
			t.Errorf("while Postgres is frozen: %d %s", status, body)
		}
		time.Sleep(500 * time.Millisecond)
	}
	_ = syscall.Kill(-pm, syscall.SIGCONT)
	_ = syscall.Kill(pm, syscall.SIGCONT)
	began := time.Now()
	s.readBack(group, "dan", time.Minute)
	recovered := time.Since(began)
	time.Sleep(time.Second)
	l.stop()
	lost, doubled := l.verify(t)
	t.Logf("chaos postgres frozen 15 s: slowest answer %v", slowest.Round(time.Millisecond))
	if slowest > 6*time.Second {
		t.Errorf("a request waited %v on a frozen Postgres (want an answer within 5 s)", slowest)
	}
	report(t, "SIGSTOP postgres 15 s", l, lost, doubled, []time.Duration{recovered})
}
