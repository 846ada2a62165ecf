package inbox

import (
	"time"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/projections"
)

// Name is the read model's name.
const Name = "inbox"

// The inbox read model: conversations, participants, visibility windows, messages, one inbox
// row per user and conversation, and each user's own choices (member_prefs).
//
// Conversation events and member events come from different streams, so their relative
// delivery order is not fixed. The design keeps the result independent of it:
//
//   - muted, archived and the read marker live in member_prefs, joined at query time;
//
//   - a message increments a member's unread count only if it lies beyond their read marker,
//     and moving the marker recounts from messages, so marker and messages commute;
//
//   - "a message from someone else unarchives" is stored as the message's global position
//     (inbox.unarchive_position) and compared with the archive's position at query time, so an
//     archive and a message give the same answer in either order.
//
//   - whether the conversation was muted when a message arrived is read from the member's mute
//     toggle positions, not from the current flag, and a late mute toggle recomputes
//     unarchive_position from the messages.
//
// Each derived rule (visibility, counting, muted at that moment, unread, unarchive) is stated
// once, its SQL beside the Go twin a rebuild's load uses, in rules.go.
var tables = []string{"conversations", "participants", "visibility", "messages", "inbox", "member_prefs", "message_acks"}

const (
	sqlConvStarted = `INSERT INTO conversations (clinic_id, conversation_id, kind, title, owner_id, started_by, started_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`
	sqlConvParticipants = `INSERT INTO participants (clinic_id, conversation_id, user_id, role, state, join_order, joined_version)
		SELECT $1, $2, u, CASE WHEN u = $3 THEN 'owner' ELSE 'member' END, 'active', ord, $4
		FROM unnest($5::text[]) WITH ORDINALITY AS t(u, ord)
		ON CONFLICT DO NOTHING`
	sqlConvVisibility = `INSERT INTO visibility (clinic_id, conversation_id, user_id, from_version)
		SELECT $1, $2, u, $3 FROM unnest($4::text[]) AS t(u)
		ON CONFLICT DO NOTHING`
	sqlConvInbox = `INSERT INTO inbox (clinic_id, user_id, conversation_id, membership, last_activity_at)
		SELECT $1, u, $2, 'active', $3 FROM unnest($4::text[]) AS t(u)
		ON CONFLICT DO NOTHING`

	// sqlInsertMessage's columns are messageColumns, in order (a rebuild COPYs them).
	sqlInsertMessage = `INSERT INTO messages (clinic_id, conversation_id, version, message_id, sender_id, kind, text,
		file_id, file_name, file_size, file_content_type, file_sha256,
		system_event, system_actor_id, system_subject_id, sent_at, position, urgent)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`

	sqlParticipantAdded = `INSERT INTO participants (clinic_id, conversation_id, user_id, role, state, join_order, joined_version)
		VALUES ($1, $2, $3, 'member', 'active',
			(SELECT coalesce(max(join_order), 0) + 1 FROM participants WHERE clinic_id = $1 AND conversation_id = $2), $4)
		ON CONFLICT (clinic_id, conversation_id, user_id) DO UPDATE
		SET state = 'active', joined_version = EXCLUDED.joined_version`
	sqlVisibilityOpen = `INSERT INTO visibility (clinic_id, conversation_id, user_id, from_version)
		VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`
	sqlInboxJoin = `INSERT INTO inbox (clinic_id, user_id, conversation_id, membership, last_activity_at)
		VALUES ($1, $3, $2, 'active', $4)
		ON CONFLICT (clinic_id, user_id, conversation_id) DO UPDATE
		SET membership = 'active', last_activity_at = greatest(inbox.last_activity_at, EXCLUDED.last_activity_at)`

	sqlParticipantGone = `UPDATE participants SET state = $4
		WHERE clinic_id = $1 AND conversation_id = $2 AND user_id = $3`
	sqlVisibilityClose = `UPDATE visibility SET to_version = $4
		WHERE clinic_id = $1 AND conversation_id = $2 AND user_id = $3 AND to_version IS NULL`
	sqlInboxGone = `UPDATE inbox SET membership = $4
		WHERE clinic_id = $1 AND user_id = $3 AND conversation_id = $2`

	sqlOwnerRoles = `UPDATE participants SET role = CASE WHEN user_id = $4 THEN 'owner' ELSE 'member' END
		WHERE clinic_id = $1 AND conversation_id = $2 AND user_id IN ($3, $4)`
	sqlOwner   = `UPDATE conversations SET owner_id = $3 WHERE clinic_id = $1 AND conversation_id = $2`
	sqlRename  = `UPDATE conversations SET title = $3 WHERE clinic_id = $1 AND conversation_id = $2`
	sqlDeleted = `UPDATE conversations SET deleted = true WHERE clinic_id = $1 AND conversation_id = $2`
	// sqlPrefMuted records a mute ($4 true) or unmute at global position $5.
	sqlPrefMuted = `INSERT INTO member_prefs (clinic_id, user_id, conversation_id, muted, mute_toggles)
		VALUES ($1, $2, $3, $4, ARRAY[CASE WHEN $4 THEN $5::bigint ELSE -$5::bigint END])
		ON CONFLICT (clinic_id, user_id, conversation_id) DO UPDATE
		SET muted = EXCLUDED.muted, mute_toggles = member_prefs.mute_toggles || EXCLUDED.mute_toggles`
	sqlPrefArchived = `INSERT INTO member_prefs (clinic_id, user_id, conversation_id, archived, archived_position)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (clinic_id, user_id, conversation_id) DO UPDATE
		SET archived = EXCLUDED.archived,
		    archived_position = CASE WHEN EXCLUDED.archived THEN EXCLUDED.archived_position ELSE member_prefs.archived_position END`
	sqlPrefRead = `INSERT INTO member_prefs (clinic_id, user_id, conversation_id, read_version, read_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (clinic_id, user_id, conversation_id) DO UPDATE SET read_version = EXCLUDED.read_version, read_at = EXCLUDED.read_at`

	// An acknowledgement of the urgent message at version $3 (the domain records one per member).
	sqlAcknowledged = `INSERT INTO message_acks (clinic_id, conversation_id, version, user_id, at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT DO NOTHING`
	// An edit replaces the text (the original stays in the store for auditors).
	sqlEdited = `UPDATE messages SET text = $4, edited_at = $5 WHERE clinic_id = $1 AND conversation_id = $2 AND version = $3`
	// A recall keeps the message's place and drops its text and file.
	sqlRecalled = `UPDATE messages SET recalled = true, text = '', file_id = NULL, file_name = NULL, file_size = NULL,
		file_content_type = NULL, file_sha256 = NULL
		WHERE clinic_id = $1 AND conversation_id = $2 AND version = $3`
)

// ReadModel returns the inbox read model for the engine; after runs after each live batch (the
// live feed's writer).
func ReadModel(after ...projections.AfterApply) *projections.ReadModel {
	return &projections.ReadModel{
		Name:       Name,
		Categories: []string{domain.CategoryConversation, domain.CategoryMember},
		Tables:     tables,
		Apply: func(b *projections.Batch, e eventstore.RecordedEvent, ev domain.Event) error {
			return apply(&writer{b: b}, e, ev)
		},
		NewLoad: func() projections.BulkLoad { return newBulk() },
		Copied:  []string{"messages"},
		Derived: []string{"visibility", "inbox", "member_prefs"},
		After:   after,
	}
}

// writer queues an event's statements (live) or, during a rebuild's load, does what they do to
// the load's memory and COPY rows (the twins below).
type writer struct {
	b    *projections.Batch
	load *bulk
}

func (w *writer) add(sql string, args ...any) { w.b.Add(sql, args...) }

// derived queues a statement that maintains data derivable from the base tables; a load
// computes that data once at the end instead (bulk.Finish).
func (w *writer) derived(sql string, args ...any) {
	if w.load == nil {
		w.b.Add(sql, args...)
	}
}

// message inserts a message row; a load collects it for COPY.
func (w *writer) message(m messageRow) {
	if w.load != nil {
		w.load.messages = append(w.load.messages, m)
		w.load.inbox.message(&m)
		return
	}
	w.b.Add(sqlInsertMessage, m.values()...)
}

func apply(b *writer, e eventstore.RecordedEvent, ev domain.Event) error {
	clinic := projections.ClinicOf(e)
	id := projections.StreamSuffix(e.StreamID)
	at := e.RecordedAt.UTC()
	v := e.StreamVersion
	switch x := ev.(type) {
	case domain.ConversationStarted:
		b.conversationStarted(clinic, id, v, x, at)
	case domain.MessageSent:
		b.message(messageRow{clinic: clinic, conv: id, version: v, id: x.MessageID, sender: x.SenderID, kind: "text",
			text: x.Text, sentAt: at, position: e.Position, urgent: x.Urgent()})
		b.derived(sqlFanOut, clinic, id, x.MessageID, x.SenderID, preview(x.Text), at, true, v, e.Position, x.Urgent())
	case domain.FileShared:
		b.message(messageRow{clinic: clinic, conv: id, version: v, id: x.MessageID, sender: x.SenderID, kind: "file",
			file: &fileRef{x.FileID, x.Name, x.Size, x.ContentType, x.SHA256}, sentAt: at, position: e.Position})
		b.derived(sqlFanOut, clinic, id, x.MessageID, x.SenderID, preview(x.Name), at, true, v, e.Position, false)
	case domain.ParticipantAdded:
		b.add(sqlParticipantAdded, clinic, id, x.UserID, v)
		b.visibilityOpen(inboxKey{clinic, x.UserID, id}, v)
		b.inboxJoin(inboxKey{clinic, x.UserID, id}, at)
		systemMessage(b, e, clinic, id, x)
	case domain.ParticipantRemoved:
		systemMessage(b, e, clinic, id, x)
		b.add(sqlParticipantGone, clinic, id, x.UserID, "removed")
		b.visibilityClose(inboxKey{clinic, x.UserID, id}, v)
		b.inboxGone(inboxKey{clinic, x.UserID, id}, "removed")
	case domain.ParticipantLeft:
		systemMessage(b, e, clinic, id, x)
		b.add(sqlParticipantGone, clinic, id, x.UserID, "left")
		b.visibilityClose(inboxKey{clinic, x.UserID, id}, v)
		b.inboxGone(inboxKey{clinic, x.UserID, id}, "left")
	case domain.OwnershipPassed:
		b.add(sqlOwnerRoles, clinic, id, x.FromUserID, x.ToUserID)
		b.add(sqlOwner, clinic, id, x.ToUserID)
		systemMessage(b, e, clinic, id, x)
	case domain.GroupRenamed:
		b.add(sqlRename, clinic, id, x.Title)
		systemMessage(b, e, clinic, id, x)
	case domain.GroupDeleted:
		b.add(sqlDeleted, clinic, id)
	case domain.MessageAcknowledged:
		if version, ok := messageVersion(id, x.MessageID); ok {
			b.add(sqlAcknowledged, clinic, id, version, x.UserID, at)
		}
	case domain.MessageEdited:
		if version, ok := messageVersion(id, x.MessageID); ok {
			b.changed(messageKey{clinic, id, version}, x.MessageID, messageChange{text: x.Text, editedAt: at})
		}
	case domain.MessageRecalled:
		if version, ok := messageVersion(id, x.MessageID); ok {
			b.changed(messageKey{clinic, id, version}, x.MessageID, messageChange{recalled: true})
		}

	case domain.ConversationMuted:
		b.prefMuted(inboxKey{clinic, id, x.ConversationID}, true, e.Position)
	case domain.ConversationUnmuted:
		b.prefMuted(inboxKey{clinic, id, x.ConversationID}, false, e.Position)
	case domain.ConversationArchived:
		b.prefArchived(inboxKey{clinic, id, x.ConversationID}, true, e.Position)
	case domain.ConversationUnarchived:
		b.prefArchived(inboxKey{clinic, id, x.ConversationID}, false, e.Position)
	case domain.ReadMarkerMoved:
		b.prefRead(inboxKey{clinic, id, x.ConversationID}, x.UpToVersion, at)
	}
	return nil
}

// A rebuild's load keeps the tables that nothing in the load reads (visibility, inbox and
// member_prefs) in memory (inboxLoad) and writes them once, with the derived inbox columns
// computed. The methods below run a statement live and its twin during a load; each twin must
// do exactly what its statement does, defaults and conflicts included, and the property test
// (live equals rebuild, table by table) holds them to it.

// conversationStarted inserts the conversation, its participants, their visibility windows
// and inbox rows. During a load, a stream's first event is collected with the batch's other
// starts and COPYed ahead of the batch's statements (copyStarts): only the conversation's own
// later events touch those rows, and they follow it.
func (s *writer) conversationStarted(clinic, id string, v int64, x domain.ConversationStarted, at time.Time) {
	if s.load == nil {
		s.add(sqlConvStarted, clinic, id, x.Kind, x.Title, x.OwnerID, x.StartedBy, at)
		s.add(sqlConvParticipants, clinic, id, x.OwnerID, v, x.ParticipantIDs)
		s.add(sqlConvVisibility, clinic, id, v, x.ParticipantIDs)
		s.add(sqlConvInbox, clinic, id, at, x.ParticipantIDs)
		return
	}
	if v == 1 {
		s.load.starts = append(s.load.starts, convStart{clinic, id, x, at})
	} else {
		s.add(sqlConvStarted, clinic, id, x.Kind, x.Title, x.OwnerID, x.StartedBy, at)
		s.add(sqlConvParticipants, clinic, id, x.OwnerID, v, x.ParticipantIDs)
	}
	for _, u := range x.ParticipantIDs {
		k := inboxKey{clinic, u, id}
		s.load.inbox.openWindow(k, v)
		if s.load.inbox.rows[k] == nil {
			s.load.inbox.rows[k] = &inboxRow{clinic: clinic, user: u, conv: id, membership: "active", activityAt: at}
		}
	}
}

// visibilityOpen opens a visibility window at version v (sqlVisibilityOpen).
func (s *writer) visibilityOpen(k inboxKey, v int64) {
	if s.load != nil {
		s.load.inbox.openWindow(k, v)
		return
	}
	s.add(sqlVisibilityOpen, k.clinic, k.conv, k.user, v)
}

// visibilityClose closes the open windows at version v (sqlVisibilityClose).
func (s *writer) visibilityClose(k inboxKey, v int64) {
	if s.load != nil {
		ws := s.load.inbox.windows[k]
		for i := range ws {
			if ws[i].to < 0 {
				ws[i].to = v
			}
		}
		return
	}
	s.add(sqlVisibilityClose, k.clinic, k.conv, k.user, v)
}

// inboxJoin makes the inbox row active, its activity at least at (sqlInboxJoin).
func (s *writer) inboxJoin(k inboxKey, at time.Time) {
	if s.load != nil {
		r := s.load.inbox.rows[k]
		if r == nil {
			s.load.inbox.rows[k] = &inboxRow{clinic: k.clinic, user: k.user, conv: k.conv, membership: "active", activityAt: at}
			return
		}
		r.membership = "active"
		if at.After(r.activityAt) {
			r.activityAt = at
		}
		return
	}
	s.add(sqlInboxJoin, k.clinic, k.conv, k.user, at)
}

// inboxGone sets an existing inbox row's membership (sqlInboxGone).
func (s *writer) inboxGone(k inboxKey, membership string) {
	if s.load != nil {
		if r := s.load.inbox.rows[k]; r != nil {
			r.membership = membership
		}
		return
	}
	s.add(sqlInboxGone, k.clinic, k.conv, k.user, membership)
}

// prefMuted records a mute or unmute at global position pos (sqlPrefMuted).
func (s *writer) prefMuted(k inboxKey, muted bool, pos int64) {
	if s.load != nil {
		p, _ := s.load.inbox.pref(k)
		p.muted = muted
		if muted {
			p.toggles = append(p.toggles, pos)
		} else {
			p.toggles = append(p.toggles, -pos)
		}
		return
	}
	s.add(sqlPrefMuted, k.clinic, k.user, k.conv, muted, pos)
	s.derived(sqlRecountUnarchive, k.clinic, k.user, k.conv)
}

// prefArchived records an archive or unarchive at global position pos (sqlPrefArchived: a new
// row takes the position either way, an existing one only from an archive).
func (s *writer) prefArchived(k inboxKey, archived bool, pos int64) {
	if s.load != nil {
		p, created := s.load.inbox.pref(k)
		p.archived = archived
		if archived || created {
			p.archivedAt = pos
		}
		return
	}
	s.add(sqlPrefArchived, k.clinic, k.user, k.conv, archived, pos)
}

// prefRead moves the read marker, at time at (sqlPrefRead).
func (s *writer) prefRead(k inboxKey, version int64, at time.Time) {
	if s.load != nil {
		p, _ := s.load.inbox.pref(k)
		p.read, p.readAt = version, &at
		return
	}
	s.add(sqlPrefRead, k.clinic, k.user, k.conv, version, at)
	s.derived(sqlRecountUnread, k.clinic, k.user, k.conv, version)
}

// messageVersion returns the version of a message of conversation conv named by id.
func messageVersion(conv, id string) (int64, bool) {
	c, v, ok := domain.ParseMessageID(id)
	return v, ok && c == conv
}

// messageChange is an edit (new text, at editedAt) or a recall of a message.
type messageChange struct {
	text     string
	editedAt time.Time
	recalled bool
}

// changed edits or recalls the message at k (sqlEdited, sqlRecalled) and keeps the inbox
// rows that show it right: the preview of an edited last message, and for a recall the last
// message and unread counts (sqlLastAfterChange, sqlRecountUnreadAfterRecall). A load keeps
// the change in memory and applies it once the messages are all copied (inboxLoad.write).
func (s *writer) changed(k messageKey, id string, c messageChange) {
	if s.load != nil {
		s.load.inbox.change(k, c)
		return
	}
	if c.recalled {
		s.add(sqlRecalled, k.clinic, k.conv, k.version)
		s.derived(sqlLastAfterChange, k.clinic, k.conv, id)
		s.derived(sqlRecountUnreadAfterRecall, k.clinic, k.conv)
		return
	}
	s.add(sqlEdited, k.clinic, k.conv, k.version, c.text, c.editedAt)
	s.derived(sqlLastAfterChange, k.clinic, k.conv, id)
}

// systemMessage stores the system line a conversation event shows as (domain.SystemMessageOf:
// the audit replay uses the same rule) and shows it as every active member's last message. It
// never counts as unread. Its id is domain.MessageID like every message's, so a read marker
// can name it ("read up to here") and auditors' replays name it the same way.
func systemMessage(b *writer, e eventstore.RecordedEvent, clinic, conv string, ev domain.Event) {
	sys, ok := domain.SystemMessageOf(ev)
	if !ok {
		return
	}
	at := e.RecordedAt.UTC()
	id := domain.MessageID(conv, e.StreamVersion)
	b.message(messageRow{clinic: clinic, conv: conv, version: e.StreamVersion, id: id, sender: sys.ActorID, kind: "system",
		system: &sys, sentAt: at, position: e.Position})
	b.derived(sqlFanOut, clinic, conv, id, sys.ActorID, systemPreview(sys.Event), at, false, e.StreamVersion, e.Position, false)
}

// messageRow is one row of messages.
type messageRow struct {
	clinic, conv     string
	version          int64
	id, sender, kind string
	text             string
	file             *fileRef              // kind "file"
	system           *domain.SystemMessage // kind "system"
	sentAt           time.Time
	position         int64
	urgent           bool
	editedAt         *time.Time
	recalled         bool
}

type fileRef struct {
	id, name    string
	size        int64
	contentType string
	sha256      string
}

var messageColumns = []string{"clinic_id", "conversation_id", "version", "message_id", "sender_id", "kind", "text",
	"file_id", "file_name", "file_size", "file_content_type", "file_sha256",
	"system_event", "system_actor_id", "system_subject_id", "sent_at", "position", "urgent"}

// values returns the row's values in messageColumns order (sqlInsertMessage's parameters).
func (m *messageRow) values() []any {
	v := []any{m.clinic, m.conv, m.version, m.id, m.sender, m.kind, m.text,
		nil, nil, nil, nil, nil, nil, nil, nil, m.sentAt, m.position, m.urgent}
	if f := m.file; f != nil {
		v[7], v[8], v[9], v[10], v[11] = f.id, f.name, f.size, f.contentType, f.sha256
	}
	if s := m.system; s != nil {
		v[12], v[13], v[14] = s.Event, s.ActorID, s.SubjectID
	}
	return v
}

// preview is what the inbox shows of the message (sqlFanOut's preview argument).
func (m *messageRow) preview() string {
	switch {
	case m.system != nil:
		return systemPreview(m.system.Event)
	case m.file != nil:
		return preview(m.file.name)
	}
	return preview(m.text)
}
