package reminders

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/live"
)

// Scheduler fires the reminders that are due, on every instance at once: the rows it takes
// are locked until its transaction commits and skipped by the others (SKIP LOCKED), and the
// row moves on in the same transaction as the feed entry, so each reminder fires once.
type Scheduler struct {
	pool     *pgxpool.Pool
	notifier *live.Notifier
	log      *slog.Logger
	every    time.Duration
	max      int
	// Batch is how many reminders one transaction fires at most (more are taken by the next).
	Batch int
	// Poll is the longest the scheduler sleeps between looks: a message projected while it
	// sleeps gets its first reminder at most this late.
	Poll time.Duration

	fired atomic.Int64
}

// Fired is how many reminders this scheduler has fired (committed) since it was made.
func (s *Scheduler) Fired() int64 { return s.fired.Load() }

// NewScheduler returns a scheduler that reminds every interval, at most max times per
// recipient and message (max > 0, every > 0), pushing entries through notifier.
func NewScheduler(pool *pgxpool.Pool, notifier *live.Notifier, every time.Duration, max int, log *slog.Logger) *Scheduler {
	return &Scheduler{pool: pool, notifier: notifier, log: log, every: every, max: max,
		Batch: 500, Poll: min(time.Second, every/2)}
}

const (
	// sqlFire takes due rows no other scheduler holds and moves each on: one more reminder,
	// and the next one interval from now, or none ('infinity') after the last. A row already
	// at the limit (the limit was lowered) is closed without firing. Due is "last_at + every
	// <= now()", so the reminders_last_at index serves it.
	sqlFire = `WITH due AS (
			SELECT clinic_id, conversation_id, message_version, user_id, count FROM reminders
			WHERE last_at <= now() - $1::bigint * interval '1 microsecond'
			ORDER BY last_at LIMIT $2
			FOR UPDATE SKIP LOCKED)
		UPDATE reminders r
		SET count = CASE WHEN due.count < $3 THEN due.count + 1 ELSE due.count END,
			last_at = CASE WHEN due.count + 1 >= $3 THEN 'infinity'::timestamptz ELSE now() END
		FROM due
		WHERE r.clinic_id = due.clinic_id AND r.conversation_id = due.conversation_id
			AND r.message_version = due.message_version AND r.user_id = due.user_id
		RETURNING r.clinic_id, r.conversation_id, r.message_version, r.user_id, r.count, due.count < $3`
	// sqlNextDue is how long until the next reminder is due (negative: overdue; NULL: none).
	sqlNextDue = `SELECT extract(epoch FROM min(last_at) + $1::bigint * interval '1 microsecond' - now())::float8
		FROM reminders WHERE last_at < 'infinity'`
)

// Run fires reminders until ctx ends. Idle, it costs one indexed read per Poll.
func (s *Scheduler) Run(ctx context.Context) error {
	for {
		n, err := s.Fire(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if n == s.Batch {
			continue // more may be due
		}
		wait, err := s.untilNext(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// untilNext is how long to sleep: until the next reminder is due, at most Poll.
func (s *Scheduler) untilNext(ctx context.Context) (time.Duration, error) {
	var secs *float64
	if err := s.pool.QueryRow(ctx, sqlNextDue, s.every.Microseconds()).Scan(&secs); err != nil {
		return 0, fmt.Errorf("reminders: next due: %w", err)
	}
	if secs == nil {
		return s.Poll, nil
	}
	// A few milliseconds late rather than early: an early wake-up finds nothing due.
	wait := time.Duration(*secs*float64(time.Second)) + 5*time.Millisecond
	return max(min(wait, s.Poll), time.Millisecond), nil
}

// Fire fires the reminders due now (at most Batch) in one transaction and returns how many
// rows it moved on; the entries reach the streams after the commit.
func (s *Scheduler) Fire(ctx context.Context) (int, error) {
	var written []live.Written
	moved := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, sqlFire, s.every.Microseconds(), s.Batch, s.max)
		if err != nil {
			return err
		}
		var entries []live.Pending
		for rows.Next() {
			var clinic, conv, user string
			var version int64
			var count int
			var fired bool
			if err := rows.Scan(&clinic, &conv, &version, &user, &count, &fired); err != nil {
				rows.Close()
				return err
			}
			moved++
			if fired {
				entries = append(entries, live.Pending{
					To:   live.Target{ClinicID: clinic, UserID: user},
					Kind: live.KindReminder,
					Body: live.ReminderBody{ConversationID: conv, MessageID: domain.MessageID(conv, version), Count: count},
				})
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		written, err = live.AppendAll(ctx, tx, entries)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("reminders: fire: %w", err)
	}
	s.fired.Add(int64(len(written)))
	s.notifier.Deliver(written)
	if len(written) > 0 {
		s.log.Debug("reminders fired", "count", len(written))
	}
	return moved, nil
}
