package live

import (
	"encoding/json"
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

// Notifier publishes users' new entries after the transaction that appended them committed.
type Notifier struct {
	nc  *nats.Conn
	log *slog.Logger
}

// NewNotifier publishes on nc.
func NewNotifier(nc *nats.Conn, log *slog.Logger) *Notifier { return &Notifier{nc: nc, log: log} }

// maxPushBytes bounds what one ping carries; a user's entries beyond it are sent as an empty
// ping, and their streams read them from the feed.
const maxPushBytes = 32 << 10

// ping is what Deliver publishes: the user it is for (two ids can share a subject, see
// Subject) and their entries.
type ping struct {
	ClinicID string   `json:"c"`
	UserID   string   `json:"u"`
	Entries  []pushed `json:"e"`
}

// pushed is one entry as a ping carries it.
type pushed struct {
	Seq  int64           `json:"s"`
	Kind string          `json:"k"`
	Body json.RawMessage `json:"b"`
}

// Deliver publishes each user's entries (in the order written) as one ping: streams that have
// sent everything before them write them without reading the feed. A lost ping only delays
// delivery until the stream's next wake-up (ping or heartbeat), because streams fall back on
// the durable feed whenever what they are handed does not follow on from what they sent.
func (n *Notifier) Deliver(written []Written) {
	if n == nil || n.nc == nil || len(written) == 0 {
		return
	}
	var order []Target
	byUser := map[Target][]pushed{}
	for _, w := range written {
		if _, ok := byUser[w.To]; !ok {
			order = append(order, w.To)
		}
		byUser[w.To] = append(byUser[w.To], pushed{Seq: w.Seq, Kind: w.Kind, Body: w.Body})
	}
	for _, to := range order {
		data, err := json.Marshal(ping{ClinicID: to.ClinicID, UserID: to.UserID, Entries: byUser[to]})
		if err != nil || len(data) > maxPushBytes {
			data = nil
		}
		if err := n.nc.Publish(Subject(to), data); err != nil {
			n.log.Warn("live ping failed", "clinic", to.ClinicID, "user", to.UserID, "err", err)
		}
	}
}

// Notify pings each target once without entries: their streams read the feed.
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

// entriesOf decodes a ping: whom its entries are for, and the entries; nil entries for an
// empty or undecodable ping (read the feed).
func entriesOf(data []byte) (Target, []Entry) {
	if len(data) == 0 {
		return Target{}, nil
	}
	var p ping
	if err := json.Unmarshal(data, &p); err != nil || len(p.Entries) == 0 {
		return Target{}, nil
	}
	out := make([]Entry, len(p.Entries))
	for i, e := range p.Entries {
		out[i] = Entry{Seq: e.Seq, Kind: e.Kind, Body: e.Body}
	}
	return Target{ClinicID: p.ClinicID, UserID: p.UserID}, out
}

// Hub wakes this instance's streams. It holds one NATS subscription for every user's pings
// (huddle.live.>) and hands each ping to the streams watching that user's subject, so an idle
// connection costs a map entry and a channel, not a subscription (and the goroutine nats.go runs
// for each); a ping for a user with no stream here is dropped in process.
type Hub struct {
	nc       *nats.Conn
	mu       sync.Mutex
	sub      *nats.Subscription
	watchers map[string]map[*watcher]struct{} // subject → streams
}

// watcher is one stream's interest: a channel to signal (Watch) or a function to call with
// the ping's entries (WatchFunc).
type watcher struct {
	to Target
	ch chan struct{}
	fn func([]Entry)
}

// notify hands w the entries of a ping for forTarget; a stream of another user sharing the
// subject gets a bare wake-up and reads its own feed.
func (w *watcher) notify(forTarget Target, entries []Entry) {
	if forTarget != w.to {
		entries = nil
	}
	if w.fn != nil {
		w.fn(entries)
		return
	}
	select {
	case w.ch <- struct{}{}:
	default: // already pending: the stream will read everything new anyway
	}
}

// NewHub subscribes on nc at the first Watch.
func NewHub(nc *nats.Conn) *Hub {
	return &Hub{nc: nc, watchers: map[string]map[*watcher]struct{}{}}
}

// subjectAll matches every Subject.
const subjectAll = "huddle.live.>"

// Watch returns a channel that receives a value (coalesced, never blocking the hub) whenever
// the user's feed may have grown, and a function that stops watching.
func (h *Hub) Watch(to Target) (<-chan struct{}, func(), error) {
	ch := make(chan struct{}, 1)
	stop, err := h.add(to, &watcher{to: to, ch: ch})
	if err != nil {
		return nil, nil, err
	}
	return ch, stop, nil
}

// WatchFunc calls fn whenever the user's feed may have grown, with the new entries the ping
// carried (nil: read the feed; they may also not follow on from what the stream sent, after a
// lost ping), until the returned function is called. fn runs on the hub's delivery goroutine
// with the hub locked: it must return at once (hand the work to another goroutine), must not
// call the hub, and must not modify the entries (every stream of the user shares them). A
// stream that holds no goroutine of its own while idle uses it (api's parked streams).
func (h *Hub) WatchFunc(to Target, fn func([]Entry)) (func(), error) {
	return h.add(to, &watcher{to: to, fn: fn})
}

func (h *Hub) add(to Target, w *watcher) (func(), error) {
	subject := Subject(to)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sub == nil {
		sub, err := h.nc.Subscribe(subjectAll, func(m *nats.Msg) { h.wake(m.Subject, m.Data) })
		if err != nil {
			return nil, fmt.Errorf("live: subscribe: %w", err)
		}
		// Flush makes the server register the interest before the caller reads the feed;
		// otherwise a ping sent in between could be lost (until the next heartbeat). Once
		// registered, later streams need no round trip.
		if err := h.nc.FlushTimeout(5 * time.Second); err != nil {
			_ = sub.Unsubscribe()
			return nil, fmt.Errorf("live: subscribe: %w", err)
		}
		// A burst of pings (a message to a large group) must not be dropped as a slow consumer.
		_ = sub.SetPendingLimits(-1, -1)
		h.sub = sub
	}
	ws := h.watchers[subject]
	if ws == nil {
		ws = map[*watcher]struct{}{}
		h.watchers[subject] = ws
	}
	ws[w] = struct{}{}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			delete(ws, w)
			if len(ws) == 0 {
				delete(h.watchers, subject)
			}
		})
	}
	return stop, nil
}

// Watched reports how many users (subjects) have a stream on this instance.
func (h *Hub) Watched() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.watchers)
}

func (h *Hub) wake(subject string, data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ws := h.watchers[subject]
	if len(ws) == 0 {
		return // nobody here: do not even decode
	}
	to, entries := entriesOf(data)
	for w := range ws {
		w.notify(to, entries)
	}
}
