package live

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/huddle-chat/huddle/eventstore"
)

// Subject is the core NATS subject that pings one user's streams. Ids may hold '.' (a NATS
// token separator) and other characters NATS gives meaning to; they become '_'. Two ids that
// map to the same subject only share wake-ups: each stream reads its own feed by the real id.
func Subject(to Target) string {
	return "huddle.live." + eventstore.SubjectToken(to.ClinicID) + "." + eventstore.SubjectToken(to.UserID)
}

// Notifier pings users after the transaction that appended to their feeds committed.
type Notifier struct {
	nc  *nats.Conn
	log *slog.Logger
}

// NewNotifier publishes pings on nc.
func NewNotifier(nc *nats.Conn, log *slog.Logger) *Notifier { return &Notifier{nc: nc, log: log} }

// Notify pings each target once. A lost ping only delays delivery until the stream's next
// wake-up (ping or heartbeat), because streams always read the durable feed.
func (n *Notifier) Notify(targets ...Target) {
	if n == nil || n.nc == nil {
		return
	}
	seen := make(map[Target]bool, len(targets))
	for _, t := range targets {
		if seen[t] {
			continue
		}
		seen[t] = true
		if err := n.nc.Publish(Subject(t), nil); err != nil {
			n.log.Warn("live ping failed", "clinic", t.ClinicID, "user", t.UserID, "err", err)
		}
	}
}

// Hub shares one NATS subscription per connected user among that user's streams on this
// instance, so thousands of idle connections cost one subscription each at most.
type Hub struct {
	nc    *nats.Conn
	mu    sync.Mutex
	users map[Target]*userSub
}

type userSub struct {
	sub      *nats.Subscription
	watchers map[chan struct{}]struct{}
}

// NewHub subscribes on nc on demand.
func NewHub(nc *nats.Conn) *Hub { return &Hub{nc: nc, users: map[Target]*userSub{}} }

// Watch returns a channel that receives a value (coalesced, never blocking the hub) whenever
// the user's feed may have grown, and a function that stops watching.
func (h *Hub) Watch(to Target) (<-chan struct{}, func(), error) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	us, ok := h.users[to]
	if !ok {
		us = &userSub{watchers: map[chan struct{}]struct{}{}}
		sub, err := h.nc.Subscribe(Subject(to), func(*nats.Msg) { h.wake(to) })
		if err != nil {
			return nil, nil, fmt.Errorf("live: subscribe: %w", err)
		}
		// Flush makes the server register the interest before the caller reads the feed;
		// otherwise a ping sent in between could be lost (until the next heartbeat).
		if err := h.nc.FlushTimeout(5 * time.Second); err != nil {
			_ = sub.Unsubscribe()
			return nil, nil, fmt.Errorf("live: subscribe: %w", err)
		}
		us.sub = sub
		h.users[to] = us
	}
	us.watchers[ch] = struct{}{}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			delete(us.watchers, ch)
			if len(us.watchers) == 0 {
				_ = us.sub.Unsubscribe()
				delete(h.users, to)
			}
		})
	}
	return ch, stop, nil
}

// Subscriptions reports how many NATS subscriptions the hub holds (one per watched user).
func (h *Hub) Subscriptions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.users)
}

func (h *Hub) wake(to Target) {
	h.mu.Lock()
	defer h.mu.Unlock()
	us, ok := h.users[to]
	if !ok {
		return
	}
	for ch := range us.watchers {
		select {
		case ch <- struct{}{}:
		default: // already pending: the stream will read everything new anyway
		}
	}
}
