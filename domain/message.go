package domain

import (
	"slices"
)

// Rules on a message already sent: acknowledging an urgent one, editing, recalling.
//
// What the conversation's state keeps for them, and why so little: the sequencer holds each
// conversation's state in memory and snapshots it as JSON, so a state that grew with every
// message (a conversation can reach a million) would cost memory and snapshot writes on every
// command. A message's own facts (sender, kind, priority) never change after it is stored, so
// the caller reads the one event its id names (MessageID carries the stream version) and hands
// them to the command as a SentMessage. The state keeps only what later events change:
//   - Urgent: the urgent messages someone still has to acknowledge, with who has. An entry
//     leaves when nobody is pending any more (all acknowledged, left, were removed, or the
//     message was recalled), so its size follows the acknowledgements still owed, not the
//     history.
//   - Recalled: the versions of recalled messages (8 bytes each; recalls are rare).
// Who was active when a message was sent needs nothing per message either: a participant's
// Since is where their current stint began, and a stint that began before the message and
// has not ended is exactly "active when it was sent and still active".

// Message kinds.
const (
	MessageKindText = "text"
	MessageKindFile = "file"
)

// SentMessage is what the rules need of the event that sent a message: its version (the id's
// suffix), sender, kind and priority. The zero value names no message.
type SentMessage struct {
	Version  int64
	SenderID string
	Kind     string
	Urgent   bool
}

// SentMessageOf returns the facts of the event stored at version, if it sent a message (a text
// or a file); system events and anything else are not messages.
func SentMessageOf(version int64, e Event) (SentMessage, bool) {
	switch ev := e.(type) {
	case MessageSent:
		return SentMessage{Version: version, SenderID: ev.SenderID, Kind: MessageKindText, Urgent: ev.Urgent()}, true
	case FileShared:
		return SentMessage{Version: version, SenderID: ev.SenderID, Kind: MessageKindFile}, true
	}
	return SentMessage{}, false
}

// UrgentMessage is an urgent message still waiting for someone's acknowledgement.
type UrgentMessage struct {
	Version  int64    `json:"version"`
	SenderID string   `json:"sender_id"`
	Acked    []string `json:"acked,omitempty"` // in the order they acknowledged
}

// AcknowledgeMessage confirms that the actor saw an urgent message.
type AcknowledgeMessage struct {
	ActorID string
	Message SentMessage
}

// EditMessage replaces the text of a text message.
type EditMessage struct {
	ActorID string
	Text    string
	Message SentMessage
}

// RecallMessage withdraws a message.
type RecallMessage struct {
	ActorID string
	Message SentMessage
}

func (AcknowledgeMessage) conversationCommand() {}
func (EditMessage) conversationCommand()        {}
func (RecallMessage) conversationCommand()      {}

// PendingAcks is the one rule of who still has to acknowledge an urgent message sent at
// version by sender: the other participants who were active when it was sent and have been
// ever since (leaving or being removed drops someone, and coming back does not bring them
// back), less those in acked. The read models mirror it.
func PendingAcks(participants []Participant, version int64, sender string, acked []string) []string {
	var out []string
	for _, p := range participants {
		if p.State == StateActive && p.UserID != sender && p.Since < version && !slices.Contains(acked, p.UserID) {
			out = append(out, p.UserID)
		}
	}
	return out
}

// PendingAcks lists who still has to acknowledge the message at version: nobody for a message
// that is not urgent, recalled, or already acknowledged by everyone still concerned.
func (c Conversation) PendingAcks(version int64) []string {
	i, ok := c.urgentAt(version)
	if !ok {
		return nil
	}
	u := c.Urgent[i]
	return PendingAcks(c.Participants, u.Version, u.SenderID, u.Acked)
}

// IsRecalled reports whether the message at version was recalled.
func (c Conversation) IsRecalled(version int64) bool {
	_, found := slices.BinarySearch(c.Recalled, version)
	return found
}

func (c Conversation) urgentAt(version int64) (int, bool) {
	return slices.BinarySearchFunc(c.Urgent, version, func(u UrgentMessage, v int64) int {
		switch {
		case u.Version < v:
			return -1
		case u.Version > v:
			return 1
		}
		return 0
	})
}

// message checks that m names a message user can see in this conversation.
func (c Conversation) message(user string, m SentMessage) error {
	if m.Version < 1 || m.SenderID == "" || !c.CanSee(user, m.Version) {
		return newError(CodeNotFound, "no such message")
	}
	return nil
}

func decideAcknowledge(c Conversation, cmd AcknowledgeMessage) ([]Event, error) {
	if err := c.access(cmd.ActorID); err != nil {
		return nil, err
	}
	if !c.IsActive(cmd.ActorID) {
		return nil, newError(CodeNotAParticipant, "you are not a member of this conversation any more")
	}
	if err := c.message(cmd.ActorID, cmd.Message); err != nil {
		return nil, err
	}
	if cmd.Message.SenderID == cmd.ActorID {
		return nil, newError(CodeCannotAckOwn, "you cannot acknowledge your own message")
	}
	if !cmd.Message.Urgent {
		return nil, newError(CodeNotUrgent, "only urgent messages are acknowledged")
	}
	// Acknowledged already, recalled, or someone the message never waited for (they joined
	// after it, or left and came back): nothing to record.
	if !slices.Contains(c.PendingAcks(cmd.Message.Version), cmd.ActorID) {
		return nil, nil
	}
	return []Event{MessageAcknowledged{MessageID: MessageID(c.ID, cmd.Message.Version), UserID: cmd.ActorID}}, nil
}

func decideEdit(c Conversation, dir Directory, cmd EditMessage) ([]Event, error) {
	if err := checkText(cmd.Text); err != nil {
		return nil, err
	}
	if err := c.access(cmd.ActorID); err != nil {
		return nil, err
	}
	if err := c.message(cmd.ActorID, cmd.Message); err != nil {
		return nil, err
	}
	if cmd.Message.SenderID != cmd.ActorID {
		return nil, newError(CodeNotMessageSender, "only the sender can edit a message")
	}
	if err := c.canSend(dir, cmd.ActorID); err != nil {
		return nil, err
	}
	if cmd.Message.Kind != MessageKindText || c.IsRecalled(cmd.Message.Version) {
		return nil, newError(CodeNotEditable, "only text messages that were not recalled can be edited")
	}
	return []Event{MessageEdited{MessageID: MessageID(c.ID, cmd.Message.Version), Text: cmd.Text, EditedBy: cmd.ActorID}}, nil
}

func decideRecall(c Conversation, cmd RecallMessage) ([]Event, error) {
	if err := c.access(cmd.ActorID); err != nil {
		return nil, err
	}
	if err := c.message(cmd.ActorID, cmd.Message); err != nil {
		return nil, err
	}
	owner := c.Kind == KindGroup && cmd.ActorID == c.OwnerID
	if cmd.Message.SenderID != cmd.ActorID && !owner {
		return nil, newError(CodeNotMessageSender, "only the sender or the group's owner can recall a message")
	}
	if !c.IsActive(cmd.ActorID) {
		return nil, newError(CodeNotAParticipant, "you are not a member of this conversation any more")
	}
	if c.IsRecalled(cmd.Message.Version) {
		return nil, nil // recalled already: recalling again changes nothing
	}
	return []Event{MessageRecalled{MessageID: MessageID(c.ID, cmd.Message.Version), RecalledBy: cmd.ActorID}}, nil
}

// evolveMessage applies the events about messages to the state (c.Version is already set).
func (c Conversation) evolveMessage(version int64, e Event) Conversation {
	switch ev := e.(type) {
	case MessageSent:
		if ev.Urgent() && len(PendingAcks(c.Participants, version, ev.SenderID, nil)) > 0 {
			c.Urgent = append(slices.Clip(c.Urgent), UrgentMessage{Version: version, SenderID: ev.SenderID})
		}
	case MessageAcknowledged:
		_, v, _ := ParseMessageID(ev.MessageID)
		if i, ok := c.urgentAt(v); ok {
			u := c.Urgent[i]
			u.Acked = append(slices.Clip(u.Acked), ev.UserID)
			if len(PendingAcks(c.Participants, u.Version, u.SenderID, u.Acked)) == 0 {
				c.Urgent = slices.Delete(slices.Clone(c.Urgent), i, i+1) // settled
			} else {
				c.Urgent = slices.Clone(c.Urgent)
				c.Urgent[i] = u
			}
		}
	case MessageRecalled:
		_, v, _ := ParseMessageID(ev.MessageID)
		if i, found := slices.BinarySearch(c.Recalled, v); !found {
			c.Recalled = slices.Insert(slices.Clip(c.Recalled), i, v)
		}
		if i, ok := c.urgentAt(v); ok {
			c.Urgent = slices.Delete(slices.Clone(c.Urgent), i, i+1)
		}
	}
	return c
}

// settleUrgent drops the urgent messages nobody has to acknowledge any more. It copies the
// list only when something goes.
func (c Conversation) settleUrgent() Conversation {
	var kept []UrgentMessage
	dropped := false
	for i, u := range c.Urgent {
		if len(PendingAcks(c.Participants, u.Version, u.SenderID, u.Acked)) > 0 {
			if dropped {
				kept = append(kept, u)
			}
			continue
		}
		if !dropped {
			dropped = true
			kept = append(make([]UrgentMessage, 0, len(c.Urgent)-1), c.Urgent[:i]...)
		}
	}
	if dropped {
		c.Urgent = kept
	}
	return c
}
