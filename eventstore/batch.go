package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// CommandEvents are the events one command decided, under that command's id.
type CommandEvents struct {
	CommandID string
	Events    []EventData
}

// AppendCommands appends several commands' events to streamID in one transaction and one
// round trip: the first expects expectedVersion, each next one the version the one before it
// leaves. It is all or nothing: a version conflict, or any other error, writes none of them.
// Each command keeps its own id, and so its own idempotency and result: a command whose id
// was appended before comes back as that first run's result with Duplicate set (it writes
// nothing, so when another command follows it that one's expected version no longer holds
// and the whole batch fails with a conflict; callers that may hold repeats check first).
//
// This is what lets a stream's sequencer commit every command that queued up while the
// previous append ran at the cost of one (ADR 0010).
func (s *Store) AppendCommands(ctx context.Context, streamID string, expectedVersion int64, cmds []CommandEvents) ([]AppendResult, error) {
	switch {
	case streamID == "":
		return nil, errors.New("append: empty stream id")
	case len(cmds) == 0:
		return nil, fmt.Errorf("append to %s: %w", streamID, ErrNoEvents)
	case expectedVersion < ExpectAny:
		return nil, fmt.Errorf("append to %s: invalid expected version %d", streamID, expectedVersion)
	}
	now := time.Now()
	args := make([]appendArgs, len(cmds))
	for i, c := range cmds {
		if len(c.Events) == 0 {
			return nil, fmt.Errorf("append to %s: command %q: %w", streamID, c.CommandID, ErrNoEvents)
		}
		a, err := prepareAppend(streamID, c.Events, c.CommandID, now)
		if err != nil {
			return nil, err
		}
		args[i] = a
	}
	for attempt := 1; ; attempt++ {
		out, err := s.appendBatchOnce(ctx, streamID, expectedVersion, args)
		if err == nil {
			return out, nil
		}
		if attempt < maxTxRetries && retryableAppend(err) && ctx.Err() == nil {
			continue
		}
		return nil, err
	}
}

// appendBatchOnce sends one eventstore_append per command in a single pgx batch. A batch
// outside an explicit transaction runs in one implicit transaction (one Sync at its end), so
// an error in any call rolls back the calls before it.
func (s *Store) appendBatchOnce(ctx context.Context, streamID string, expected int64, args []appendArgs) ([]AppendResult, error) {
	b := &pgx.Batch{}
	want := make([]int64, len(args))
	next := expected
	for i, a := range args {
		want[i] = next
		b.Queue(appendSQL, streamID, next, a.commandID, a.ids, a.types, a.versions, a.data, a.metas, a.recordedAt, a.digests)
		if next != ExpectAny {
			next += int64(len(a.ids))
		}
	}
	br := s.pool.SendBatch(ctx, b)
	out := make([]AppendResult, 0, len(args))
	var firstErr error
	for i, a := range args {
		rows, err := br.Query()
		if err != nil {
			firstErr = appendError(streamID, want[i], err)
			break
		}
		res, err := s.scanAppend(rows, streamID, want[i], a)
		if err != nil {
			firstErr = err
			break
		}
		out = append(out, res)
	}
	if err := br.Close(); err != nil && firstErr == nil {
		firstErr = appendError(streamID, expected, err)
	}
	if firstErr != nil {
		return nil, firstErr
	}
	for _, r := range out {
		if !r.Duplicate {
			s.notify(streamID, out[len(out)-1].LastVersion)
			break
		}
	}
	return out, nil
}
