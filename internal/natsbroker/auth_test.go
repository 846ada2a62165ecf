package natsbroker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
)

func TestBroker_RefusesConnectionsWithoutCredentials(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	if strings.Contains(b.URL(), "@") {
		t.Fatalf("URL %q carries credentials", b.URL())
	}
	if nc, err := nats.Connect(b.URL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("connected without credentials")
	}
	wrong := WithUser(b.URL(), UserPass{ServiceUser, "not-the-password"})
	if nc, err := nats.Connect(wrong, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("connected with a wrong password")
	}
	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatalf("service user: %v", err)
	}
	nc.Close()
}

func TestIntegrator_ConsumesEventsButCannotPublishOrTakeOurs(t *testing.T) {
	t.Parallel()
	b := startBroker(t)
	ctx := context.Background()
	// Huddle's own durable consumer, which the integrator must not be able to delete.
	svc, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if err := EnsureConsumer(ctx, svc, "huddle-projection-test", StreamSubjects, time.Minute); err != nil {
		t.Fatal(err)
	}
	pub, err := NewPublisher(b.ClientURL(), watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish("huddle.events.c1.conversation.MessageSent", message.NewMessage(watermill.NewUUID(), []byte(`{}`))); err != nil {
		t.Fatal(err)
	}

	denied := make(chan error, 16)
	nc, err := nats.Connect(b.IntegratorURL(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		denied <- err
	}))
	if err != nil {
		t.Fatalf("integrator: %v", err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	// What docs and examples/integrator do: its own durable pull consumer, fetch, ack.
	sub, err := js.PullSubscribe("huddle.events.*.conversation.>", "integrator-test", nats.BindStream(StreamName),
		nats.AckExplicit(), nats.DeliverAll())
	if err != nil {
		t.Fatalf("integrator pull subscribe: %v", err)
	}
	msgs, err := sub.Fetch(1, nats.MaxWait(10*time.Second))
	if err != nil || len(msgs) != 1 {
		t.Fatalf("integrator fetch: %d messages, %v", len(msgs), err)
	}
	if err := msgs[0].AckSync(); err != nil {
		t.Fatalf("integrator ack: %v", err)
	}

	// Forging an event: refused by the server, and nothing reaches the stream.
	if err := nc.Publish("huddle.events.c1.conversation.MessageSent", []byte(`{"text":"forged"}`)); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	select {
	case err := <-denied:
		if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Fatalf("publish error = %v, want a permissions violation", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no permissions violation reported for the integrator's publish")
	}
	if _, err := js.Publish("huddle.events.c1.conversation.MessageSent", []byte(`{}`), nats.AckWait(2*time.Second)); err == nil {
		t.Fatal("integrator's JetStream publish was acknowledged")
	}
	if err := js.DeleteConsumer(StreamName, "huddle-projection-test"); err == nil {
		t.Fatal("integrator deleted Huddle's consumer")
	}
	if n := streamMsgs(t, b); n != 1 {
		t.Fatalf("stream holds %d messages, want only the relay's 1", n)
	}
	// Joining the projectors' delivery queue would take their messages.
	if _, err := nc.QueueSubscribeSync("huddle.deliver.huddle-projection-test", "huddle-projection-test"); err == nil {
		_ = nc.Flush()
		select {
		case <-denied:
		case <-time.After(5 * time.Second):
			t.Fatal("integrator subscribed to the projectors' delivery subject")
		}
	}
}

func TestLoadOrCreateCredentials_PrivateFilesReadBackUnchanged(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := LoadOrCreateCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ServiceCredentialsFile, IntegratorCredentialsFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	again, err := LoadOrCreateCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again != first || first.Service.Password == first.Integrator.Password {
		t.Fatalf("credentials changed or shared: %+v then %+v", first, again)
	}
	if r := Redact(WithUser("nats://a:1,nats://b:2", first.Service)); strings.Contains(r, first.Service.Password) {
		t.Fatalf("Redact left the password in %s", r)
	}
}
