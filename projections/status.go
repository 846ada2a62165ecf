package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-chat/huddle/eventstore"
	sharedmetrics "github.com/huddle-chat/huddle/internal/metrics"
)

type metrics struct {
	applied, duplicates, poison, foreign *prometheus.CounterVec
	expedited                            *prometheus.CounterVec
	position, lagEvents, lagSeconds      *prometheus.GaugeVec
	watermark                            *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "huddle_projection_events_applied_total",
			Help: "Events applied to a projection's read model (live, including retried ones)."}, []string{"projection"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "huddle_projection_duplicates_total",
			Help: "Deliveries skipped because their stream version was already applied."}, []string{"projection"}),
		poison: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "huddle_projection_poison_total",
			Help: "Events skipped after repeated non-transient failures (see projection_poison)."}, []string{"projection"}),
		expedited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "huddle_projection_expedited_events_total",
			Help: "Events applied ahead of the reader's order because a read of their clinic waited (expedite.go)."}, []string{"projection"}),
		foreign: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "huddle_projection_foreign_messages_total",
			Help: "Messages on huddle.events.> naming no event the store holds (forged, or another store's), or undecodable; ignored."}, []string{"projection"}),
		position: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "huddle_projection_position",
			Help: "Highest global event position a projection has applied."}, []string{"projection"}),
		lagEvents: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "huddle_projection_lag_events",
			Help: "Events in the store for this projection beyond its highest applied position (capped)."}, []string{"projection"}),
		lagSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "huddle_projection_lag_seconds",
			Help: "Age of the oldest event this projection has not applied yet; 0 when caught up."}, []string{"projection"}),
		watermark: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "huddle_projection_watermark_position",
			Help: "Global position up to which a projection has applied everything; Huddle-Min-Position reads wait for it (ADR 0008)."}, []string{"projection"}),
	}
	// A second engine on one registry (tests) shares the first one's collectors.
	m.applied = sharedmetrics.Register(reg, m.applied)
	m.duplicates = sharedmetrics.Register(reg, m.duplicates)
	m.poison = sharedmetrics.Register(reg, m.poison)
	m.foreign = sharedmetrics.Register(reg, m.foreign)
	m.expedited = sharedmetrics.Register(reg, m.expedited)
	m.position = sharedmetrics.Register(reg, m.position)
	m.lagEvents = sharedmetrics.Register(reg, m.lagEvents)
	m.lagSeconds = sharedmetrics.Register(reg, m.lagSeconds)
	m.watermark = sharedmetrics.Register(reg, m.watermark)
	return m
}

// Status is one projection's progress.
type Status struct {
	Name string `json:"name"`
	// Position is the highest global position applied; LastEventAt that event's time.
	Position    int64      `json:"position"`
	LastEventAt *time.Time `json:"last_event_at,omitempty"`
	Streams     int64      `json:"streams"`
	// LagEvents counts the projection's events in the store that it has not applied (capped at
	// lagCap): every one after the watermark whose stream's checkpoint is short of it, so an
	// event in flight or stuck behind others counts, however far Position got. LagSeconds is
	// the age of the oldest of them; 0 when caught up.
	LagEvents  int64   `json:"lag_events"`
	LagSeconds float64 `json:"lag_seconds"`
	Poisoned   int64   `json:"poisoned"`
	// Watermark is the global position up to which everything is applied (ADR 0008):
	// Huddle-Min-Position reads wait for it (or their clinic's). Far behind Position means one
	// stream is stuck.
	Watermark int64 `json:"watermark_position"`
}

const lagCap = 1_000_000

// sqlStatus reads the projection's checkpoint summary.
const sqlStatus = `SELECT coalesce(max(position), 0), max(recorded_at), count(*),
		(SELECT count(*) FROM projection_poison WHERE projection = $1)
	FROM projection_checkpoints WHERE projection = $1`

// Status reports every projection's position, watermark (advanced as far as it goes now) and
// true lag behind the store.
func (e *Engine) Status(ctx context.Context) ([]Status, error) {
	out := make([]Status, 0, len(e.models))
	for _, p := range e.models {
		mark, err := e.Watermark(ctx, p.Name)
		if err != nil {
			return nil, err
		}
		s := Status{Name: p.Name, Watermark: mark.Position}
		if err := e.pool.QueryRow(ctx, sqlStatus, p.Name).Scan(&s.Position, &s.LastEventAt, &s.Streams, &s.Poisoned); err != nil {
			return nil, fmt.Errorf("projection %s status: %w", p.Name, err)
		}
		if err := e.lag(ctx, p, mark, &s); err != nil {
			return nil, fmt.Errorf("projection %s status: %w", p.Name, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// lag sets s's LagEvents and LagSeconds: the events of p after its watermark that p has not
// applied by its streams' checkpoints (a stream's events there are consecutive versions, see
// eventstore.StreamSpan), and the age of the oldest.
func (e *Engine) lag(ctx context.Context, p *ReadModel, mark eventstore.Checkpoint, s *Status) error {
	spans, err := e.store.StreamSpansIn(ctx, e.pool, mark, eventstore.Checkpoint{}, p.Categories)
	if err != nil {
		return err
	}
	streams := make([]string, len(spans))
	for i, sp := range spans {
		streams[i] = sp.StreamID
	}
	at, err := checkpointsIn(ctx, e.pool, p.Name, streams)
	if err != nil {
		return err
	}
	var oldest time.Time
	older := func(t time.Time) {
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	for _, sp := range spans {
		applied := at[sp.StreamID]
		if applied >= sp.Last {
			continue
		}
		s.LagEvents += sp.Last - max(applied, sp.First-1)
		if applied < sp.First {
			older(sp.FirstRecordedAt)
			continue
		}
		evs, err := e.store.ReadStreamIn(ctx, e.pool, sp.StreamID, applied+1, 1)
		if err != nil {
			return err
		}
		if len(evs) == 1 {
			older(evs[0].RecordedAt)
		}
	}
	s.LagEvents = min(s.LagEvents, lagCap)
	if !oldest.IsZero() {
		s.LagSeconds = max(time.Since(oldest).Seconds(), 0)
	}
	return nil
}

// refreshLoop keeps the lag gauges current until ctx ends.
func (e *Engine) refreshLoop(ctx context.Context) {
	t := time.NewTicker(e.StatusEvery)
	defer t.Stop()
	for {
		if st, err := e.Status(ctx); err == nil {
			for _, s := range st {
				e.m.position.WithLabelValues(s.Name).Set(float64(s.Position))
				e.m.lagEvents.WithLabelValues(s.Name).Set(float64(s.LagEvents))
				e.m.lagSeconds.WithLabelValues(s.Name).Set(s.LagSeconds)
				e.m.watermark.WithLabelValues(s.Name).Set(float64(s.Watermark))
			}
		} else if ctx.Err() == nil {
			e.log.Warn("projection: status refresh failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
