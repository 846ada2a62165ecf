//go:build chaos

package chaos

import (
	"testing"
	"time"
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

// Postgres killed and frozen, and NATS down 30 s, are internal/app's chaos tests
// (TestChaos_PostgresKilledAndFrozenUnderLoad, TestChaos_NATSDown30sUnderLoad): they need the
// composition root's hooks.
