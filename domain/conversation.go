package domain

import "fmt"

// Participant states.
const (
	StateActive  = "active"
	StateLeft    = "left"
	StateRemoved = "removed"
)

// Conversation is one direct chat or group, rebuilt from its stream (conversation-<id>).
// Fields are exported so the command runner can snapshot it as JSON.
type Conversation struct {
	ID    string `json:"id"`
	Kind  string `json:"kind"` // "" until started
	Title string `json:"title,omitempty"`
	// OwnerID is the group's owner. When the last member leaves a group it keeps naming the
	// last owner (for auditors), although nobody is active any more.
	OwnerID string `json:"owner_id,omitempty"`
	// ClinicID comes from the ConversationStarted event's metadata (set by the runner, not by
	// EvolveConversation); every lookup compares it with the caller's clinic.
	ClinicID     string        `json:"clinic_id,omitempty"`
	Participants []Participant `json:"participants"` // in the order first added
	Deleted      bool          `json:"deleted,omitempty"`
	// Version is the stream version of the last event applied.
	Version int64 `json:"version"`
	// Shared files are not listed here: the blob store records each file's FileShared
	// version for downloads, so the state stays the same size however many files a chat has.
	// Messages are not either (message.go says what is kept for the rules on them, and why).

	// Urgent lists the urgent messages someone still has to acknowledge, by version.
	Urgent []UrgentMessage `json:"urgent,omitempty"`
	// Recalled holds the versions of the recalled messages, ascending.
	Recalled []int64 `json:"recalled,omitempty"`
}

// Participant is one person who ever took part in a conversation.
type Participant struct {
	UserID string `json:"user_id"`
	State  string `json:"state"`
	// Since is the version at which the current (or most recent) stint began: the longest-
	// standing active member is the one with the smallest Since.
	Since   int64    `json:"since"`
	Windows []Window `json:"windows"`
}

// Window is a stretch of versions a participant can see: From (the event that added them)
// through To (the event that made them leave or removed them, which they still see); To is 0
// while they are active.
type Window struct {
	From int64 `json:"from"`
	To   int64 `json:"to,omitempty"`
}

// Started reports whether the conversation exists.
func (c Conversation) Started() bool { return c.Kind != "" }

// Participant returns the participant record of user, if they ever took part.
func (c Conversation) Participant(user string) (Participant, bool) {
	for _, p := range c.Participants {
		if p.UserID == user {
			return p, true
		}
	}
	return Participant{}, false
}

// IsActive reports whether user is an active participant.
func (c Conversation) IsActive(user string) bool {
	p, ok := c.Participant(user)
	return ok && p.State == StateActive
}

// ActiveMembers lists the active participants in the order they were first added.
func (c Conversation) ActiveMembers() []string {
	var out []string
	for _, p := range c.Participants {
		if p.State == StateActive {
			out = append(out, p.UserID)
		}
	}
	return out
}

// Closed reports whether a group has no active member left (the last one left): nobody can
// add anyone back, so it accepts nothing any more.
func (c Conversation) Closed() bool {
	return c.Kind == KindGroup && len(c.ActiveMembers()) == 0
}

// CanSee reports whether user can see the event stored at version: it must fall inside one of
// their membership windows, and a deleted group shows nothing.
func (c Conversation) CanSee(user string, version int64) bool {
	if c.Deleted || version < 1 || version > c.Version {
		return false
	}
	p, ok := c.Participant(user)
	if !ok {
		return false
	}
	for _, w := range p.Windows {
		if version >= w.From && (w.To == 0 || version <= w.To) {
			return true
		}
	}
	return false
}

// LastVisibleVersion is the newest version user can see: the current one while active, else
// the event that ended their last stint. 0 if they never took part.
func (c Conversation) LastVisibleVersion(user string) int64 {
	p, ok := c.Participant(user)
	if !ok || len(p.Windows) == 0 {
		return 0
	}
	last := p.Windows[len(p.Windows)-1]
	if last.To == 0 {
		return c.Version
	}
	return last.To
}

// ConversationCommand is a command on one conversation.
type ConversationCommand interface{ conversationCommand() }

// StartDirect opens (or continues) the direct chat between Me and Other. ConversationID must
// be DirectConversationID(clinic, Me, Other).
type StartDirect struct{ ConversationID, Me, Other string }

// StartGroup creates a group owned by Creator. ParticipantIDs are the others, in order; the
// creator is left out of them (NormalizeParticipants does that).
type StartGroup struct {
	ConversationID string
	Creator        string
	Title          string
	ParticipantIDs []string
}

// RenameGroup gives a group a new title.
type RenameGroup struct{ ActorID, Title string }

// SendMessage posts a text message. Priority is "" or PriorityNormal for a normal message,
// PriorityUrgent for one that waits for each recipient's acknowledgement.
type SendMessage struct{ SenderID, Text, ClientMessageID, Priority string }

// ShareFile posts a file message; the bytes are already stored under FileID.
type ShareFile struct {
	SenderID        string
	FileID          string
	Name            string
	Size            int64
	ContentType     string
	SHA256          string
	ClientMessageID string
}

// AddParticipant adds UserID to a group, or restores them if they had left or been removed.
type AddParticipant struct{ ActorID, UserID string }

// RemoveParticipant takes UserID out of a group.
type RemoveParticipant struct{ ActorID, UserID string }

// LeaveGroup takes the actor out of a group.
type LeaveGroup struct{ ActorID string }

// DeleteGroup deletes a group for everyone.
type DeleteGroup struct{ ActorID string }

func (StartDirect) conversationCommand()       {}
func (StartGroup) conversationCommand()        {}
func (RenameGroup) conversationCommand()       {}
func (SendMessage) conversationCommand()       {}
func (ShareFile) conversationCommand()         {}
func (AddParticipant) conversationCommand()    {}
func (RemoveParticipant) conversationCommand() {}
func (LeaveGroup) conversationCommand()        {}
func (DeleteGroup) conversationCommand()       {}

// NormalizeParticipants turns a start request's participant list into the others to invite:
// the caller is dropped (clients may include themselves) and repeats keep their first place.
func NormalizeParticipants(me string, ids []string) []string {
	seen := map[string]bool{me: true}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// IsDirectRequest applies API.md's rule for POST /conversations: exactly one other participant
// and no title is the direct chat with that person; anything else is a group.
func IsDirectRequest(others []string, title *string) bool {
	return len(others) == 1 && title == nil
}

// DecideConversation says what a command does to a conversation. dir is the clinic's directory
// (address books, and whether the people of a direct chat are still active).
//
// Access is checked in one order for every command on an existing conversation: a caller who
// never took part gets not_found (existence does not leak, as for GET), a deleted group
// conversation_deleted, then the command's own rules.
func DecideConversation(c Conversation, dir Directory, cmd ConversationCommand) ([]Event, error) {
	switch cmd := cmd.(type) {
	case StartDirect:
		return decideStartDirect(c, dir, cmd)
	case StartGroup:
		return decideStartGroup(c, dir, cmd)
	case RenameGroup:
		title, err := cleanLine("title", cmd.Title, 1, MaxTitleRunes)
		if err != nil {
			return nil, err
		}
		if err := c.groupMember(cmd.ActorID); err != nil {
			return nil, err
		}
		if c.Title == title {
			return nil, nil
		}
		return []Event{GroupRenamed{Title: title, RenamedBy: cmd.ActorID}}, nil
	case SendMessage:
		if err := checkText(cmd.Text); err != nil {
			return nil, err
		}
		if err := checkClientMessageID(cmd.ClientMessageID); err != nil {
			return nil, err
		}
		priority, err := checkPriority(cmd.Priority)
		if err != nil {
			return nil, err
		}
		if err := c.canSend(dir, cmd.SenderID); err != nil {
			return nil, err
		}
		return []Event{MessageSent{MessageID: MessageID(c.ID, c.Version+1), SenderID: cmd.SenderID,
			Text: cmd.Text, ClientMessageID: cmd.ClientMessageID, Priority: priority}}, nil
	case ShareFile:
		if err := checkID("file_id", cmd.FileID); err != nil {
			return nil, err
		}
		if cmd.Name == "" || cmd.Size < 0 || cmd.ContentType == "" || len(cmd.SHA256) != 64 {
			return nil, newError(CodeInvalid, "file: name, size, content type and sha256 are required")
		}
		if err := checkNoBidi("file name", cmd.Name); err != nil {
			return nil, err
		}
		if err := checkClientMessageID(cmd.ClientMessageID); err != nil {
			return nil, err
		}
		if err := c.canSend(dir, cmd.SenderID); err != nil {
			return nil, err
		}
		return []Event{FileShared{MessageID: MessageID(c.ID, c.Version+1), SenderID: cmd.SenderID,
			FileID: cmd.FileID, Name: cmd.Name, Size: cmd.Size, ContentType: cmd.ContentType,
			SHA256: cmd.SHA256, ClientMessageID: cmd.ClientMessageID}}, nil
	case AddParticipant:
		if err := checkID("user_id", cmd.UserID); err != nil {
			return nil, err
		}
		if err := c.groupMember(cmd.ActorID); err != nil {
			return nil, err
		}
		// Adding someone already active changes nothing: the request is answered as done, so a
		// retried click is harmless.
		if c.IsActive(cmd.UserID) {
			return nil, nil
		}
		if !dir.InAddressBook(cmd.ActorID, cmd.UserID) {
			return nil, newError(CodeNotInAddressBook, fmt.Sprintf("%s is not in your address book", cmd.UserID))
		}
		return []Event{ParticipantAdded{UserID: cmd.UserID, AddedBy: cmd.ActorID}}, nil
	case RemoveParticipant:
		if err := checkID("user_id", cmd.UserID); err != nil {
			return nil, err
		}
		if err := c.groupMember(cmd.ActorID); err != nil {
			return nil, err
		}
		if cmd.UserID == cmd.ActorID {
			return nil, newError(CodeInvalid, "you cannot remove yourself; leave the group instead")
		}
		target, ok := c.Participant(cmd.UserID)
		if !ok {
			return nil, newError(CodeNotFound, "that user is not a participant of this group")
		}
		if cmd.UserID == c.OwnerID {
			return nil, newError(CodeOwnerCannotBeRemoved, "the group owner cannot be removed")
		}
		if target.State != StateActive {
			return nil, nil // already gone: removing again changes nothing
		}
		return []Event{ParticipantRemoved{UserID: cmd.UserID, RemovedBy: cmd.ActorID}}, nil
	case LeaveGroup:
		if err := c.access(cmd.ActorID); err != nil {
			return nil, err
		}
		if c.Kind != KindGroup {
			return nil, newError(CodeNotAGroup, "only groups can be left")
		}
		if !c.IsActive(cmd.ActorID) {
			return nil, nil // left or removed already: leaving again changes nothing
		}
		events := []Event{ParticipantLeft{UserID: cmd.ActorID}}
		if cmd.ActorID == c.OwnerID {
			if next, ok := c.longestStanding(cmd.ActorID); ok {
				events = append(events, OwnershipPassed{FromUserID: cmd.ActorID, ToUserID: next})
			}
		}
		return events, nil
	case DeleteGroup:
		if err := c.access(cmd.ActorID); err != nil {
			return nil, err
		}
		if c.Kind != KindGroup {
			return nil, newError(CodeNotAGroup, "only groups can be deleted")
		}
		if cmd.ActorID != c.OwnerID || !c.IsActive(cmd.ActorID) {
			return nil, newError(CodeNotGroupOwner, "only the group owner can delete the group")
		}
		return []Event{GroupDeleted{DeletedBy: cmd.ActorID}}, nil
	case AcknowledgeMessage:
		return decideAcknowledge(c, cmd)
	case EditMessage:
		return decideEdit(c, dir, cmd)
	case RecallMessage:
		return decideRecall(c, cmd)
	}
	return nil, newError(CodeInvalid, "unknown conversation command")
}

func decideStartDirect(c Conversation, dir Directory, cmd StartDirect) ([]Event, error) {
	if err := checkID("participant_ids", cmd.Other); err != nil {
		return nil, err
	}
	if cmd.Me == cmd.Other {
		return nil, newError(CodeInvalid, "participant_ids: a direct chat needs someone other than you")
	}
	if !dir.InAddressBook(cmd.Me, cmd.Other) {
		return nil, newError(CodeNotInAddressBook, fmt.Sprintf("%s is not in your address book", cmd.Other))
	}
	if c.Started() {
		if c.Kind != KindDirect || !c.IsActive(cmd.Me) || !c.IsActive(cmd.Other) {
			// Only a hash collision could get here; refuse rather than mix two chats.
			return nil, newError(CodeConflict, "conversation id is taken")
		}
		return nil, nil // continuing the existing chat
	}
	pair := []string{cmd.Me, cmd.Other}
	if pair[1] < pair[0] {
		pair[0], pair[1] = pair[1], pair[0]
	}
	return []Event{ConversationStarted{ConversationID: cmd.ConversationID, Kind: KindDirect,
		StartedBy: cmd.Me, ParticipantIDs: pair}}, nil
}

func decideStartGroup(c Conversation, dir Directory, cmd StartGroup) ([]Event, error) {
	// The title is optional (API.md): an untitled group shows its members' names, which the
	// read side computes for each reader. Renaming needs a title.
	title, err := cleanLine("title", cmd.Title, 0, MaxTitleRunes)
	if err != nil {
		return nil, err
	}
	others := NormalizeParticipants(cmd.Creator, cmd.ParticipantIDs)
	if len(others) == 0 {
		return nil, newError(CodeInvalid, "participant_ids: name at least one other person")
	}
	if len(others)+1 > MaxParticipants {
		return nil, newError(CodeInvalid, fmt.Sprintf("participant_ids: a group has at most %d members", MaxParticipants))
	}
	for _, id := range others {
		if err := checkID("participant_ids", id); err != nil {
			return nil, err
		}
	}
	for _, id := range others {
		if !dir.InAddressBook(cmd.Creator, id) {
			return nil, newError(CodeNotInAddressBook, fmt.Sprintf("%s is not in your address book", id))
		}
	}
	if c.Started() {
		return nil, newError(CodeConflict, "conversation id is taken")
	}
	return []Event{ConversationStarted{ConversationID: cmd.ConversationID, Kind: KindGroup, Title: title,
		OwnerID: cmd.Creator, StartedBy: cmd.Creator, ParticipantIDs: append([]string{cmd.Creator}, others...)}}, nil
}

// checkPriority turns a requested priority into the one a MessageSent records ("" for normal).
func checkPriority(p string) (string, error) {
	switch p {
	case "", PriorityNormal:
		return "", nil
	case PriorityUrgent:
		return PriorityUrgent, nil
	}
	return "", newError(CodeInvalid, "priority: must be normal or urgent")
}

func checkClientMessageID(id string) error {
	if id == "" {
		return nil
	}
	return checkID("client_message_id", id)
}

// access is the common gate: the conversation exists, the user took part at some point, and
// it is not deleted.
func (c Conversation) access(user string) error {
	if !c.Started() {
		return newError(CodeNotFound, "no such conversation")
	}
	if _, ok := c.Participant(user); !ok {
		return newError(CodeNotFound, "no such conversation")
	}
	if c.Deleted {
		return newError(CodeConversationDeleted, "this group was deleted")
	}
	return nil
}

// groupMember gates group management: a group, and the actor an active member of it.
func (c Conversation) groupMember(user string) error {
	if err := c.access(user); err != nil {
		return err
	}
	if c.Kind != KindGroup {
		return newError(CodeNotAGroup, "this is a direct chat, not a group")
	}
	if !c.IsActive(user) {
		return newError(CodeNotAParticipant, "you are not a member of this group any more")
	}
	return nil
}

// canSend gates messages and files. In a direct chat both people must still be active in the
// directory: a deactivated colleague keeps the history but receives nothing new, and a
// deactivated sender whose token is still valid cannot post either.
func (c Conversation) canSend(dir Directory, sender string) error {
	if err := c.access(sender); err != nil {
		return err
	}
	if !c.IsActive(sender) {
		return newError(CodeCannotSend, "You cannot send chat to this group")
	}
	if c.Kind == KindDirect {
		for _, p := range c.Participants {
			if !dir.IsActive(p.UserID) {
				return newError(CodeCannotSend, "You cannot send chat to this user: their account is deactivated")
			}
		}
	}
	return nil
}

// longestStanding is the active member, other than except, whose current stint began first;
// ties (everyone added when the group started) go to the order they were added.
func (c Conversation) longestStanding(except string) (string, bool) {
	best, found := Participant{}, false
	for _, p := range c.Participants {
		if p.State != StateActive || p.UserID == except {
			continue
		}
		if !found || p.Since < best.Since {
			best, found = p, true
		}
	}
	return best.UserID, found
}

// EvolveConversation applies the event stored at version and returns the new state. The
// participant list is copied when it changes, never modified in place.
func EvolveConversation(c Conversation, version int64, e Event) Conversation {
	c.Version = version
	switch ev := e.(type) {
	case ConversationStarted:
		c.ID, c.Kind, c.Title, c.OwnerID = ev.ConversationID, ev.Kind, ev.Title, ev.OwnerID
		c.Participants = make([]Participant, 0, len(ev.ParticipantIDs))
		for _, id := range ev.ParticipantIDs {
			c.Participants = append(c.Participants, Participant{UserID: id, State: StateActive, Since: version,
				Windows: []Window{{From: version}}})
		}
	case ParticipantAdded:
		c.Participants = c.withParticipant(ev.UserID, func(p *Participant) {
			p.State, p.Since = StateActive, version
			p.Windows = append(p.Windows, Window{From: version})
		})
	case ParticipantRemoved:
		c.Participants = c.withParticipant(ev.UserID, func(p *Participant) { p.end(StateRemoved, version) })
	case ParticipantLeft:
		c.Participants = c.withParticipant(ev.UserID, func(p *Participant) { p.end(StateLeft, version) })
	case OwnershipPassed:
		c.OwnerID = ev.ToUserID
	case GroupRenamed:
		c.Title = ev.Title
	case GroupDeleted:
		c.Deleted = true
	case MessageSent, MessageAcknowledged, MessageRecalled:
		c = c.evolveMessage(version, e)
	}
	switch e.(type) {
	case ParticipantLeft, ParticipantRemoved:
		// Someone gone no longer owes acknowledgements: some urgent messages may be settled.
		c = c.settleUrgent()
	}
	return c
}

func (p *Participant) end(state string, version int64) {
	p.State = state
	if n := len(p.Windows); n > 0 && p.Windows[n-1].To == 0 {
		p.Windows[n-1].To = version
	}
}

// withParticipant copies the participant list, applies f to user's entry (adding one if they
// never took part) and returns the copy.
func (c Conversation) withParticipant(user string, f func(*Participant)) []Participant {
	out := make([]Participant, len(c.Participants), len(c.Participants)+1)
	for i, p := range c.Participants {
		p.Windows = append([]Window(nil), p.Windows...)
		out[i] = p
	}
	for i := range out {
		if out[i].UserID == user {
			f(&out[i])
			return out
		}
	}
	out = append(out, Participant{UserID: user})
	f(&out[len(out)-1])
	return out
}
