package eventstore_test

import (
	"context"
	"net"
	"sync"
	"testing"

	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/natsbroker"
	"github.com/huddle-chat/huddle/internal/testenv"
)

func newPublisher(t testing.TB, url string) message.Publisher {
	t.Helper()
	pub, err := natsbroker.NewPublisher(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	return pub
}

// runRelay runs r until the returned stop is called (or the test ends).
func runRelay(t testing.TB, r *eventstore.Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := r.Run(ctx); err != nil {
			t.Errorf("relay: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// jetStream connects a plain NATS client, as an integrator would.
func jetStream(t testing.TB, url string) nats.JetStreamContext {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func streamMsgs(t testing.TB, js nats.JetStreamContext) uint64 {
	t.Helper()
	info, err := js.StreamInfo(natsbroker.StreamName)
	if err != nil {
		return 0 // broker restarting
	}
	return info.State.Msgs
}

func waitMsgs(t testing.TB, js nats.JetStreamContext, n uint64) {
	t.Helper()
	eventually(t, "messages in JetStream", func() bool { return streamMsgs(t, js) >= n })
	if got := streamMsgs(t, js); got != n {
		t.Fatalf("JetStream holds %d messages, want %d", got, n)
	}
}

// storedEvent reads message seq back from JetStream as a RecordedEvent.
func storedEvent(t testing.TB, js nats.JetStreamContext, seq uint64) (eventstore.RecordedEvent, string) {
	t.Helper()
	raw, err := js.GetMsg(natsbroker.StreamName, seq)
	if err != nil {
		t.Fatal(err)
	}
	wm, err := (&wmnats.NATSMarshaler{}).Unmarshal(&nats.Msg{Subject: raw.Subject, Header: raw.Header, Data: raw.Data})
	if err != nil {
		t.Fatal(err)
	}
	e, err := eventstore.FromMessage(wm)
	if err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get(nats.MsgIdHdr) != e.EventID {
		t.Fatalf("Nats-Msg-Id %q, want event id %s", raw.Header.Get(nats.MsgIdHdr), e.EventID)
	}
	return e, raw.Subject
}

func TestRelay_PublishesInOrderOnceEvenWhenRepublished(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	b := testenv.NATS(t)
	js := jetStream(t, b.ClientURL())
	ctx := context.Background()
	r := eventstore.NewRelay(s, newPublisher(t, b.ClientURL()), eventstore.RelayConfig{}, testenv.Logger(t), prometheus.NewRegistry())
	stop := runRelay(t, r)

	var appended []eventstore.RecordedEvent
	for i := range 5 {
		appended = append(appended, mustAppend(t, s, "conversation-pub", eventstore.ExpectAny, "", msg(i)).Events...)
	}
	waitMsgs(t, js, 5)
	for i, want := range appended {
		got, subject := storedEvent(t, js, uint64(i+1))
		if subject != "huddle.events.c1.conversation.MessageSent" || mustJSON(got) != mustJSON(want) {
			t.Fatalf("message %d on %s:\n got %s\nwant %s", i+1, subject, mustJSON(got), mustJSON(want))
		}
	}
	if !r.Healthy() || !r.Active() {
		t.Fatalf("running relay: healthy=%v active=%v", r.Healthy(), r.Active())
	}

	// A relay that lost its checkpoint (crash before saving) publishes everything again:
	// JetStream keeps one copy of each.
	stop()
	if err := s.SaveCheckpoint(ctx, "relay", eventstore.Checkpoint{}); err != nil {
		t.Fatal(err)
	}
	r2 := eventstore.NewRelay(s, newPublisher(t, b.ClientURL()), eventstore.RelayConfig{}, testenv.Logger(t), nil)
	runRelay(t, r2)
	mustAppend(t, s, "conversation-pub", eventstore.ExpectAny, "", msg(6))
	waitMsgs(t, js, 6)
	eventually(t, "relay checkpoint past the 6th event", func() bool {
		cp, err := s.LoadCheckpoint(ctx, "relay")
		return err == nil && cp.Position >= appended[4].Position+1
	})
	if got := streamMsgs(t, js); got != 6 {
		t.Fatalf("after republishing, JetStream holds %d messages, want 6", got)
	}
}

func TestRelay_StandbyTakesOverWhenActiveDies(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	b := testenv.NATS(t)
	js := jetStream(t, b.ClientURL())
	a := eventstore.NewRelay(s, newPublisher(t, b.ClientURL()), eventstore.RelayConfig{}, testenv.Logger(t), nil)
	stopA := runRelay(t, a)
	eventually(t, "relay A active", a.Active)

	standby := eventstore.NewRelay(s, newPublisher(t, b.ClientURL()), eventstore.RelayConfig{}, testenv.Logger(t), nil)
	runRelay(t, standby)
	eventually(t, "relay B healthy on standby", standby.Healthy)
	if standby.Active() {
		t.Fatal("two relays active at once")
	}
	mustAppend(t, s, "conversation-ha", eventstore.ExpectAny, "", msg(1))
	waitMsgs(t, js, 1)

	stopA() // the active instance dies
	eventually(t, "relay B takes over", standby.Active)
	mustAppend(t, s, "conversation-ha", eventstore.ExpectAny, "", msg(2))
	waitMsgs(t, js, 2)
	if e, _ := storedEvent(t, js, 2); e.StreamVersion != 2 {
		t.Fatalf("second message is version %d", e.StreamVersion)
	}
}

func TestRelay_CatchesUpAfterNATSOutage(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	dir := t.TempDir()
	port := freePort(t)
	startBroker := func() *natsbroker.Broker {
		b, err := natsbroker.Start(ctx, natsbroker.Options{StoreDir: dir, ListenPort: port})
		if err != nil {
			t.Fatal(err)
		}
		if err := natsbroker.EnsureStream(ctx, b.ClientURL(), natsbroker.StreamConfig{MaxBytes: 64 << 20}); err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := startBroker()
	url := b.ClientURL()
	reg := prometheus.NewRegistry()
	r := eventstore.NewRelay(s, newPublisher(t, url), eventstore.RelayConfig{MaxBackoff: 500e6}, testenv.Logger(t), reg)
	runRelay(t, r)
	mustAppend(t, s, "conversation-out", eventstore.ExpectAny, "", msg(1))
	js := jetStream(t, url)
	waitMsgs(t, js, 1)

	b.Shutdown()
	// Commands keep succeeding while NATS is down.
	for i := 2; i <= 4; i++ {
		mustAppend(t, s, "conversation-out", eventstore.ExpectAny, "", msg(i))
	}
	eventually(t, "publish errors counted", func() bool { return metric(t, reg, "huddle_relay_publish_errors_total") > 0 })
	eventually(t, "lag reported", func() bool { return metric(t, reg, "huddle_relay_lag_events") >= 3 })
	if !r.Healthy() {
		t.Fatal("relay reports unhealthy during a NATS outage; it should back off and wait")
	}

	b2 := startBroker()
	t.Cleanup(b2.Shutdown)
	waitMsgs(t, js, 4)
	for seq := uint64(1); seq <= 4; seq++ {
		if e, _ := storedEvent(t, js, seq); e.StreamVersion != int64(seq) {
			t.Fatalf("message %d is version %d", seq, e.StreamVersion)
		}
	}
	eventually(t, "lag back to zero", func() bool { return metric(t, reg, "huddle_relay_lag_events") == 0 })
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func metric(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// TestRelay_LostDatabaseSessionRecovers kills the active relay's database session (as a
// network cut or an administrator would): its lock is gone with it, one of the two relays
// (whichever reconnects first) becomes active, the other stands by, and delivery continues.
func TestRelay_LostDatabaseSessionRecovers(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	b := testenv.NATS(t)
	js := jetStream(t, b.ClientURL())
	ctx := context.Background()
	fast := eventstore.RelayConfig{MinBackoff: 50e6, MaxBackoff: 200e6}
	a := eventstore.NewRelay(s, newPublisher(t, b.ClientURL()), fast, testenv.Logger(t), nil)
	runRelay(t, a)
	eventually(t, "relay A active", a.Active)
	standby := eventstore.NewRelay(s, newPublisher(t, b.ClientURL()), fast, testenv.Logger(t), nil)
	runRelay(t, standby)
	eventually(t, "relay B on standby", standby.Healthy)

	var killed int
	err := s.Pool().QueryRow(ctx, `SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l
		WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.objid = ($1::bigint & x'ffffffff'::bigint)::oid`, eventstore.DefaultRelayLockKey).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminate the active relay's session: killed %d, %v", killed, err)
	}
	eventually(t, "exactly one relay active again, the other standing by", func() bool {
		return a.Healthy() && standby.Healthy() && a.Active() != standby.Active()
	})
	mustAppend(t, s, "conversation-cut", eventstore.ExpectAny, "", msg(1))
	waitMsgs(t, js, 1)
}
