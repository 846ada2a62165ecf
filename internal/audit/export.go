package audit

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
)

// Export formats.
const (
	FormatJSONL = "jsonl"
	FormatCSV   = "csv"
)

// exportBatch is how many events are held in memory at once, whatever the stream's length.
const exportBatch = 500

// csvHeader names the CSV columns; data and metadata stay JSON so nothing is lost.
var csvHeader = []string{"position", "stream_id", "stream_version", "event_id", "type", "schema_version",
	"recorded_at", "actor_id", "clinic_id", "correlation_id", "causation_id", "command_id", "data", "prev_hash", "hash"}

// Export writes a conversation's full history to w in batches (constant memory). Call
// CheckExport first so a missing conversation can still be answered with 404 before any byte
// is written.
func (s *Service) Export(ctx context.Context, a Auditor, conversationID, format string, w io.Writer) error {
	stream := domain.ConversationStream(conversationID)
	if err := s.Record(ctx, a, ActionExport, stream, "format="+format); err != nil {
		return err
	}
	var write func(eventstore.RecordedEvent) error
	var flush func() error
	switch format {
	case FormatJSONL:
		enc := json.NewEncoder(w)
		write = func(e eventstore.RecordedEvent) error { return enc.Encode(ToJSON(e)) }
		flush = func() error { return nil }
	case FormatCSV:
		cw := csv.NewWriter(w)
		if err := cw.Write(csvHeader); err != nil {
			return err
		}
		write = func(e eventstore.RecordedEvent) error {
			m := e.Metadata
			return cw.Write([]string{strconv.FormatInt(e.Position, 10), e.StreamID, strconv.FormatInt(e.StreamVersion, 10),
				e.EventID, e.Type, strconv.Itoa(e.SchemaVersion), e.RecordedAt.UTC().Format(time.RFC3339Nano),
				m.ActorID, m.ClinicID, m.CorrelationID, m.CausationID, m.CommandID, string(e.Data), e.PrevHash, e.Hash})
		}
		flush = func() error { cw.Flush(); return cw.Error() }
	default:
		return fmt.Errorf("unknown export format %q", format)
	}
	for from := int64(1); ; {
		batch, err := s.store.ReadStream(ctx, stream, from, exportBatch)
		if err != nil {
			return fmt.Errorf("export %s: %w", stream, err)
		}
		for _, e := range batch {
			if err := write(e); err != nil {
				return fmt.Errorf("export write: %w", err)
			}
		}
		if err := flush(); err != nil {
			return fmt.Errorf("export write: %w", err)
		}
		if len(batch) < exportBatch {
			return nil
		}
		from = batch[len(batch)-1].StreamVersion + 1
	}
}

// CheckExport reports ErrNotFound for a conversation the auditor's clinic does not have.
func (s *Service) CheckExport(ctx context.Context, a Auditor, conversationID string) error {
	return s.checkClinic(ctx, a.ClinicID, domain.ConversationStream(conversationID))
}
