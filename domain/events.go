package domain

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Event is a fact that happened. Once stored, an event's meaning never changes: new fields are
// optional, and a changed shape gets a new schema version with an upcaster in eventstore.
type Event interface {
	EventType() string
}

// Stream names. Every aggregate lives in exactly one stream; the prefix is its category.
const (
	CategoryConversation = "conversation"
	CategoryMember       = "member"
	CategoryDirectory    = "directory"
	CategoryAudit        = "audit"
)

// ConversationStream names the stream holding one conversation's history.
func ConversationStream(conversationID string) string {
	return CategoryConversation + "-" + conversationID
}

// MemberStream names the stream holding one user's own choices (mute, archive, read marker)
// in one clinic: member-<clinic>.<user>. Clinic and user ids never contain '.' (the directory
// id alphabet), so no two clinic/user pairs share a stream. Stores written before ADR 0013
// also hold legacy streams member-<user>, shared by every clinic's user of that id; they are
// history, carried over by internal/memberstreams.
func MemberStream(clinicID, userID string) string {
	return CategoryMember + "-" + clinicID + "." + userID
}

// LegacyMemberStream names the stream a user's choices went to before ADR 0013 (member-<user>,
// not scoped by clinic). Nothing appends to it any more.
func LegacyMemberStream(userID string) string { return CategoryMember + "-" + userID }

// MemberStreamUser returns the user whose choices an event of clinicID in a member stream is
// about, for both the clinic-scoped form (member-<clinic>.<user>) and the legacy one
// (member-<user>). It needs the event's clinic: user ids created before the directory alphabet
// may contain '.', so the stream id alone cannot tell "member-dr.ann" of clinic c1 (legacy,
// user dr.ann) from the scoped stream of clinic dr's ann.
func MemberStreamUser(streamID, clinicID string) string {
	rest := strings.TrimPrefix(streamID, CategoryMember+"-")
	if user, scoped := strings.CutPrefix(rest, clinicID+"."); scoped {
		return user
	}
	return rest
}

// IsLegacyMemberStream reports whether an event of clinicID in streamID is in a legacy member
// stream (member-<user>) rather than its clinic's member-<clinic>.<user>.
func IsLegacyMemberStream(streamID, clinicID string) bool {
	return strings.HasPrefix(streamID, CategoryMember+"-") && !strings.HasPrefix(streamID, CategoryMember+"-"+clinicID+".")
}

// AuditStream names the stream recording every audit read in a clinic (who read what, when).
func AuditStream(clinicID string) string { return CategoryAudit + "-" + clinicID }

// DirectoryStream names the stream holding a clinic's users, waiting rooms and room membership.
func DirectoryStream(clinicID string) string { return CategoryDirectory + "-" + clinicID }

// ---- Directory (stream directory-<clinic>) ----

// UserProfileSet records that an admin created or updated a user; it also reactivates one.
type UserProfileSet struct {
	UserID string `json:"user_id"`
	Name   string `json:"name"`
	Email  string `json:"email"`
	Title  string `json:"title,omitempty"`
}

// UserDeactivated removes a user from every address book; their chats and history stay.
type UserDeactivated struct {
	UserID string `json:"user_id"`
}

// RoomNamed records that a waiting room was created or renamed.
type RoomNamed struct {
	RoomID string `json:"room_id"`
	Name   string `json:"name"`
}

// RoomMemberAdded puts a user into a waiting room (and so into its staff's address books).
type RoomMemberAdded struct {
	RoomID string `json:"room_id"`
	UserID string `json:"user_id"`
}

// RoomMemberRemoved takes a user out of a waiting room.
type RoomMemberRemoved struct {
	RoomID string `json:"room_id"`
	UserID string `json:"user_id"`
}

// ---- Conversation (stream conversation-<id>) ----

// Conversation kinds.
const (
	KindDirect = "direct"
	KindGroup  = "group"
)

// ConversationStarted opens a direct chat or a group. For a group, OwnerID is the creator and
// ParticipantIDs lists everyone including the owner, in the order they were added (owner first).
// For a direct chat OwnerID is empty and ParticipantIDs holds the two users, sorted.
type ConversationStarted struct {
	ConversationID string   `json:"conversation_id"`
	Kind           string   `json:"kind"`
	Title          string   `json:"title,omitempty"`
	OwnerID        string   `json:"owner_id,omitempty"`
	StartedBy      string   `json:"started_by"`
	ParticipantIDs []string `json:"participant_ids"`
}

// MessageSent is a text message. Priority is PriorityUrgent for an urgent message and absent
// for a normal one (events stored before priorities existed are normal, unchanged).
type MessageSent struct {
	MessageID       string `json:"message_id"`
	SenderID        string `json:"sender_id"`
	Text            string `json:"text"`
	ClientMessageID string `json:"client_message_id,omitempty"`
	Priority        string `json:"priority,omitempty"`
}

// Message priorities. A MessageSent records only PriorityUrgent; no priority means normal.
const (
	PriorityNormal = "normal"
	PriorityUrgent = "urgent"
)

// Urgent reports whether the message waits for its recipients' acknowledgements.
func (m MessageSent) Urgent() bool { return m.Priority == PriorityUrgent }

// MessageAcknowledged records that UserID confirmed they saw an urgent message. When it
// happened is the event's recorded_at.
type MessageAcknowledged struct {
	MessageID string `json:"message_id"`
	UserID    string `json:"user_id"`
}

// MessageEdited records new text for a text message, by its sender. The original text stays in
// its MessageSent event and every earlier edit in its own MessageEdited; the edit's time is the
// event's recorded_at (edited_at).
type MessageEdited struct {
	MessageID string `json:"message_id"`
	Text      string `json:"text"`
	EditedBy  string `json:"edited_by"`
}

// MessageRecalled records that a message was withdrawn, by its sender or the group's owner:
// members no longer see its text or file; auditors still do, in the events before this one.
type MessageRecalled struct {
	MessageID  string `json:"message_id"`
	RecalledBy string `json:"recalled_by"`
}

// FileShared is a file message. The bytes live in the blob store under FileID, never in events.
type FileShared struct {
	MessageID       string `json:"message_id"`
	SenderID        string `json:"sender_id"`
	FileID          string `json:"file_id"`
	Name            string `json:"name"`
	Size            int64  `json:"size"`
	ContentType     string `json:"content_type"`
	SHA256          string `json:"sha256"`
	ClientMessageID string `json:"client_message_id,omitempty"`
}

// ParticipantAdded adds (or restores) a member of a group.
type ParticipantAdded struct {
	UserID  string `json:"user_id"`
	AddedBy string `json:"added_by"`
}

// ParticipantRemoved records that one member removed another.
type ParticipantRemoved struct {
	UserID    string `json:"user_id"`
	RemovedBy string `json:"removed_by"`
}

// ParticipantLeft records that a member left a group of their own accord.
type ParticipantLeft struct {
	UserID string `json:"user_id"`
}

// OwnershipPassed records a new owner after the previous one left.
type OwnershipPassed struct {
	FromUserID string `json:"from_user_id"`
	ToUserID   string `json:"to_user_id"`
}

// GroupRenamed records a new title.
type GroupRenamed struct {
	Title     string `json:"title"`
	RenamedBy string `json:"renamed_by"`
}

// GroupDeleted removes the group from every member's list; its events stay for auditors.
type GroupDeleted struct {
	DeletedBy string `json:"deleted_by"`
}

// ---- Member (stream member-<clinic>.<user>) ----

// MemberStreamCarriedOver is the first event of a clinic-scoped member stream in a store
// written before ADR 0013: the state this clinic's user had in the legacy stream FromStream
// (member-<user>), folded from that stream's events of this clinic only, up to FromVersion,
// whose hash was FromHash. The legacy events stay where they are (their hash chain covers the
// stream id, so they cannot move); the carried hash ties the new chain to the old one.
// Read models ignore it: they applied the legacy events themselves.
type MemberStreamCarriedOver struct {
	FromStream    string                        `json:"from_stream"`
	FromVersion   int64                         `json:"from_version"`
	FromHash      string                        `json:"from_hash"`
	Events        int                           `json:"events"`
	Conversations map[string]MemberConversation `json:"conversations"`
}

// ConversationMuted silences pop-ups and sound for a conversation, for one user.
type ConversationMuted struct {
	ConversationID string `json:"conversation_id"`
}

// ConversationUnmuted undoes ConversationMuted.
type ConversationUnmuted struct {
	ConversationID string `json:"conversation_id"`
}

// ConversationArchived takes a conversation out of one user's chat list.
type ConversationArchived struct {
	ConversationID string `json:"conversation_id"`
}

// ConversationUnarchived brings a conversation back into one user's chat list.
type ConversationUnarchived struct {
	ConversationID string `json:"conversation_id"`
}

// ReadMarkerMoved records that a user has read a conversation up to (and including) the message
// stored at UpToVersion of the conversation stream.
type ReadMarkerMoved struct {
	ConversationID string `json:"conversation_id"`
	UpToMessageID  string `json:"up_to_message_id,omitempty"`
	UpToVersion    int64  `json:"up_to_version"`
}

// ---- Audit (stream audit-<clinic>) ----

// AuditRead records that an auditor read history: Action is events, state, export or verify;
// Target is the stream read (or empty for a verify of every stream); Params holds the query
// (e.g. "at=2026-11-25T12:00:00Z", "format=csv").
type AuditRead struct {
	AuditorID string `json:"auditor_id"`
	Action    string `json:"action"`
	Target    string `json:"target,omitempty"`
	Params    string `json:"params,omitempty"`
}

func (AuditRead) EventType() string              { return "AuditRead" }
func (UserProfileSet) EventType() string         { return "UserProfileSet" }
func (UserDeactivated) EventType() string        { return "UserDeactivated" }
func (RoomNamed) EventType() string              { return "RoomNamed" }
func (RoomMemberAdded) EventType() string        { return "RoomMemberAdded" }
func (RoomMemberRemoved) EventType() string      { return "RoomMemberRemoved" }
func (ConversationStarted) EventType() string    { return "ConversationStarted" }
func (MessageSent) EventType() string            { return "MessageSent" }
func (FileShared) EventType() string             { return "FileShared" }
func (MessageAcknowledged) EventType() string    { return "MessageAcknowledged" }
func (MessageEdited) EventType() string          { return "MessageEdited" }
func (MessageRecalled) EventType() string        { return "MessageRecalled" }
func (ParticipantAdded) EventType() string       { return "ParticipantAdded" }
func (ParticipantRemoved) EventType() string     { return "ParticipantRemoved" }
func (ParticipantLeft) EventType() string        { return "ParticipantLeft" }
func (OwnershipPassed) EventType() string        { return "OwnershipPassed" }
func (GroupRenamed) EventType() string           { return "GroupRenamed" }
func (GroupDeleted) EventType() string           { return "GroupDeleted" }
func (ConversationMuted) EventType() string      { return "ConversationMuted" }
func (ConversationUnmuted) EventType() string    { return "ConversationUnmuted" }
func (ConversationArchived) EventType() string   { return "ConversationArchived" }
func (ConversationUnarchived) EventType() string { return "ConversationUnarchived" }
func (ReadMarkerMoved) EventType() string        { return "ReadMarkerMoved" }
func (MemberStreamCarriedOver) EventType() string {
	return "MemberStreamCarriedOver"
}

// eventFactories lists every event type the domain knows, so Decode can rebuild them by name.
var eventFactories = map[string]func() Event{
	"UserProfileSet":          func() Event { return &UserProfileSet{} },
	"UserDeactivated":         func() Event { return &UserDeactivated{} },
	"RoomNamed":               func() Event { return &RoomNamed{} },
	"RoomMemberAdded":         func() Event { return &RoomMemberAdded{} },
	"RoomMemberRemoved":       func() Event { return &RoomMemberRemoved{} },
	"ConversationStarted":     func() Event { return &ConversationStarted{} },
	"MessageSent":             func() Event { return &MessageSent{} },
	"FileShared":              func() Event { return &FileShared{} },
	"MessageAcknowledged":     func() Event { return &MessageAcknowledged{} },
	"MessageEdited":           func() Event { return &MessageEdited{} },
	"MessageRecalled":         func() Event { return &MessageRecalled{} },
	"ParticipantAdded":        func() Event { return &ParticipantAdded{} },
	"ParticipantRemoved":      func() Event { return &ParticipantRemoved{} },
	"ParticipantLeft":         func() Event { return &ParticipantLeft{} },
	"OwnershipPassed":         func() Event { return &OwnershipPassed{} },
	"GroupRenamed":            func() Event { return &GroupRenamed{} },
	"GroupDeleted":            func() Event { return &GroupDeleted{} },
	"ConversationMuted":       func() Event { return &ConversationMuted{} },
	"ConversationUnmuted":     func() Event { return &ConversationUnmuted{} },
	"ConversationArchived":    func() Event { return &ConversationArchived{} },
	"ConversationUnarchived":  func() Event { return &ConversationUnarchived{} },
	"ReadMarkerMoved":         func() Event { return &ReadMarkerMoved{} },
	"MemberStreamCarriedOver": func() Event { return &MemberStreamCarriedOver{} },
	"AuditRead":               func() Event { return &AuditRead{} },
}

// EventTypes lists every event type name, for documentation and schema tests.
func EventTypes() []string {
	names := make([]string, 0, len(eventFactories))
	for n := range eventFactories {
		names = append(names, n)
	}
	return names
}

// Encode turns an event into its stored type name and JSON data.
func Encode(e Event) (eventType string, data []byte, err error) {
	data, err = json.Marshal(e)
	if err != nil {
		return "", nil, fmt.Errorf("encode %s: %w", e.EventType(), err)
	}
	return e.EventType(), data, nil
}

// Decode rebuilds an event from its stored type name and JSON data (already upcast to the
// current schema version). It returns the event as a value, never a pointer, so type switches
// match on `case domain.MessageSent:`.
func Decode(eventType string, data []byte) (Event, error) {
	factory, ok := eventFactories[eventType]
	if !ok {
		return nil, fmt.Errorf("decode: unknown event type %q", eventType)
	}
	ptr := factory()
	if err := json.Unmarshal(data, ptr); err != nil {
		return nil, fmt.Errorf("decode %s: %w", eventType, err)
	}
	return deref(ptr), nil
}

func deref(e Event) Event {
	switch v := e.(type) {
	case *UserProfileSet:
		return *v
	case *UserDeactivated:
		return *v
	case *RoomNamed:
		return *v
	case *RoomMemberAdded:
		return *v
	case *RoomMemberRemoved:
		return *v
	case *ConversationStarted:
		return *v
	case *MessageSent:
		return *v
	case *FileShared:
		return *v
	case *MessageAcknowledged:
		return *v
	case *MessageEdited:
		return *v
	case *MessageRecalled:
		return *v
	case *ParticipantAdded:
		return *v
	case *ParticipantRemoved:
		return *v
	case *ParticipantLeft:
		return *v
	case *OwnershipPassed:
		return *v
	case *GroupRenamed:
		return *v
	case *GroupDeleted:
		return *v
	case *ConversationMuted:
		return *v
	case *ConversationUnmuted:
		return *v
	case *ConversationArchived:
		return *v
	case *ConversationUnarchived:
		return *v
	case *ReadMarkerMoved:
		return *v
	case *MemberStreamCarriedOver:
		return *v
	case *AuditRead:
		return *v
	}
	return e
}

// System message kinds: the conversation events a chat shows as a line of its own ("You left
// the group").
const (
	SystemParticipantAdded   = "participant_added"
	SystemParticipantRemoved = "participant_removed"
	SystemParticipantLeft    = "participant_left"
	SystemGroupRenamed       = "group_renamed"
	SystemOwnershipPassed    = "ownership_passed"
)

// SystemMessage is what a system line records: which change, who made it, and whom it concerns.
type SystemMessage struct {
	Event     string
	ActorID   string
	SubjectID string
}

// SystemMessageOf returns the system line a conversation event shows as, if any.
func SystemMessageOf(e Event) (SystemMessage, bool) {
	switch ev := e.(type) {
	case ParticipantAdded:
		return SystemMessage{SystemParticipantAdded, ev.AddedBy, ev.UserID}, true
	case ParticipantRemoved:
		return SystemMessage{SystemParticipantRemoved, ev.RemovedBy, ev.UserID}, true
	case ParticipantLeft:
		return SystemMessage{SystemParticipantLeft, ev.UserID, ev.UserID}, true
	case GroupRenamed:
		return SystemMessage{SystemGroupRenamed, ev.RenamedBy, ""}, true
	case OwnershipPassed:
		return SystemMessage{SystemOwnershipPassed, ev.FromUserID, ev.ToUserID}, true
	}
	return SystemMessage{}, false
}
