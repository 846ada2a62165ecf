package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
)

// clientOptions keep a client connected through NATS restarts: the relay and the projectors
// outlive a broker blip and resume (their work is idempotent and checkpointed).
func clientOptions(name string) []nats.Option {
	return []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
	}
}

// PublishAckWait is how long a publish waits for JetStream's ack.
const PublishAckWait = 2 * time.Second

// NewPublisher returns a Watermill publisher onto JetStream. Each message's UUID travels as
// Nats-Msg-Id (set by our Marshaler, which publishes no Watermill-internal header), so
// JetStream drops a re-published event within the stream's duplicate window.
// Publish waits for JetStream's ack.
//
// No AutoProvision: watermill-nats would create a stream per topic named after the topic, and
// our topics are subjects inside HUDDLE_EVENTS, which EnsureStream provisions.
//
// A publish unanswered for PublishAckWait fails (the relay backs off and publishes it again,
// deduplicated): while a cluster elects a new stream leader, publishes go unanswered, and
// nats.go's default of 5 s per try made a leader change cost the relay 10 s
// (TestChaos_JetStreamClusterLosesANode).
//
// Close closes the publisher's own connection.
func NewPublisher(url string, log watermill.LoggerAdapter) (message.Publisher, error) {
	pub, err := wmnats.NewPublisher(wmnats.PublisherConfig{
		URL:         url,
		NatsOptions: clientOptions("huddle-publisher"),
		Marshaler:   Marshaler{},
		JetStream: wmnats.JetStreamConfig{
			AutoProvision:  false,
			PublishOptions: []nats.PubOpt{nats.AckWait(PublishAckWait)},
		},
	}, log)
	if err != nil {
		return nil, fmt.Errorf("nats publisher: %w", err)
	}
	return pub, nil
}

// NewSubscriber returns a Watermill subscriber on a durable JetStream consumer named durable
// (which must be a valid consumer name: no dots, spaces or wildcards). Instances using the same
// durable share the work as one queue group and resume from the last acked message.
//
// Acks are manual and explicit, with JetStream's AckWait equal to Watermill's AckWaitTimeout:
// without ManualAck nats.go would ack as soon as the callback returns, and Watermill returns
// without acking when its timeout expires or it closes, which together lose messages. A message
// is acked only when the handler acks it; otherwise it is redelivered after ackWait.
//
// The consumer is created by us before Watermill subscribes: nats.go deletes a consumer that
// its Subscribe created when the subscription is unsubscribed, which Watermill does on Close,
// so a library-created "durable" would restart from the beginning after every shutdown.
//
// Subscribe to one topic (subject filter, e.g. "huddle.events.>") per durable name.
func NewSubscriber(url, durable string, ackWait time.Duration, log watermill.LoggerAdapter) (message.Subscriber, error) {
	return NewSubscriberWorkers(url, durable, ackWait, 1, log)
}

// NewSubscriberWorkers is NewSubscriber with several callbacks sharing the consumer, so up to
// workers messages are in flight at once. Messages of one stream may then be handled out of
// order: use it only for handlers that, like the projectors, skip duplicates and fill gaps
// from the store.
func NewSubscriberWorkers(url, durable string, ackWait time.Duration, workers int, log watermill.LoggerAdapter) (message.Subscriber, error) {
	if workers < 1 {
		workers = 1
	}
	if durable == "" {
		return nil, fmt.Errorf("nats subscriber: durable name is empty (an ephemeral consumer would replay from the start)")
	}
	if ackWait <= 0 {
		ackWait = 30 * time.Second
	}
	mgmt, err := nats.Connect(url, clientOptions("huddle-"+durable+"-admin")...)
	if err != nil {
		return nil, fmt.Errorf("nats subscriber %s: connect: %w", durable, err)
	}
	sub, err := wmnats.NewSubscriber(wmnats.SubscriberConfig{
		URL:              url,
		NatsOptions:      clientOptions("huddle-" + durable),
		QueueGroupPrefix: durable,
		SubscribersCount: workers, // 1 keeps per-stream order
		AckWaitTimeout:   ackWait,
		CloseTimeout:     ackWait,
		SubscribeTimeout: 30 * time.Second,
		Unmarshaler:      Marshaler{},
		JetStream: wmnats.JetStreamConfig{
			AutoProvision: false,
			DurablePrefix: durable,
			SubscribeOptions: []nats.SubOpt{
				nats.ManualAck(),
				nats.AckExplicit(),
				nats.AckWait(ackWait),
				nats.DeliverAll(),
			},
		},
	}, log)
	if err != nil {
		mgmt.Close()
		return nil, fmt.Errorf("nats subscriber %s: %w", durable, err)
	}
	return &durableSubscriber{Subscriber: sub, mgmt: mgmt, durable: durable, ackWait: ackWait}, nil
}

// durableSubscriber provisions its consumer before each Subscribe (see NewSubscriber).
type durableSubscriber struct {
	*wmnats.Subscriber
	mgmt    *nats.Conn
	durable string
	ackWait time.Duration
}

func (s *durableSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if err := EnsureConsumer(ctx, s.mgmt, s.durable, topic, s.ackWait); err != nil {
		return nil, err
	}
	return s.Subscriber.Subscribe(ctx, topic)
}

func (s *durableSubscriber) Close() error {
	defer s.mgmt.Close()
	return s.Subscriber.Close()
}

// EnsureConsumer creates (or brings up to date) the durable push consumer that NewSubscriber's
// subscriptions bind to: deliver group = durable, explicit acks, AckWait, from the start of the
// stream. Several instances may race here; the deliver subject is derived from the name, so
// their creations are identical and the loser simply finds the consumer.
func EnsureConsumer(ctx context.Context, nc *nats.Conn, durable, filter string, ackWait time.Duration) error {
	js, err := nc.JetStream()
	if err != nil {
		return fmt.Errorf("ensure consumer %s: %w", durable, err)
	}
	want := &nats.ConsumerConfig{
		Durable:        durable,
		DeliverSubject: "huddle.deliver." + durable,
		DeliverGroup:   durable,
		DeliverPolicy:  nats.DeliverAllPolicy,
		AckPolicy:      nats.AckExplicitPolicy,
		AckWait:        ackWait,
		MaxDeliver:     -1,
		FilterSubject:  filter,
	}
	info, err := js.ConsumerInfo(StreamName, durable, nats.Context(ctx))
	switch {
	case errors.Is(err, nats.ErrConsumerNotFound):
		_, err = js.AddConsumer(StreamName, want, nats.Context(ctx))
		if err != nil {
			if info, err2 := js.ConsumerInfo(StreamName, durable, nats.Context(ctx)); err2 == nil && matches(info.Config, *want) {
				return nil
			}
			return fmt.Errorf("ensure consumer %s: create: %w", durable, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("ensure consumer %s: %w", durable, err)
	case matches(info.Config, *want):
		return nil
	default:
		want.DeliverSubject = info.Config.DeliverSubject
		if _, err := js.UpdateConsumer(StreamName, want, nats.Context(ctx)); err != nil {
			return fmt.Errorf("ensure consumer %s: update: %w", durable, err)
		}
		return nil
	}
}

func matches(have, want nats.ConsumerConfig) bool {
	return have.DeliverGroup == want.DeliverGroup && have.AckWait == want.AckWait &&
		have.FilterSubject == want.FilterSubject && have.AckPolicy == want.AckPolicy &&
		have.DeliverSubject != ""
}
