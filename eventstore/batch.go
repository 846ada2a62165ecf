package eventstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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

// appendBatchOnce appends several commands with eventstore_append_commands (one statement);
// when the batch holds a command appended before (HU410) it appends them command by command
// (appendEachOnce), where each repeat gets its first run's result.
func (s *Store) appendBatchOnce(ctx context.Context, streamID string, expected int64, args []appendArgs) ([]AppendResult, error) {
	if len(args) == 1 {
		return s.appendEachOnce(ctx, streamID, expected, args)
	}
	out, err := s.appendSetOnce(ctx, streamID, expected, args)
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "HU410" {
		return s.appendEachOnce(ctx, streamID, expected, args)
	}
	if err != nil {
		return nil, appendError(streamID, expected, err)
	}
	s.notify(streamID, out[len(out)-1].LastVersion)
	return out, nil
}

const appendCommandsSQL = `SELECT global_position, tx_id, stream_version, prev_hash, hash
	FROM eventstore_append_commands($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`

// appendSetOnce is one eventstore_append_commands call: the batch's events in one INSERT.
func (s *Store) appendSetOnce(ctx context.Context, streamID string, expected int64, args []appendArgs) ([]AppendResult, error) {
	var cmdIDs, ids, types, data, metas, digests []string
	var sizes, versions []int32
	for _, a := range args {
		cmdIDs = append(cmdIDs, a.commandID)
		sizes = append(sizes, int32(len(a.ids)))
		ids, types, versions = append(ids, a.ids...), append(types, a.types...), append(versions, a.versions...)
		data, metas, digests = append(data, a.data...), append(metas, a.metas...), append(digests, a.digests...)
	}
	rows, err := s.pool.Query(ctx, appendCommandsSQL, streamID, expected, cmdIDs, sizes, ids, types, versions, data, metas,
		args[0].recordedAt, digests)
	if err != nil {
		return nil, err
	}
	type stored struct {
		position, version int64
		tx                uint64
		prev, hash        string
	}
	var got []stored
	for rows.Next() {
		var r stored
		if err := rows.Scan(&r.position, &r.tx, &r.version, &r.prev, &r.hash); err != nil {
			rows.Close()
			return nil, err
		}
		got = append(got, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(got) != len(ids) {
		return nil, fmt.Errorf("append to %s: store returned %d events for %d", streamID, len(got), len(ids))
	}
	// RETURNING follows no promised order: stream versions put the events back in theirs.
	slices.SortFunc(got, func(a, b stored) int { return cmp.Compare(a.version, b.version) })
	out := make([]AppendResult, len(args))
	k := 0
	for i, a := range args {
		res := AppendResult{StreamID: streamID}
		for j := range a.ids {
			r := got[k]
			k++
			e := RecordedEvent{Position: r.position, TxID: r.tx, StreamID: streamID, StreamVersion: r.version,
				EventID: a.ids[j], Type: a.types[j], SchemaVersion: int(a.versions[j]), Data: json.RawMessage(a.data[j]),
				Metadata: a.mds[j], RecordedAt: a.recordedAt, PrevHash: r.prev, Hash: r.hash}
			if err := s.upcasters.upcast(&e); err != nil {
				return nil, err
			}
			res.Events = append(res.Events, e)
		}
		res.FirstVersion = res.Events[0].StreamVersion
		last := res.Events[len(res.Events)-1]
		res.LastVersion, res.LastPosition = last.StreamVersion, last.Position
		out[i] = res
	}
	return out, nil
}

// appendEachOnce sends one eventstore_append per command in a single pgx batch. A batch
// outside an explicit transaction runs in one implicit transaction (one Sync at its end), so
// an error in any call rolls back the calls before it.
func (s *Store) appendEachOnce(ctx context.Context, streamID string, expected int64, args []appendArgs) ([]AppendResult, error) {
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
