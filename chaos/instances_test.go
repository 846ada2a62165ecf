//go:build chaos

package chaos

import (
	"testing"
	"time"

	"github.com/huddle-chat/huddle/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestChaos_TwoInstancesActiveRelayKilled runs two `huddle serve` on one Postgres and one NATS
// (the docker-compose topology) with four staff posting through both, then kills -9 the
// instance whose relay holds the lock (eventstore/relay.go: a session advisory lock; the
// standby tries it every second). Its senders go on through the other instance. Recovery is
// from the kill until a message written through the survivor is on NATS: its relay took over
// from the stored checkpoint. Every acknowledged message must be in the store, the read
// models and the JetStream stream exactly once.
func TestChaos_TwoInstancesActiveRelayKilled(t *testing.T) {
	_, dbURL := testenv.Postgres(t)
	broker := testenv.NATS(t)
	shared := []string{"HUDDLE_DATABASE_URL=" + dbURL, "HUDDLE_NATS_URL=" + broker.ClientURL()}
	a, b := newServer(t, shared...), newServer(t, shared...)
	a.start()
	b.start() // after a: the embedded NATS races when two clients create one consumer at once
	group := a.ward(staff)
	l := startLoadOn([]*server{a, b}, group, staff, 100)

	time.Sleep(3 * time.Second)
	var active, standby *server
	for deadline := time.Now().Add(10 * time.Second); active == nil; {
		switch aOn, bOn := a.relayActive(), b.relayActive(); {
		case aOn && !bOn:
			active, standby = a, b
		case bOn && !aOn:
			active, standby = b, a
		case time.Now().After(deadline):
			t.Fatalf("relays active: %v and %v, want exactly one", aOn, bOn)
		default:
			time.Sleep(100 * time.Millisecond)
		}
	}
	ackedBefore := l.acked.Load()
	active.kill()
	killed := time.Now()
	published := standby.probeUntilPublished(group, broker.ClientURL(), time.Minute)
	recovery := published.Sub(killed)
	if !standby.relayActive() {
		t.Fatal("a probe was published, but the survivor's relay is not active")
	}
	time.Sleep(3 * time.Second)
	ackedAfter := l.acked.Load() - ackedBefore
	l.stop()

	lost, doubled := l.verify(t)
	// The read models and the stream catch up with the store; wait for them (bounded).
	var rmMissing, rmDoubled, natsMissing, natsDoubled int
	for deadline := time.Now().Add(time.Minute); ; {
		rmMissing, rmDoubled = l.missingOrDoubled(l.readModel(t))
		natsMissing, natsDoubled = l.missingOrDoubled(streamMessages(t, broker.ClientURL()))
		if rmMissing+natsMissing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	t.Logf("chaos two instances: read model missing %d doubled %d; NATS stream missing %d doubled %d; %d acknowledged after the kill",
		rmMissing, rmDoubled, natsMissing, natsDoubled, ackedAfter)
	if ackedAfter == 0 {
		t.Error("nothing was acknowledged after the kill")
	}
	report(t, "two instances, active relay killed", l, lost+rmMissing+natsMissing, doubled+rmDoubled+natsDoubled, []time.Duration{recovery})
	if recovery > 10*time.Second {
		t.Errorf("the survivor's relay took %v to publish again, want under 10 s (it retries the lock every second)", recovery)
	}
}
