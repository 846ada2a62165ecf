package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
)

// Aggregate tells Load and Execute how to rebuild a decider's state S from a stream.
type Aggregate[S any] struct {
	Initial func() S
	Evolve  func(state S, e RecordedEvent) (S, error)
	// SnapshotVersion enables snapshots when > 0: S is stored as JSON in the streams row and a
	// snapshot with another SnapshotVersion is ignored. Bump it whenever S's JSON shape or
	// Evolve's meaning changes.
	SnapshotVersion int
	// SnapshotEvery is how many events may follow the stored snapshot before Execute writes a
	// new one (default 100).
	SnapshotEvery int
	// MaxAttempts bounds Execute's load-decide-append attempts on version conflicts (default:
	// none; attempts go on until the context's deadline).
	MaxAttempts int
}

const (
	defaultSnapshotEvery = 100
	loadPage             = 1000
)

// Load rebuilds streamID's state: the snapshot (when enabled and current) plus newer events.
// version is the stream version the state reflects (0 for a stream with no events).
func Load[S any](ctx context.Context, s *Store, streamID string, a Aggregate[S]) (state S, version int64, err error) {
	state, version, _, err = load(ctx, s, streamID, a)
	return state, version, err
}

// load also returns the version of the snapshot it started from.
func load[S any](ctx context.Context, s *Store, streamID string, a Aggregate[S]) (S, int64, int64, error) {
	state := a.Initial()
	var version, snapVersion int64
	if a.SnapshotVersion > 0 {
		var snap []byte
		var schema int32
		err := s.pool.QueryRow(ctx, `SELECT snapshot, snapshot_version, snapshot_schema FROM streams WHERE stream_id = $1`,
			streamID).Scan(&snap, &snapVersion, &schema)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			// No snapshot yet: replay from the start.
		case err != nil:
			return state, 0, 0, fmt.Errorf("load %s: snapshot: %w", streamID, err)
		}
		if err == nil && snap != nil && int(schema) == a.SnapshotVersion {
			if err := json.Unmarshal(snap, &state); err != nil {
				return state, 0, 0, fmt.Errorf("load %s: decode snapshot: %w", streamID, err)
			}
			version = snapVersion
		} else {
			state, snapVersion = a.Initial(), 0
		}
	}
	state, version, err := readOn(ctx, s, streamID, a, state, version)
	if err != nil {
		return state, 0, 0, fmt.Errorf("load %s: %w", streamID, err)
	}
	return state, version, snapVersion, nil
}

// readOn evolves state (at version) with the stream's events after version, page by page, and
// returns the state and version it reached.
func readOn[S any](ctx context.Context, s *Store, streamID string, a Aggregate[S], state S, version int64) (S, int64, error) {
	for {
		events, err := s.ReadStream(ctx, streamID, version+1, loadPage)
		if err != nil {
			return state, version, err
		}
		for _, e := range events {
			if state, err = a.Evolve(state, e); err != nil {
				return state, version, fmt.Errorf("evolve version %d: %w", e.StreamVersion, err)
			}
			version = e.StreamVersion
		}
		if len(events) < loadPage {
			return state, version, nil
		}
	}
}

// Execute runs one command against streamID: if commandID was appended before it returns that
// first result (Duplicate) without calling decide; otherwise it loads the state, calls decide,
// and appends what decide returned expecting the version it loaded. On a version conflict it
// starts over with a short jittered pause, until ctx's deadline (10 s when it has none) or
// Aggregate.MaxAttempts attempts when that is set; then it returns ErrBusy (wrapping the last
// *ErrWrongExpectedVersion). decide's own errors come back unwrapped. When decide returns no
// events nothing is appended and the result carries the current version (FirstVersion =
// LastVersion + 1, no Events).
//
// Execute suits streams written now and then (a clinic's directory, a member's settings); a
// conversation's commands go through a Sequencer, which holds the state and batches appends.
func Execute[S any](ctx context.Context, s *Store, streamID string, a Aggregate[S], commandID string,
	decide func(state S, version int64) ([]EventData, error)) (AppendResult, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	var lastErr error
	// fail reports a store error; when the deadline cut a retry short, the conflicts are why.
	fail := func(err error) (AppendResult, error) {
		if ctx.Err() != nil && lastErr != nil {
			return AppendResult{}, fmt.Errorf("execute on %s: %w (last: %w; then %v)", streamID, expired(ctx), lastErr, err)
		}
		return AppendResult{}, err
	}
	for attempt := 0; a.MaxAttempts <= 0 || attempt < a.MaxAttempts; attempt++ {
		if attempt > 0 {
			// Jitter spreads colliding writers apart so the next round does not collide again.
			pause := time.Duration(rand.Int64N(int64(time.Millisecond)<<min(attempt, 6))) + time.Millisecond
			select {
			case <-ctx.Done():
				return AppendResult{}, fmt.Errorf("execute on %s: %w (last: %w)", streamID, expired(ctx), lastErr)
			case <-time.After(pause):
			}
		}
		if commandID != "" {
			res, found, err := s.commandResult(ctx, commandID)
			if err != nil {
				return fail(err)
			}
			if found {
				return res, nil
			}
		}
		state, version, snapVersion, err := load(ctx, s, streamID, a)
		if err != nil {
			return fail(err)
		}
		events, err := decide(state, version)
		if err != nil {
			return AppendResult{}, err
		}
		if len(events) == 0 {
			return AppendResult{StreamID: streamID, FirstVersion: version + 1, LastVersion: version}, nil
		}
		res, err := s.Append(ctx, streamID, version, events, commandID)
		if errors.Is(err, ErrConflict) {
			lastErr = err
			continue
		}
		if err != nil {
			return fail(err)
		}
		if !res.Duplicate {
			maybeSnapshot(ctx, s, streamID, a, state, snapVersion, res)
		}
		return res, nil
	}
	return AppendResult{}, fmt.Errorf("execute on %s: gave up after %d attempts: %w (last: %w)", streamID, a.MaxAttempts, ErrBusy, lastErr)
}

// commandResult returns the first result of commandID if it was appended before.
func (s *Store) commandResult(ctx context.Context, commandID string) (AppendResult, bool, error) {
	var streamID string
	var first, last int64
	err := s.pool.QueryRow(ctx, `SELECT stream_id, stream_version, command_last_version FROM events WHERE command_id = $1`,
		commandID).Scan(&streamID, &first, &last)
	if errors.Is(err, pgx.ErrNoRows) {
		return AppendResult{}, false, nil
	}
	if err != nil {
		return AppendResult{}, false, fmt.Errorf("command %s: %w", commandID, err)
	}
	events, err := s.ReadStream(ctx, streamID, first, int(last-first+1))
	if err != nil {
		return AppendResult{}, false, fmt.Errorf("command %s: %w", commandID, err)
	}
	if len(events) == 0 {
		return AppendResult{}, false, fmt.Errorf("command %s: its events %s@%d..%d are missing", commandID, streamID, first, last)
	}
	lastEvent := events[len(events)-1]
	return AppendResult{StreamID: streamID, FirstVersion: first, LastVersion: last, LastPosition: lastEvent.Position,
		Duplicate: true, Events: events}, true, nil
}

// commandResults returns the first results of those of ids that were appended before, in one
// query (and one stream read per id found).
func (s *Store) commandResults(ctx context.Context, ids []string) (map[string]AppendResult, error) {
	rows, err := s.pool.Query(ctx, `SELECT command_id FROM events WHERE command_id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("commands %v: %w", ids, err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("commands %v: %w", ids, err)
	}
	out := make(map[string]AppendResult, len(found))
	for _, id := range found {
		res, ok, err := s.commandResult(ctx, id)
		if err != nil {
			return nil, err
		}
		if ok {
			out[id] = res
		}
	}
	return out, nil
}

// maybeSnapshot stores the state after res when enough events followed the last snapshot. It
// is best effort: the events are committed, so a failed snapshot only costs a longer load
// next time and must not fail the command.
func maybeSnapshot[S any](ctx context.Context, s *Store, streamID string, a Aggregate[S], state S, snapVersion int64, res AppendResult) {
	every := int64(a.SnapshotEvery)
	if every <= 0 {
		every = defaultSnapshotEvery
	}
	if a.SnapshotVersion <= 0 || res.LastVersion-snapVersion < every {
		return
	}
	var err error
	for _, e := range res.Events {
		if state, err = a.Evolve(state, e); err != nil {
			s.log.Warn("snapshot skipped: evolve failed", "stream", streamID, "version", e.StreamVersion, "err", err)
			return
		}
	}
	writeSnapshot(ctx, s, streamID, a, state, res.LastVersion)
}

// writeSnapshot stores state as streamID's snapshot at version; it reports whether it did.
func writeSnapshot[S any](ctx context.Context, s *Store, streamID string, a Aggregate[S], state S, version int64) bool {
	snap, err := json.Marshal(state)
	if err != nil {
		s.log.Warn("snapshot skipped: encode failed", "stream", streamID, "err", err)
		return false
	}
	// The condition keeps a slower writer from replacing a newer snapshot with an older one.
	_, err = s.pool.Exec(ctx, `INSERT INTO streams AS s (stream_id, snapshot, snapshot_version, snapshot_schema)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (stream_id) DO UPDATE SET snapshot = excluded.snapshot, snapshot_version = excluded.snapshot_version,
			snapshot_schema = excluded.snapshot_schema, updated_at = now()
		WHERE s.snapshot_version < excluded.snapshot_version OR s.snapshot_schema <> excluded.snapshot_schema`,
		streamID, snap, version, int32(a.SnapshotVersion))
	if err != nil {
		s.log.Warn("snapshot write failed", "stream", streamID, "version", version, "err", err)
		return false
	}
	return true
}
