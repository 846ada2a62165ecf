package eventstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-chat/huddle/internal/metrics"
)

// RelayConfig tunes a Relay. The zero value is usable.
type RelayConfig struct {
	// Name keys the relay's checkpoint in eventstore_checkpoints (default "relay").
	Name string
	// LockKey is the session advisory lock that makes one relay active per database.
	LockKey int64
	// BatchSize is how many events one ReadAll fetches (default 500).
	BatchSize int
	// PollInterval is the fallback wake-up when no notification arrives (default 500ms).
	PollInterval time.Duration
	// StandbyInterval is how often a standby tries the lock (default 1s).
	StandbyInterval time.Duration
	// MinBackoff and MaxBackoff bound the exponential pause after a publish or database error
	// (defaults 100ms and 30s).
	MinBackoff, MaxBackoff time.Duration
}

// DefaultRelayLockKey is the advisory lock id of the relay ("huddle-r").
const DefaultRelayLockKey int64 = 0x6875646c652d72

func (c *RelayConfig) setDefaults() {
	if c.Name == "" {
		c.Name = "relay"
	}
	if c.LockKey == 0 {
		c.LockKey = DefaultRelayLockKey
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 500 * time.Millisecond
	}
	if c.StandbyInterval <= 0 {
		c.StandbyInterval = time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
}

// Relay publishes the store's events to NATS JetStream in the gap-safe order, at least once.
//
// Exactly one relay per database is active: it holds a session advisory lock on a dedicated
// connection, which also LISTENs for appends. Others stand by and try the lock every
// StandbyInterval; when the active relay's session ends (process killed, ctx cancelled,
// connection lost) the lock is released and a standby takes over from the stored checkpoint.
// The checkpoint is written after the publisher returned, i.e. after JetStream acked; a crash
// in between republishes, and JetStream drops the repeat by its Nats-Msg-Id (the event id).
type Relay struct {
	store *Store
	pub   message.Publisher
	cfg   RelayConfig
	log   *slog.Logger
	m     relayMetrics

	running, active, standby, dbOK atomic.Bool
	// lagMeasured is when updateLag last ran (only the publishing goroutine touches it).
	lagMeasured time.Time
}

// lagEvery bounds how often the relay measures its lag: the measure scans what is stored
// after the checkpoint, and run after every batch it was the database's largest cost per
// message (0.8 ms a call, once a message at 200 messages/s).
const lagEvery = time.Second

type relayMetrics struct {
	lagEvents, lagSeconds, active prometheus.Gauge
	published, publishErrors      prometheus.Counter
}

// NewRelay returns a relay publishing s's events through pub (the Watermill NATS JetStream
// publisher, with TrackMsgId and synchronous acks). reg may be nil.
func NewRelay(s *Store, pub message.Publisher, cfg RelayConfig, log *slog.Logger, reg prometheus.Registerer) *Relay {
	cfg.setDefaults()
	if log == nil {
		log = slog.Default()
	}
	r := &Relay{store: s, pub: pub, cfg: cfg, log: log.With("component", "relay")}
	r.m = relayMetrics{
		lagEvents: metrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "huddle_relay_lag_events",
			Help: "Events stored but not yet published (capped at 100000)."})),
		lagSeconds: metrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "huddle_relay_lag_seconds",
			Help: "Age of the oldest event not yet published."})),
		active: metrics.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "huddle_relay_active",
			Help: "1 while this instance's relay holds the lock and publishes."})),
		published: metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "huddle_relay_published_total",
			Help: "Events published and acked."})),
		publishErrors: metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "huddle_relay_publish_errors_total",
			Help: "Failed publish attempts."})),
	}
	return r
}

// Healthy reports whether Run is running, either active or standing by, with its database
// session up. A NATS outage does not make the relay unhealthy: it backs off and catches up,
// and huddle_relay_lag_seconds shows the delay.
func (r *Relay) Healthy() bool {
	return r.running.Load() && (r.active.Load() || r.standby.Load()) && r.dbOK.Load()
}

// Active reports whether this relay currently holds the lock.
func (r *Relay) Active() bool { return r.active.Load() }

// Run relays until ctx ends, then returns nil. Database errors end the current session; Run
// backs off and starts a new one (standing by again if another relay took over meanwhile).
func (r *Relay) Run(ctx context.Context) error {
	r.running.Store(true)
	defer r.running.Store(false)
	backoff := r.cfg.MinBackoff
	for {
		err := r.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.dbOK.Store(false)
		r.log.Warn("relay session ended, retrying", "err", fmt.Sprint(err), "backoff", backoff)
		if !sleep(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, r.cfg.MaxBackoff)
	}
}

// session runs one database session: stand by until the lock is ours, then publish. Closing
// the session's connection releases the lock.
func (r *Relay) session(ctx context.Context) error {
	pc, err := r.store.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	conn := pc.Hijack()
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(cctx) //nolint:errcheck // closing ends the session either way
	}()
	r.dbOK.Store(true)
	defer r.standby.Store(false)
	for {
		var got bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, r.cfg.LockKey).Scan(&got); err != nil {
			return fmt.Errorf("try lock: %w", err)
		}
		if got {
			break
		}
		if !r.standby.Swap(true) {
			r.log.Info("relay standing by: another instance is active")
		}
		if !sleep(ctx, r.cfg.StandbyInterval) {
			return ctx.Err()
		}
	}
	// The relay's only writes are its checkpoint. Losing the newest ones to a crash costs a
	// republish of events JetStream deduplicates by Nats-Msg-Id (and projectors skip), so
	// they need not wait for a WAL flush: on a durable cluster that is one fsync per batch
	// saved for the appends and projections that do need theirs.
	if _, err := conn.Exec(ctx, `SET synchronous_commit TO off`); err != nil {
		return fmt.Errorf("relay session settings: %w", err)
	}
	r.standby.Store(false)
	r.active.Store(true)
	r.m.active.Set(1)
	defer func() {
		r.active.Store(false)
		r.m.active.Set(0)
	}()
	r.log.Info("relay active")
	return r.publishLoop(ctx, conn)
}

func (r *Relay) publishLoop(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, `LISTEN `+NotifyChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// The checkpoint is read after LISTEN, so anything committed before is found by the first
	// read and anything after wakes us.
	cp, err := loadCheckpoint(ctx, conn, r.cfg.Name)
	if err != nil {
		return err
	}
	for {
		if cp, err = r.drain(ctx, conn, cp); err != nil {
			return err
		}
		if err := r.updateLag(ctx, conn, cp); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, r.cfg.PollInterval)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("wait for notification: %w", err)
		}
	}
}

// drain publishes everything ReadAll returns after cp and returns the new checkpoint.
func (r *Relay) drain(ctx context.Context, conn *pgx.Conn, cp Checkpoint) (Checkpoint, error) {
	for {
		// Read on the lock's own connection: if it is gone, so is the lock, and we stop.
		events, err := r.store.readAll(ctx, conn, cp, r.cfg.BatchSize)
		if err != nil {
			return cp, err
		}
		if len(events) == 0 {
			return cp, nil
		}
		saved := cp
		for _, e := range events {
			if err := r.publish(ctx, conn, e, cp, &saved); err != nil {
				return cp, err
			}
			cp = CheckpointOf(e)
		}
		if err := saveCheckpoint(ctx, conn, r.cfg.Name, cp); err != nil {
			return cp, err
		}
		if len(events) < r.cfg.BatchSize {
			return cp, nil
		}
	}
}

// publish publishes e, retrying with capped exponential backoff until it is acked or ctx ends.
// Before the first pause it saves cp (the progress so far), so a relay that dies during a long
// NATS outage does not redo the batch.
func (r *Relay) publish(ctx context.Context, conn *pgx.Conn, e RecordedEvent, cp Checkpoint, saved *Checkpoint) error {
	backoff := r.cfg.MinBackoff
	for {
		err := r.pub.Publish(Subject(e), ToMessage(e))
		if err == nil {
			r.m.published.Inc()
			return nil
		}
		r.m.publishErrors.Inc()
		r.log.Warn("publish failed, backing off", "event_id", e.EventID, "stream", e.StreamID,
			"version", e.StreamVersion, "err", err.Error(), "backoff", backoff)
		if *saved != cp {
			if err := saveCheckpoint(ctx, conn, r.cfg.Name, cp); err != nil {
				return err
			}
			*saved = cp
		}
		if err := r.updateLag(ctx, conn, cp); err != nil {
			return err
		}
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, r.cfg.MaxBackoff)
	}
}

// updateLag measures what is stored but not yet published, including rows of transactions
// still in flight. The count is capped so a large backlog costs a bounded scan.
func (r *Relay) updateLag(ctx context.Context, conn *pgx.Conn, cp Checkpoint) error {
	if time.Since(r.lagMeasured) < lagEvery {
		return nil
	}
	r.lagMeasured = time.Now()
	var n int64
	var oldest *time.Time
	err := conn.QueryRow(ctx, `SELECT count(*), min(recorded_at) FROM (
		SELECT recorded_at FROM events WHERE (tx_id, global_position) > ($1::xid8, $2::bigint)
		ORDER BY tx_id, global_position LIMIT 100000) s`, cp.TxID, cp.Position).Scan(&n, &oldest)
	if err != nil {
		return fmt.Errorf("measure lag: %w", err)
	}
	r.m.lagEvents.Set(float64(n))
	if oldest == nil {
		r.m.lagSeconds.Set(0)
	} else {
		r.m.lagSeconds.Set(max(0, time.Since(*oldest).Seconds()))
	}
	return nil
}

// sleep waits d or until ctx ends; it reports whether the full pause elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
