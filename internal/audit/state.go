package audit

import (
	"context"
	"errors"
	"fmt"
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

// StateMessage is one message as it stood (text, file or system line).
type StateMessage struct {
	ID       string          `json:"id"`
	Version  int64           `json:"stream_version"`
	SenderID string          `json:"sender_id"`
	Kind     string          `json:"kind"`
	Text     string          `json:"text,omitempty"`
	File     *StateFile      `json:"file,omitempty"`
	System   *StateSystemRef `json:"system,omitempty"`
	SentAt   time.Time       `json:"sent_at"`
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
				messages = append(messages, m)
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
		return StateMessage{ID: m.MessageID, Version: e.StreamVersion, SenderID: m.SenderID, Kind: "text", Text: m.Text, SentAt: at}, true
	case domain.FileShared:
		return StateMessage{ID: m.MessageID, Version: e.StreamVersion, SenderID: m.SenderID, Kind: "file", SentAt: at,
			File: &StateFile{ID: m.FileID, Name: m.Name, Size: m.Size, ContentType: m.ContentType, SHA256: m.SHA256}}, true
	}
	if sys, ok := domain.SystemMessageOf(ev); ok {
		return StateMessage{ID: domain.MessageID(conversationID, e.StreamVersion), Version: e.StreamVersion, SenderID: sys.ActorID, Kind: "system", SentAt: at,
			System: &StateSystemRef{Event: sys.Event, ActorID: sys.ActorID, SubjectID: sys.SubjectID}}, true
	}
	return StateMessage{}, false
}
