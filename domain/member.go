package domain

// Member is one user's own choices about their conversations in one clinic (stream
// member-<clinic>.<user>): mute,
// archive and read marker. Kept apart from the conversation so one user's clicks never contend
// with a busy group's messages.
type Member struct {
	Conversations map[string]MemberConversation `json:"conversations"`
}

// MemberConversation is one user's settings for one conversation.
type MemberConversation struct {
	Muted    bool  `json:"muted,omitempty"`
	Archived bool  `json:"archived,omitempty"`
	ReadUpTo int64 `json:"read_up_to,omitempty"` // conversation stream version
}

// Settings returns the user's settings for a conversation (zero when none were made).
func (m Member) Settings(conversationID string) MemberConversation {
	return m.Conversations[conversationID]
}

// MemberCommand is a command on one user's settings for one conversation.
type MemberCommand interface{ memberCommand() }

// Mute silences pop-ups and sound for a conversation.
type Mute struct{ UserID string }

// Unmute undoes Mute.
type Unmute struct{ UserID string }

// Archive takes the conversation out of the user's chat list.
type Archive struct{ UserID string }

// Unarchive brings it back.
type Unarchive struct{ UserID string }

// MarkRead moves the read marker to UpToVersion of the conversation stream (0: everything the
// user can see). UpToMessageID is recorded when the request named a message.
type MarkRead struct {
	UserID        string
	UpToVersion   int64
	UpToMessageID string
}

func (Mute) memberCommand()      {}
func (Unmute) memberCommand()    {}
func (Archive) memberCommand()   {}
func (Unarchive) memberCommand() {}
func (MarkRead) memberCommand()  {}

// DecideMember says what a member command changes. conv is the conversation it is about: the
// user must have taken part in it at some point (a member who left may still mute or archive
// what they see) and it must not be deleted. Commands that change nothing decide no events.
func DecideMember(m Member, conv Conversation, cmd MemberCommand) ([]Event, error) {
	var user string
	switch c := cmd.(type) {
	case Mute:
		user = c.UserID
	case Unmute:
		user = c.UserID
	case Archive:
		user = c.UserID
	case Unarchive:
		user = c.UserID
	case MarkRead:
		user = c.UserID
	default:
		return nil, newError(CodeInvalid, "unknown member command")
	}
	if err := conv.access(user); err != nil {
		return nil, err
	}
	s := m.Settings(conv.ID)
	id := conv.ID
	switch c := cmd.(type) {
	case Mute:
		if !s.Muted {
			return []Event{ConversationMuted{ConversationID: id}}, nil
		}
	case Unmute:
		if s.Muted {
			return []Event{ConversationUnmuted{ConversationID: id}}, nil
		}
	case Archive:
		if !s.Archived {
			return []Event{ConversationArchived{ConversationID: id}}, nil
		}
	case Unarchive:
		if s.Archived {
			return []Event{ConversationUnarchived{ConversationID: id}}, nil
		}
	case MarkRead:
		to := c.UpToVersion
		if to == 0 {
			to = conv.LastVisibleVersion(user)
		} else if !conv.CanSee(user, to) {
			return nil, newError(CodeNotFound, "no such message in this conversation")
		}
		if to > s.ReadUpTo { // never backwards
			return []Event{ReadMarkerMoved{ConversationID: id, UpToMessageID: c.UpToMessageID, UpToVersion: to}}, nil
		}
	}
	return nil, nil
}

// EvolveMember applies one member event, updating m's map in place (the runner always evolves
// a freshly loaded state); a zero Member is fine to start from.
func EvolveMember(m Member, e Event) Member {
	if m.Conversations == nil {
		m.Conversations = map[string]MemberConversation{}
	}
	update := func(id string, f func(*MemberConversation)) {
		s := m.Conversations[id]
		f(&s)
		m.Conversations[id] = s
	}
	switch ev := e.(type) {
	case ConversationMuted:
		update(ev.ConversationID, func(s *MemberConversation) { s.Muted = true })
	case ConversationUnmuted:
		update(ev.ConversationID, func(s *MemberConversation) { s.Muted = false })
	case ConversationArchived:
		update(ev.ConversationID, func(s *MemberConversation) { s.Archived = true })
	case ConversationUnarchived:
		update(ev.ConversationID, func(s *MemberConversation) { s.Archived = false })
	case ReadMarkerMoved:
		update(ev.ConversationID, func(s *MemberConversation) {
			if ev.UpToVersion > s.ReadUpTo {
				s.ReadUpTo = ev.UpToVersion
			}
		})
	case MemberStreamCarriedOver:
		// The carried state is older than anything already in the stream (a choice made on
		// the new stream before the carry-over landed wins), except that a read marker never
		// moves backwards.
		for id, old := range ev.Conversations {
			cur, seen := m.Conversations[id]
			if !seen {
				m.Conversations[id] = old
				continue
			}
			cur.ReadUpTo = max(cur.ReadUpTo, old.ReadUpTo)
			m.Conversations[id] = cur
		}
	}
	return m
}
