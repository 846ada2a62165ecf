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

// Hub wakes this instance's streams. It holds one NATS subscription for every user's pings
// (huddle.live.>) and hands each ping to the streams watching that user's subject, so an idle
// connection costs a map entry and a channel, not a subscription (and the goroutine nats.go runs
// for each); a ping for a user with no stream here is dropped in process.
type Hub struct {
	nc       *nats.Conn
	mu       sync.Mutex
	sub      *nats.Subscription
	watchers map[string]map[chan struct{}]struct{} // subject → streams
}

// NewHub subscribes on nc at the first Watch.
func NewHub(nc *nats.Conn) *Hub {
	return &Hub{nc: nc, watchers: map[string]map[chan struct{}]struct{}{}}
}

// subjectAll matches every Subject.
const subjectAll = "huddle.live.>"

// Watch returns a channel that receives a value (coalesced, never blocking the hub) whenever
// the user's feed may have grown, and a function that stops watching.
func (h *Hub) Watch(to Target) (<-chan struct{}, func(), error) {
	ch := make(chan struct{}, 1)
	subject := Subject(to)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sub == nil {
		sub, err := h.nc.Subscribe(subjectAll, func(m *nats.Msg) { h.wake(m.Subject) })
		if err != nil {
			return nil, nil, fmt.Errorf("live: subscribe: %w", err)
		}
		// Flush makes the server register the interest before the caller reads the feed;
		// otherwise a ping sent in between could be lost (until the next heartbeat). Once
		// registered, later streams need no round trip.
		if err := h.nc.FlushTimeout(5 * time.Second); err != nil {
			_ = sub.Unsubscribe()
			return nil, nil, fmt.Errorf("live: subscribe: %w", err)
		}
		// A burst of pings (a message to a large group) must not be dropped as a slow consumer.
		_ = sub.SetPendingLimits(-1, -1)
		h.sub = sub
	}
	ws := h.watchers[subject]
	if ws == nil {
		ws = map[chan struct{}]struct{}{}
		h.watchers[subject] = ws
	}
	ws[ch] = struct{}{}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			delete(ws, ch)
			if len(ws) == 0 {
				delete(h.watchers, subject)
			}
		})
	}
	return ch, stop, nil
}

// Watched reports how many users (subjects) have a stream on this instance.
func (h *Hub) Watched() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.watchers)
}

func (h *Hub) wake(subject string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.watchers[subject] {
		select {
		case ch <- struct{}{}:
		default: // already pending: the stream will read everything new anyway
		}
	}
}
