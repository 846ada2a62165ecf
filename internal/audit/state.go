package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
)

// ErrNotYet means the conversation had not started at the requested instant.
var ErrNotYet = errors.New("the conversation did not exist at that time")

// State is a conversation as it stood at an instant, rebuilt by replaying its events with the
// domain's own EvolveConversation.
type State struct {
	ID           string             `json:"id"`
	Kind         string             `json:"kind"`
	Title        string             `json:"title"`
	OwnerID      *string            `json:"owner_id"`
	Deleted      bool               `json:"deleted"`
	At           time.Time          `json:"at"`
	Version      int64              `json:"version"`
	Participants []StateParticipant `json:"participants"`
	Messages     []StateMessage     `json:"messages"`
}

// StateParticipant is everyone who had taken part by then, with their role and state.
type StateParticipant struct {
	ID    string `json:"id"`
	Role  string `json:"role"`
	State string `json:"state"`
}

// StateMessage is one message as it stood (text, file or system line). Unlike a member's view,
// a recalled message keeps its text and file: auditors see what was sent, each edit and the
// recall, with who did it and when.
type StateMessage struct {
	ID       string          `json:"id"`
	Version  int64           `json:"stream_version"`
	SenderID string          `json:"sender_id"`
	Kind     string          `json:"kind"`
	Text     string          `json:"text,omitempty"`
	File     *StateFile      `json:"file,omitempty"`
	System   *StateSystemRef `json:"system,omitempty"`
	SentAt   time.Time       `json:"sent_at"`
	Priority string          `json:"priority"`
	// EditedAt is the latest edit's time; OriginalText the text as sent, once edited; Edits
	// every edit in order.
	EditedAt     *time.Time  `json:"edited_at,omitempty"`
	OriginalText *string     `json:"original_text,omitempty"`
	Edits        []StateEdit `json:"edits,omitempty"`
	// Recalled and Recall: withdrawn, by whom and when.
	Recalled bool         `json:"recalled,omitempty"`
	Recall   *StateRecall `json:"recall,omitempty"`
	// Acks: on urgent messages, who acknowledged (when) and who still had to.
	Acks *StateAcks `json:"acks,omitempty"`
}

// StateEdit is one edit of a message: the new text, its author and time.
type StateEdit struct {
	Text     string    `json:"text"`
	EditedBy string    `json:"edited_by"`
	At       time.Time `json:"at"`
}

// StateRecall is who recalled a message, and when.
type StateRecall struct {
	RecalledBy string    `json:"recalled_by"`
	At         time.Time `json:"at"`
}

// StateAcks are an urgent message's acknowledgements (API-v1.1 Message.acks).
type StateAcks struct {
	Acked   []StateAck `json:"acked"`
	Pending []string   `json:"pending"`
}

// StateAck is one acknowledgement.
type StateAck struct {
	UserID string    `json:"user_id"`
	At     time.Time `json:"at"`
}

// StateFile describes a shared file.
type StateFile struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
	SHA256      string `json:"sha256"`
}

// StateSystemRef describes a system line.
type StateSystemRef struct {
	Event     string `json:"event"`
	ActorID   string `json:"actor_id"`
	SubjectID string `json:"subject_id,omitempty"`
}

// StateAt replays a conversation's events recorded at or before at.
func (s *Service) StateAt(ctx context.Context, a Auditor, conversationID string, at time.Time) (State, error) {
	stream := domain.ConversationStream(conversationID)
	if err := s.checkClinic(ctx, a.ClinicID, stream); err != nil {
		return State{}, err
	}
	st, err := s.replay(ctx, stream, at)
	if err != nil {
		return State{}, err
	}
	if err := s.Record(ctx, a, ActionState, stream, "at="+at.UTC().Format(time.RFC3339Nano)); err != nil {
		return State{}, err
	}
	return st, nil
}

func (s *Service) replay(ctx context.Context, stream string, at time.Time) (State, error) {
	var conv domain.Conversation
	var messages []StateMessage
	index := map[int64]int{} // message version → its place in messages
	for from := int64(1); ; {
		batch, err := s.store.ReadStream(ctx, stream, from, exportBatch)
		if err != nil {
			return State{}, fmt.Errorf("replay %s: %w", stream, err)
		}
		for _, e := range batch {
			if e.RecordedAt.After(at) {
				return finish(conv, messages, at)
			}
			ev, err := domain.Decode(e.Type, e.Data)
			if err != nil {
				return State{}, fmt.Errorf("replay %s@%d: %w", stream, e.StreamVersion, err)
			}
			conv = domain.EvolveConversation(conv, e.StreamVersion, ev)
			if m, ok := messageOf(conv.ID, e, ev); ok {
				index[m.Version] = len(messages)
				messages = append(messages, m)
			} else if v, ok := changedMessage(ev); ok {
				if i, found := index[v]; found {
					messages[i] = changeMessage(messages[i], e, ev)
				}
			}
		}
		if len(batch) < exportBatch {
			return finish(conv, messages, at)
		}
		from = batch[len(batch)-1].StreamVersion + 1
	}
}

func finish(conv domain.Conversation, messages []StateMessage, at time.Time) (State, error) {
	if !conv.Started() {
		return State{}, ErrNotYet
	}
	for i, m := range messages {
		if m.Acks != nil {
			m.Acks.Pending = conv.PendingAcks(m.Version)
			if m.Acks.Pending == nil {
				m.Acks.Pending = []string{}
			}
			messages[i] = m
		}
	}
	st := State{ID: conv.ID, Kind: conv.Kind, Title: conv.Title, Deleted: conv.Deleted, At: at.UTC(),
		Version: conv.Version, Messages: messages, Participants: make([]StateParticipant, 0, len(conv.Participants))}
	if st.Messages == nil {
		st.Messages = []StateMessage{}
	}
	if conv.OwnerID != "" {
		owner := conv.OwnerID
		st.OwnerID = &owner
	}
	for _, p := range conv.Participants {
		role := "member"
		if p.UserID == conv.OwnerID {
			role = "owner"
		}
		st.Participants = append(st.Participants, StateParticipant{ID: p.UserID, Role: role, State: p.State})
	}
	return st, nil
}

func messageOf(conversationID string, e eventstore.RecordedEvent, ev domain.Event) (StateMessage, bool) {
	at := e.RecordedAt.UTC()
	switch m := ev.(type) {
	case domain.MessageSent:
		sm := StateMessage{ID: m.MessageID, Version: e.StreamVersion, SenderID: m.SenderID, Kind: "text", Text: m.Text, SentAt: at,
			Priority: domain.PriorityNormal}
		if m.Urgent() {
			sm.Priority = domain.PriorityUrgent
			sm.Acks = &StateAcks{Acked: []StateAck{}}
		}
		return sm, true
	case domain.FileShared:
		return StateMessage{ID: m.MessageID, Version: e.StreamVersion, SenderID: m.SenderID, Kind: "file", SentAt: at,
			Priority: domain.PriorityNormal,
			File:     &StateFile{ID: m.FileID, Name: m.Name, Size: m.Size, ContentType: m.ContentType, SHA256: m.SHA256}}, true
	}
	if sys, ok := domain.SystemMessageOf(ev); ok {
		return StateMessage{ID: domain.MessageID(conversationID, e.StreamVersion), Version: e.StreamVersion, SenderID: sys.ActorID, Kind: "system", SentAt: at,
			Priority: domain.PriorityNormal, System: &StateSystemRef{Event: sys.Event, ActorID: sys.ActorID, SubjectID: sys.SubjectID}}, true
	}
	return StateMessage{}, false
}

// changedMessage returns the version of the message an edit, recall or acknowledgement is about.
func changedMessage(ev domain.Event) (int64, bool) {
	var id string
	switch m := ev.(type) {
	case domain.MessageEdited:
		id = m.MessageID
	case domain.MessageRecalled:
		id = m.MessageID
	case domain.MessageAcknowledged:
		id = m.MessageID
	default:
		return 0, false
	}
	_, v, ok := domain.ParseMessageID(id)
	return v, ok
}

// changeMessage applies an edit, a recall or an acknowledgement (recorded as e) to m. The
// domain decided it was allowed when it was recorded; the replay only tells it.
func changeMessage(m StateMessage, e eventstore.RecordedEvent, ev domain.Event) StateMessage {
	at := e.RecordedAt.UTC()
	switch c := ev.(type) {
	case domain.MessageEdited:
		if m.OriginalText == nil {
			original := m.Text
			m.OriginalText = &original
		}
		m.Text, m.EditedAt = c.Text, &at
		m.Edits = append(m.Edits, StateEdit{Text: c.Text, EditedBy: c.EditedBy, At: at})
	case domain.MessageRecalled:
		if !m.Recalled {
			m.Recalled, m.Recall = true, &StateRecall{RecalledBy: c.RecalledBy, At: at}
		}
	case domain.MessageAcknowledged:
		if m.Acks != nil {
			acks := *m.Acks
			acks.Acked = append(slices.Clip(acks.Acked), StateAck{UserID: c.UserID, At: at})
			m.Acks = &acks
		}
	}
	return m
}
