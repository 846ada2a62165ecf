package eventstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Expected-version sentinels for Append. A non-negative value means "the stream's current
// version must be exactly this" (0 = the stream exists with no events is impossible; versions
// start at 1, so 0 behaves like NoStream).
const (
	// ExpectAny appends whatever the stream's version is.
	ExpectAny int64 = -1
	// ExpectNoStream appends only if the stream has no events yet.
	ExpectNoStream int64 = 0
)

// Metadata travels with every event. ClinicID scopes every read; CommandID makes appends
// idempotent. A new field must also go into canonicalMetadata (hash.go), which the hash chain
// covers; its test fails until it does.
type Metadata struct {
	ActorID       string `json:"actor_id"`
	ClinicID      string `json:"clinic_id"`
	CorrelationID string `json:"correlation_id"`
	CausationID   string `json:"causation_id"`
	CommandID     string `json:"command_id"`
}

// EventData is an event about to be appended.
type EventData struct {
	EventID       string // uuid; generated when empty
	Type          string
	SchemaVersion int // 1 when zero
	Data          json.RawMessage
	Metadata      Metadata
}

// RecordedEvent is an event as stored, already upcast to its type's current schema version.
type RecordedEvent struct {
	Position      int64 // global_position
	TxID          uint64
	StreamID      string
	StreamVersion int64
	EventID       string
	Type          string
	SchemaVersion int
	Data          json.RawMessage
	Metadata      Metadata
	RecordedAt    time.Time
	PrevHash      string // hex sha256; empty for a stream's first event
	Hash          string // hex sha256
}

// Category is the part of the stream id before the first '-' ("conversation", "member", …).
func (e RecordedEvent) Category() string { return Category(e.StreamID) }

// Category returns the part of a stream id before the first '-'.
func Category(streamID string) string {
	for i := 0; i < len(streamID); i++ {
		if streamID[i] == '-' {
			return streamID[:i]
		}
	}
	return streamID
}

// AppendResult says where an append landed.
type AppendResult struct {
	StreamID string
	// FirstVersion and LastVersion bound the versions written (or, for a duplicate command,
	// the versions the first run wrote).
	FirstVersion, LastVersion int64
	// LastPosition is the global position of the last event written.
	LastPosition int64
	// Duplicate is true when the command id had been appended before; nothing was written.
	Duplicate bool
	// Events are the recorded events (for a duplicate: the ones the first run wrote).
	Events []RecordedEvent
}

// Checkpoint is a position in the gap-safe global order: (tx_id, global_position).
type Checkpoint struct {
	TxID     uint64 `json:"tx_id"`
	Position int64  `json:"position"`
}

// ErrWrongExpectedVersion is the typed optimistic-concurrency conflict.
type ErrWrongExpectedVersion struct {
	StreamID        string
	ExpectedVersion int64
	ActualVersion   int64
}

func (e *ErrWrongExpectedVersion) Error() string {
	return fmt.Sprintf("stream %s: expected version %d, found %d", e.StreamID, e.ExpectedVersion, e.ActualVersion)
}

// ErrConflict matches any *ErrWrongExpectedVersion with errors.Is.
var ErrConflict = errors.New("wrong expected version")

// Is lets errors.Is(err, ErrConflict) match.
func (e *ErrWrongExpectedVersion) Is(target error) bool { return target == ErrConflict }
