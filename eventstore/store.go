package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNoEvents is returned by Append when given nothing to append.
var ErrNoEvents = errors.New("no events to append")

// NotifyChannel is the LISTEN/NOTIFY channel the store notifies after appends commit; the
// payload is "<stream id>:<last version>" of one of the appends it covers.
const NotifyChannel = "huddle_events"

// DefaultNotifyDelay is how long a Store gathers appends into one notification.
const DefaultNotifyDelay = 2 * time.Millisecond

// Store is the Postgres event store. It is safe for concurrent use.
type Store struct {
	pool        *pgxpool.Pool
	upcasters   *Upcasters
	log         *slog.Logger
	notifyDelay time.Duration
	appended    func(streamID string)
	// notifyPending is set while a notification covering the latest appends is scheduled.
	notifyPending atomic.Bool
}

// Option configures a Store.
type Option func(*Store)

// WithUpcasters makes the store use u instead of a copy of the package's default registry.
func WithUpcasters(u *Upcasters) Option { return func(s *Store) { s.upcasters = u } }

// WithLogger sets the logger for the store's best-effort work (snapshots).
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// WithAppended makes the store call fn with the stream of every append it committed, at once and
// on the appending goroutine (fn must not block): the projections of this process start on it
// without waiting for the relay and NATS to bring the event back (they read the store anyway).
func WithAppended(fn func(streamID string)) Option { return func(s *Store) { s.appended = fn } }

// WithNotifyDelay sets how long appends are gathered into one NOTIFY (default 2ms); a
// negative value turns notifications off (readers then rely on polling).
func WithNotifyDelay(d time.Duration) Option { return func(s *Store) { s.notifyDelay = d } }

// New returns a store over pool. The schema comes from internal/migrations. Upcasters
// registered with the package-level RegisterUpcaster before New are included.
func New(pool *pgxpool.Pool, opts ...Option) *Store {
	s := &Store{pool: pool, upcasters: defaultUpcasters.clone(), log: slog.Default(), notifyDelay: DefaultNotifyDelay}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Pool returns the store's connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// RegisterUpcaster adds an upcaster to this store's registry (see Upcasters.Register).
func (s *Store) RegisterUpcaster(eventType string, fromVersion int, fn UpcastFunc) {
	s.upcasters.Register(eventType, fromVersion, fn)
}

const appendSQL = `SELECT duplicate, global_position, tx_id, stream_id, stream_version, event_id,
	type, schema_version, data, metadata, recorded_at, prev_hash, hash
	FROM eventstore_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`

// maxTxRetries bounds retries of a whole append on serialization failure, deadlock, or a
// concurrent first run of the same command id.
const maxTxRetries = 5

// Append writes events to the end of streamID in one transaction.
//
// expectedVersion is ExpectAny, ExpectNoStream, or the stream's current version; otherwise the
// error is a *ErrWrongExpectedVersion (errors.Is(err, ErrConflict)). A non-empty commandID
// makes the append idempotent: if that command was appended before, nothing is written and the
// first run's result comes back with Duplicate set, whatever expectedVersion says. An empty
// Metadata.CommandID is filled with commandID.
func (s *Store) Append(ctx context.Context, streamID string, expectedVersion int64, events []EventData, commandID string) (AppendResult, error) {
	if streamID == "" {
		return AppendResult{}, errors.New("append: empty stream id")
	}
	if len(events) == 0 {
		return AppendResult{}, fmt.Errorf("append to %s: %w", streamID, ErrNoEvents)
	}
	if expectedVersion < ExpectAny {
		return AppendResult{}, fmt.Errorf("append to %s: invalid expected version %d", streamID, expectedVersion)
	}
	args, err := prepareAppend(streamID, events, commandID, time.Now())
	if err != nil {
		return AppendResult{}, err
	}
	for attempt := 1; ; attempt++ {
		res, err := s.appendOnce(ctx, streamID, expectedVersion, args)
		if err == nil {
			return res, nil
		}
		if attempt < maxTxRetries && retryableAppend(err) && ctx.Err() == nil {
			continue
		}
		return AppendResult{}, err
	}
}

// appendArgs are one command's events, encoded for eventstore_append.
type appendArgs struct {
	commandID  string
	ids, types []string
	versions   []int32
	data       []string
	metas      []string
	mds        []Metadata
	recordedAt time.Time
	digests    []string
}

// prepareAppend validates and encodes events for streamID, with their hash-chain digests.
func prepareAppend(streamID string, events []EventData, commandID string, now time.Time) (appendArgs, error) {
	// One timestamp for the batch, truncated to what timestamptz keeps so the digest computed
	// now matches the one Verify computes from the stored row.
	recordedAt := now.UTC().Truncate(time.Microsecond)
	n := len(events)
	a := appendArgs{commandID: commandID, ids: make([]string, n), types: make([]string, n), versions: make([]int32, n),
		data: make([]string, n), metas: make([]string, n), mds: make([]Metadata, n), recordedAt: recordedAt,
		digests: make([]string, n)}
	for i, e := range events {
		if e.Type == "" {
			return appendArgs{}, fmt.Errorf("append to %s: event %d has no type", streamID, i)
		}
		id := uuid.New()
		if e.EventID != "" {
			var err error
			if id, err = uuid.Parse(e.EventID); err != nil {
				return appendArgs{}, fmt.Errorf("append to %s: event id %q: %w", streamID, e.EventID, err)
			}
		}
		sv := e.SchemaVersion
		if sv == 0 {
			sv = 1
		}
		raw := []byte(e.Data)
		if len(raw) == 0 {
			raw = []byte("null")
		}
		canonData, err := canonicalJSON(raw)
		if err != nil {
			return appendArgs{}, fmt.Errorf("append to %s: event %d data: %w", streamID, i, err)
		}
		md := e.Metadata
		if md.CommandID == "" {
			md.CommandID = commandID
		}
		// The canonical encoding is valid JSON too, so it is also what we store.
		canonMeta := canonicalMetadata(md)
		a.ids[i] = id.String()
		a.types[i] = e.Type
		a.versions[i] = int32(sv)
		a.data[i] = string(raw)
		a.metas[i] = string(canonMeta)
		a.mds[i] = md
		a.digests[i] = eventDigest(streamID, a.ids[i], e.Type, sv, canonData, canonMeta, recordedAt)
	}
	return a, nil
}

func (s *Store) appendOnce(ctx context.Context, streamID string, expected int64, a appendArgs) (AppendResult, error) {
	rows, err := s.pool.Query(ctx, appendSQL, streamID, expected, a.commandID, a.ids, a.types, a.versions, a.data, a.metas,
		a.recordedAt, a.digests)
	if err != nil {
		return AppendResult{}, appendError(streamID, expected, err)
	}
	res, err := s.scanAppend(rows, streamID, expected, a)
	if err != nil {
		return AppendResult{}, err
	}
	if !res.Duplicate {
		s.notify(streamID, res.LastVersion)
	}
	return res, nil
}

// scanAppend reads what one eventstore_append call returned.
func (s *Store) scanAppend(rows pgx.Rows, streamID string, expected int64, a appendArgs) (AppendResult, error) {
	defer rows.Close()
	res := AppendResult{StreamID: streamID}
	for rows.Next() {
		var dup bool
		var e RecordedEvent
		if err := scanEvent(rows, &e, &dup); err != nil {
			return AppendResult{}, fmt.Errorf("append to %s: %w", streamID, err)
		}
		if !dup {
			// New events come back without data and metadata: they are what we sent.
			i := len(res.Events)
			e.Data = json.RawMessage(a.data[i])
			e.Metadata = a.mds[i]
		}
		res.Duplicate = dup
		res.Events = append(res.Events, e)
	}
	if err := rows.Err(); err != nil {
		return AppendResult{}, appendError(streamID, expected, err)
	}
	if len(res.Events) == 0 {
		return AppendResult{}, fmt.Errorf("append to %s: store returned no events", streamID)
	}
	for i := range res.Events {
		if err := s.upcasters.upcast(&res.Events[i]); err != nil {
			return AppendResult{}, err
		}
	}
	res.FirstVersion = res.Events[0].StreamVersion
	last := res.Events[len(res.Events)-1]
	res.LastVersion = last.StreamVersion
	res.LastPosition = last.Position
	if res.Duplicate {
		res.StreamID = last.StreamID
	}
	return res, nil
}

// notify tells LISTENers (the relay) that events were committed. NOTIFY inside the append
// transaction would take PostgreSQL's database-wide notify lock at every commit, which halved
// append throughput in our benchmark; instead each Store sends one NOTIFY, after commit, for
// all appends that finished within notifyDelay. Readers poll as a fallback, so a notification
// lost to a crash only delays delivery.
func (s *Store) notify(streamID string, version int64) {
	if s.appended != nil {
		s.appended(streamID)
	}
	if s.notifyDelay < 0 || s.notifyPending.Swap(true) {
		return
	}
	payload := streamID + ":" + strconv.FormatInt(version, 10)
	time.AfterFunc(s.notifyDelay, func() {
		// Clear first: an append finishing after this point schedules the next notification.
		s.notifyPending.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := s.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, NotifyChannel, payload); err != nil {
			s.log.Debug("notify failed; readers will poll", "err", err.Error())
		}
	})
}

func appendError(streamID string, expected int64, err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "HU409" {
		actual, _ := strconv.ParseInt(pg.Detail, 10, 64)
		return &ErrWrongExpectedVersion{StreamID: streamID, ExpectedVersion: expected, ActualVersion: actual}
	}
	return fmt.Errorf("append to %s: %w", streamID, err)
}

// retryableAppend: serialization failure, deadlock, or a unique violation on commands (two
// first runs of one command id on different streams; the retry finds the winner's result).
func retryableAppend(err error) bool {
	var pg *pgconn.PgError
	if !errors.As(err, &pg) {
		return false
	}
	switch pg.Code {
	case "40001", "40P01":
		return true
	case "23505":
		return pg.ConstraintName == "events_command_id"
	}
	return false
}

// eventColumns is the column list scanEvent reads (after an optional leading boolean).
const eventColumns = `global_position, tx_id, stream_id, stream_version, event_id::text, type,
	schema_version, data, metadata, recorded_at, prev_hash, hash`

func scanEvent(rows pgx.Rows, e *RecordedEvent, lead ...any) error {
	var meta []byte
	var sv int32
	dest := append(lead, &e.Position, &e.TxID, &e.StreamID, &e.StreamVersion, &e.EventID, &e.Type,
		&sv, &e.Data, &meta, &e.RecordedAt, &e.PrevHash, &e.Hash)
	if err := rows.Scan(dest...); err != nil {
		return fmt.Errorf("scan event: %w", err)
	}
	e.SchemaVersion = int(sv)
	e.RecordedAt = e.RecordedAt.UTC()
	if meta == nil {
		return nil
	}
	if err := json.Unmarshal(meta, &e.Metadata); err != nil {
		return fmt.Errorf("event %s metadata: %w", e.EventID, err)
	}
	return nil
}

func (s *Store) collect(rows pgx.Rows, what string) ([]RecordedEvent, error) {
	defer rows.Close()
	var out []RecordedEvent
	for rows.Next() {
		var e RecordedEvent
		if err := scanEvent(rows, &e); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if err := s.upcasters.upcast(&e); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

const readStreamSQL = `SELECT ` + eventColumns + ` FROM events
	WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version LIMIT $3`

// ReadStream returns streamID's events from fromVersion (inclusive) in version order, at most
// limit of them (limit <= 0: all).
func (s *Store) ReadStream(ctx context.Context, streamID string, fromVersion int64, limit int) ([]RecordedEvent, error) {
	return s.ReadStreamIn(ctx, s.pool, streamID, fromVersion, limit)
}

// Querier runs a query: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// ReadStreamIn is ReadStream on q, typically the caller's own transaction: a caller that holds
// a transaction (and locks) while it reads must not need a second pool connection to do so, or
// enough such callers at once exhaust the pool and wait on each other for good.
func (s *Store) ReadStreamIn(ctx context.Context, q Querier, streamID string, fromVersion int64, limit int) ([]RecordedEvent, error) {
	var lim *int64
	if limit > 0 {
		l := int64(limit)
		lim = &l
	}
	rows, err := q.Query(ctx, readStreamSQL, streamID, fromVersion, lim)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", streamID, err)
	}
	return s.collect(rows, "read stream "+streamID)
}

// readAllSQL is the gap-safe read. Rows come in (tx_id, global_position) order and only from
// transactions older than the oldest one still running: a transaction that took a lower
// position but commits later has a tx_id at or above that horizon, so the reader waits for it
// instead of passing it by.
const readAllSQL = `SELECT ` + eventColumns + ` FROM events
	WHERE (tx_id, global_position) > ($1::xid8, $2::bigint)
	  AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
	ORDER BY tx_id, global_position LIMIT $3`

// ReadAll returns up to limit events (limit <= 0: 1000) strictly after the checkpoint in the
// gap-safe global order. Resume from Checkpoint{TxID, Position} of the last event returned.
func (s *Store) ReadAll(ctx context.Context, after Checkpoint, limit int) ([]RecordedEvent, error) {
	return s.readAll(ctx, s.pool, after, limit)
}

// ReadAllIn is ReadAll on q, typically the caller's own transaction (see ReadStreamIn).
func (s *Store) ReadAllIn(ctx context.Context, q Querier, after Checkpoint, limit int) ([]RecordedEvent, error) {
	return s.readAll(ctx, q, after, limit)
}

type querier = Querier

func (s *Store) readAll(ctx context.Context, q querier, after Checkpoint, limit int) ([]RecordedEvent, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := q.Query(ctx, readAllSQL, after.TxID, after.Position, int64(limit))
	if err != nil {
		return nil, fmt.Errorf("read all: %w", err)
	}
	return s.collect(rows, "read all")
}

// CheckpointOf is the position of e in the ReadAll order.
func CheckpointOf(e RecordedEvent) Checkpoint { return Checkpoint{TxID: e.TxID, Position: e.Position} }

// StreamVersion returns the stream's current version, 0 when it has no events.
func (s *Store) StreamVersion(ctx context.Context, streamID string) (int64, error) {
	var v int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(max(stream_version), 0) FROM events WHERE stream_id = $1`, streamID).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("stream version %s: %w", streamID, err)
	}
	return v, nil
}

// LoadCheckpoint returns the named ReadAll checkpoint (zero when never saved). Readers of
// "all" should keep their checkpoints here so RepairAfterRestore can rewrite them.
func (s *Store) LoadCheckpoint(ctx context.Context, name string) (Checkpoint, error) {
	return loadCheckpoint(ctx, s.pool, name)
}

// SaveCheckpoint stores the named ReadAll checkpoint.
func (s *Store) SaveCheckpoint(ctx context.Context, name string, cp Checkpoint) error {
	return saveCheckpoint(ctx, s.pool, name, cp)
}

type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func loadCheckpoint(ctx context.Context, q queryRower, name string) (Checkpoint, error) {
	return LoadCheckpointIn(ctx, q, name)
}

func saveCheckpoint(ctx context.Context, q queryRower, name string, cp Checkpoint) error {
	_, err := q.Exec(ctx, `INSERT INTO eventstore_checkpoints (name, tx_id, position) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET tx_id = excluded.tx_id, position = excluded.position, updated_at = now()`,
		name, cp.TxID, cp.Position)
	if err != nil {
		return fmt.Errorf("save checkpoint %s: %w", name, err)
	}
	return nil
}
