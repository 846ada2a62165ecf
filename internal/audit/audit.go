// Package audit answers auditors straight from the event store, never from read models: a
// conversation's exact events, its state at any instant (replayed with the domain's own code),
// a streamed export, and hash-chain verification. Every read is itself recorded as an AuditRead
// event in the clinic's audit stream, which auditors can list too.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
)

// ErrNotFound means the stream does not exist in the auditor's clinic (whether it exists in
// another clinic is not revealed).
var ErrNotFound = errors.New("not found")

// Actions recorded in AuditRead events.
const (
	ActionEvents = "events"
	ActionState  = "state"
	ActionExport = "export"
	ActionVerify = "verify"
	ActionReads  = "reads"
)

// Auditor is who is reading.
type Auditor struct {
	UserID, ClinicID, CorrelationID string
}

// Service reads the store for auditors.
type Service struct {
	store *eventstore.Store
	now   func() time.Time
}

// New returns the audit service over store.
func New(store *eventstore.Store) *Service { return &Service{store: store, now: time.Now} }

// Record appends an AuditRead event for this read to the clinic's audit stream.
func (s *Service) Record(ctx context.Context, a Auditor, action, target, params string) error {
	typ, data, err := domain.Encode(domain.AuditRead{AuditorID: a.UserID, Action: action, Target: target, Params: params})
	if err != nil {
		return err
	}
	cmdID := uuid.NewString()
	_, err = s.store.Append(ctx, domain.AuditStream(a.ClinicID), eventstore.ExpectAny, []eventstore.EventData{{
		Type: typ, SchemaVersion: 1, Data: data,
		Metadata: eventstore.Metadata{ActorID: a.UserID, ClinicID: a.ClinicID, CorrelationID: a.CorrelationID, CommandID: cmdID},
	}}, cmdID)
	if err != nil {
		return fmt.Errorf("record audit read: %w", err)
	}
	return nil
}

// checkClinic makes sure the stream exists and belongs to the clinic.
func (s *Service) checkClinic(ctx context.Context, clinicID, streamID string) error {
	first, err := s.store.ReadStream(ctx, streamID, 1, 1)
	if err != nil {
		return fmt.Errorf("read %s: %w", streamID, err)
	}
	if len(first) == 0 || first[0].Metadata.ClinicID != clinicID {
		return ErrNotFound
	}
	return nil
}

// Events returns up to limit events of a conversation after the given stream version, and
// whether there are more. Deleted conversations are included: their events never go away.
func (s *Service) Events(ctx context.Context, a Auditor, conversationID string, afterVersion int64, limit int) ([]eventstore.RecordedEvent, bool, error) {
	stream := domain.ConversationStream(conversationID)
	return s.streamEvents(ctx, a, stream, ActionEvents, afterVersion, limit)
}

// AuditReads lists the clinic's own audit trail (who read what, when).
func (s *Service) AuditReads(ctx context.Context, a Auditor, afterVersion int64, limit int) ([]eventstore.RecordedEvent, bool, error) {
	stream := domain.AuditStream(a.ClinicID)
	events, err := s.store.ReadStream(ctx, stream, afterVersion+1, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("read audit trail: %w", err)
	}
	more := len(events) > limit
	if more {
		events = events[:limit]
	}
	if err := s.Record(ctx, a, ActionReads, stream, fmt.Sprintf("after=%d&limit=%d", afterVersion, limit)); err != nil {
		return nil, false, err
	}
	return events, more, nil
}

func (s *Service) streamEvents(ctx context.Context, a Auditor, stream, action string, afterVersion int64, limit int) ([]eventstore.RecordedEvent, bool, error) {
	if err := s.checkClinic(ctx, a.ClinicID, stream); err != nil {
		return nil, false, err
	}
	events, err := s.store.ReadStream(ctx, stream, afterVersion+1, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", stream, err)
	}
	more := len(events) > limit
	if more {
		events = events[:limit]
	}
	if err := s.Record(ctx, a, action, stream, fmt.Sprintf("after=%d&limit=%d", afterVersion, limit)); err != nil {
		return nil, false, err
	}
	return events, more, nil
}

// VerifyResult is the outcome of recomputing one stream's hash chain.
type VerifyResult struct {
	StreamID        string `json:"stream_id"`
	OK              bool   `json:"ok"`
	Events          int    `json:"events"`
	FirstBadVersion int64  `json:"first_bad_version,omitempty"`
	Reason          string `json:"reason,omitempty"`
}

// Verify recomputes a stream's hash chain; the stream must belong to the auditor's clinic.
func (s *Service) Verify(ctx context.Context, a Auditor, streamID string) (VerifyResult, error) {
	if err := s.checkClinic(ctx, a.ClinicID, streamID); err != nil {
		return VerifyResult{}, err
	}
	r, err := s.store.Verify(ctx, streamID)
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verify %s: %w", streamID, err)
	}
	if err := s.Record(ctx, a, ActionVerify, streamID, ""); err != nil {
		return VerifyResult{}, err
	}
	return VerifyResult{StreamID: streamID, OK: r.OK, Events: r.Events, FirstBadVersion: r.FirstBadVersion, Reason: r.Reason}, nil
}

// EventJSON is an event as auditors see it (API.md "Audit").
type EventJSON struct {
	Position      int64           `json:"position"`
	StreamID      string          `json:"stream_id"`
	StreamVersion int64           `json:"stream_version"`
	EventID       string          `json:"event_id"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schema_version"`
	Data          json.RawMessage `json:"data"`
	Metadata      MetadataJSON    `json:"metadata"`
	RecordedAt    time.Time       `json:"recorded_at"`
	Hash          string          `json:"hash"`
	PrevHash      string          `json:"prev_hash"`
}

// MetadataJSON is an event's metadata as auditors see it.
type MetadataJSON struct {
	ActorID       string `json:"actor_id"`
	ClinicID      string `json:"clinic_id"`
	CorrelationID string `json:"correlation_id"`
	CausationID   string `json:"causation_id"`
	CommandID     string `json:"command_id"`
}

// ToJSON renders a stored event for auditors.
func ToJSON(e eventstore.RecordedEvent) EventJSON {
	return EventJSON{
		Position: e.Position, StreamID: e.StreamID, StreamVersion: e.StreamVersion, EventID: e.EventID,
		Type: e.Type, SchemaVersion: e.SchemaVersion, Data: e.Data,
		Metadata: MetadataJSON{ActorID: e.Metadata.ActorID, ClinicID: e.Metadata.ClinicID,
			CorrelationID: e.Metadata.CorrelationID, CausationID: e.Metadata.CausationID, CommandID: e.Metadata.CommandID},
		RecordedAt: e.RecordedAt.UTC(), Hash: e.Hash, PrevHash: e.PrevHash,
	}
}
