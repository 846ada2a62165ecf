package eventstore

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// SubjectPrefix is the NATS subject prefix of every published event.
const SubjectPrefix = "huddle.events."

// Message metadata (NATS header) names. The ce-* ones are the CloudEvents 1.0 NATS binding, so
// integrators need nothing of ours to read an event. HeaderMediaType (content-type) carries
// ce-datacontenttype's value again: the binding maps datacontenttype to content-type, which is
// what stock CloudEvents SDKs read; ce-datacontenttype stays for integrators who read it.
const (
	HeaderSpecVersion   = "ce-specversion"
	HeaderID            = "ce-id"
	HeaderType          = "ce-type"
	HeaderSource        = "ce-source"
	HeaderTime          = "ce-time"
	HeaderSubject       = "ce-subject"
	HeaderContentType   = "ce-datacontenttype"
	HeaderMediaType     = "content-type"
	HeaderStreamID      = "huddle-stream-id"
	HeaderStreamVersion = "huddle-stream-version"
	HeaderPosition      = "huddle-position"
	HeaderTxID          = "huddle-tx-id"
	HeaderSchemaVersion = "huddle-schema-version"
	HeaderMetadata      = "huddle-metadata"
	HeaderPrevHash      = "huddle-prev-hash"
	HeaderHash          = "huddle-hash"
)

// Subject is the NATS subject of e: huddle.events.<clinic>.<category>.<Type>. Characters that
// NATS gives meaning to ('.', '*', '>', whitespace) become '_' in each token; an empty token is
// "_".
func Subject(e RecordedEvent) string {
	return SubjectPrefix + SubjectToken(e.Metadata.ClinicID) + "." + SubjectToken(e.Category()) + "." + SubjectToken(e.Type)
}

// SubjectToken makes s usable as one token of a NATS subject: '.', '*', '>' and whitespace
// become '_', and an empty token is "_".
func SubjectToken(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', '*', '>', ' ', '\t', '\r', '\n':
			return '_'
		}
		return r
	}, s)
}

// ToMessage turns e into a Watermill message: UUID = event id (so with TrackMsgId the
// JetStream Nats-Msg-Id is the event id and a republish is deduplicated), payload = the data
// JSON, everything else in metadata headers.
func ToMessage(e RecordedEvent) *message.Message {
	m := message.NewMessage(e.EventID, message.Payload(e.Data))
	md, _ := json.Marshal(e.Metadata) // a struct of strings always marshals
	m.Metadata = message.Metadata{
		HeaderSpecVersion:   "1.0",
		HeaderID:            e.EventID,
		HeaderType:          e.Type,
		HeaderSource:        "huddle/" + e.Metadata.ClinicID,
		HeaderTime:          formatTime(e.RecordedAt),
		HeaderSubject:       e.StreamID,
		HeaderContentType:   "application/json",
		HeaderMediaType:     "application/json",
		HeaderStreamID:      e.StreamID,
		HeaderStreamVersion: strconv.FormatInt(e.StreamVersion, 10),
		HeaderPosition:      strconv.FormatInt(e.Position, 10),
		HeaderTxID:          strconv.FormatUint(e.TxID, 10),
		HeaderSchemaVersion: strconv.Itoa(e.SchemaVersion),
		HeaderMetadata:      string(md),
		HeaderPrevHash:      e.PrevHash,
		HeaderHash:          e.Hash,
	}
	return m
}

// FromMessage rebuilds the RecordedEvent that ToMessage encoded.
func FromMessage(m *message.Message) (RecordedEvent, error) {
	md := m.Metadata
	e := RecordedEvent{
		EventID:  md.Get(HeaderID),
		Type:     md.Get(HeaderType),
		StreamID: md.Get(HeaderStreamID),
		PrevHash: md.Get(HeaderPrevHash),
		Hash:     md.Get(HeaderHash),
		Data:     json.RawMessage(append([]byte(nil), m.Payload...)),
	}
	if e.EventID == "" {
		e.EventID = m.UUID
	}
	if e.Type == "" || e.StreamID == "" {
		return RecordedEvent{}, fmt.Errorf("message %s: missing %s or %s", m.UUID, HeaderType, HeaderStreamID)
	}
	var err error
	if e.StreamVersion, err = strconv.ParseInt(md.Get(HeaderStreamVersion), 10, 64); err != nil {
		return RecordedEvent{}, fmt.Errorf("message %s: %s: %w", m.UUID, HeaderStreamVersion, err)
	}
	if e.Position, err = strconv.ParseInt(md.Get(HeaderPosition), 10, 64); err != nil {
		return RecordedEvent{}, fmt.Errorf("message %s: %s: %w", m.UUID, HeaderPosition, err)
	}
	if e.TxID, err = strconv.ParseUint(md.Get(HeaderTxID), 10, 64); err != nil {
		return RecordedEvent{}, fmt.Errorf("message %s: %s: %w", m.UUID, HeaderTxID, err)
	}
	if e.SchemaVersion, err = strconv.Atoi(md.Get(HeaderSchemaVersion)); err != nil {
		return RecordedEvent{}, fmt.Errorf("message %s: %s: %w", m.UUID, HeaderSchemaVersion, err)
	}
	if e.RecordedAt, err = time.Parse(time.RFC3339Nano, md.Get(HeaderTime)); err != nil {
		return RecordedEvent{}, fmt.Errorf("message %s: %s: %w", m.UUID, HeaderTime, err)
	}
	e.RecordedAt = e.RecordedAt.UTC()
	if err := json.Unmarshal([]byte(md.Get(HeaderMetadata)), &e.Metadata); err != nil {
		return RecordedEvent{}, fmt.Errorf("message %s: %s: %w", m.UUID, HeaderMetadata, err)
	}
	return e, nil
}
