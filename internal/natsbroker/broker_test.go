package natsbroker

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
)

func startBroker(t *testing.T) *Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := Start(ctx, Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	if err := EnsureStream(ctx, b.ClientURL(), StreamConfig{MaxBytes: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	return b
}

func streamMsgs(t *testing.T, b *Broker) uint64 {
	t.Helper()
	nc, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	info, err := js.StreamInfo(StreamName)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func waitAckFloor(t *testing.T, b *Broker, durable string, seq uint64) {
	t.Helper()
	nc, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := js.ConsumerInfo(StreamName, durable)
		if err == nil && info.AckFloor.Stream >= seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ack of seq %d never reached the server (%v, %+v)", seq, err, info)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func receive(t *testing.T, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(30 * time.Second):
		t.Fatal("no message delivered")
		return nil
	}
}

func TestEnsureStream_IdempotentAndUpdatesLimits(t *testing.T) {
	b := startBroker(t)
	ctx := context.Background()
	if err := EnsureStream(ctx, b.ClientURL(), StreamConfig{MaxAge: time.Hour, MaxBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	nc, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	info, err := js.StreamInfo(StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != time.Hour || info.Config.MaxBytes != 1<<20 || info.Config.Duplicates != DefaultDuplicates {
		t.Errorf("config not updated: %+v", info.Config)
	}
	if info.Config.Storage != nats.FileStorage || info.Config.Subjects[0] != StreamSubjects {
		t.Errorf("storage/subjects: %+v", info.Config)
	}
}

func TestPublisher_SameMsgIDTwiceStoresOnce(t *testing.T) {
	b := startBroker(t)
	pub, err := NewPublisher(b.ClientURL(), watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	id := watermill.NewUUID()
	for range 2 {
		if err := pub.Publish("huddle.events.c1.conversation.MessageSent", message.NewMessage(id, []byte(`{}`))); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Publish("huddle.events.c1.conversation.MessageSent", message.NewMessage(watermill.NewUUID(), []byte(`{}`))); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, b); n != 2 {
		t.Fatalf("stream holds %d messages, want 2 (the repeated Nats-Msg-Id dropped)", n)
	}
}

func TestPublisher_NoStreamForTopicIsAnError(t *testing.T) {
	b := startBroker(t)
	pub, err := NewPublisher(b.ClientURL(), watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	// Without AutoProvision a topic outside HUDDLE_EVENTS has no stream: the publish must fail
	// rather than silently create a stream per topic.
	if err := pub.Publish("elsewhere.topic", message.NewMessage(watermill.NewUUID(), nil)); err == nil {
		t.Fatal("publish outside the stream succeeded")
	}
}

func TestSubscriber_DurableResumesAfterLastAck(t *testing.T) {
	b := startBroker(t)
	pub, err := NewPublisher(b.ClientURL(), watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	publish := func(id string) {
		t.Helper()
		if err := pub.Publish("huddle.events.c1.member.Muted", message.NewMessage(id, []byte(id))); err != nil {
			t.Fatal(err)
		}
	}
	first, second := watermill.NewUUID(), watermill.NewUUID()
	publish(first)

	subscribe := func() (message.Subscriber, <-chan *message.Message) {
		t.Helper()
		// A short ack wait: the closed subscriber's UNSUB may reach the server after the next
		// publish, which then goes to it, is dropped unacked, and comes back only when the ack
		// wait expires. With 30 s that raced receive's own 30 s timeout.
		sub, err := NewSubscriber(b.ClientURL(), "test_projector", 2*time.Second, watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		ch, err := sub.Subscribe(context.Background(), StreamSubjects)
		if err != nil {
			t.Fatal(err)
		}
		return sub, ch
	}
	sub, ch := subscribe()
	m := receive(t, ch)
	if m.UUID != first {
		t.Fatalf("got %s, want %s", m.UUID, first)
	}
	m.Ack()
	// Watermill sends the JetStream ack asynchronously after Ack(), and a Close racing it may
	// drop it (at-least-once: a redelivery, which projectors skip). Wait until the server has it.
	waitAckFloor(t, b, "test_projector", 1)
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}

	publish(second)
	sub, ch = subscribe()
	defer sub.Close()
	m = receive(t, ch)
	if m.UUID != second {
		t.Fatalf("after resubscribing got %s, want only the unacked %s", m.UUID, second)
	}
	m.Ack()
}

func TestSubscriber_NackedMessageIsRedelivered(t *testing.T) {
	b := startBroker(t)
	pub, err := NewPublisher(b.ClientURL(), watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sub, err := NewSubscriber(b.ClientURL(), "test_nack", 30*time.Second, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ch, err := sub.Subscribe(context.Background(), StreamSubjects)
	if err != nil {
		t.Fatal(err)
	}
	id := watermill.NewUUID()
	if err := pub.Publish("huddle.events.c1.member.Muted", message.NewMessage(id, nil)); err != nil {
		t.Fatal(err)
	}
	m := receive(t, ch)
	m.Nack()
	m = receive(t, ch)
	if m.UUID != id {
		t.Fatalf("redelivered %s, want %s", m.UUID, id)
	}
	m.Ack()
}

func TestBroker_NoListenerStillServesInProcess(t *testing.T) {
	b, err := Start(context.Background(), Options{StoreDir: t.TempDir(), ListenPort: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	nc, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := EnsureStreamConn(context.Background(), nc, StreamConfig{}); err != nil {
		t.Fatal(err)
	}
}

func TestStart_BusyPortFailsAtOnceNamingTheAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	_, err = Start(context.Background(), Options{StoreDir: t.TempDir(), ListenPort: port})
	if err == nil || !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Fatalf("err = %v, want one naming port %d", err, port)
	}
}
