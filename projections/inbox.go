package projections

import (
	"context"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
)

// The inbox projection: conversations, participants, visibility windows, messages, one inbox
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
//   - whether the conversation was muted when a message arrived (domain.ShouldUnarchiveOnMessage's
//     muted argument) is read from the member's mute toggle positions, not from the current
//     flag, and a late mute toggle recomputes unarchive_position from the messages.
var inboxTables = []string{"conversations", "participants", "visibility", "messages", "inbox", "member_prefs"}

const previewRunes = 120

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
		system_event, system_actor_id, system_subject_id, sent_at, position)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`

	// mutedAt*: was the conversation muted for inbox row i's user when the event at that global
	// position happened? The latest mute (+) or unmute (-) toggle before it decides.
	mutedAtHead = `coalesce((SELECT t > 0 FROM member_prefs p, unnest(p.mute_toggles) AS t
		WHERE p.clinic_id = i.clinic_id AND p.user_id = i.user_id AND p.conversation_id = i.conversation_id
		  AND abs(t) < `
	mutedAtTail    = ` ORDER BY abs(t) DESC LIMIT 1), false)`
	mutedAtFanOut  = mutedAtHead + `$9` + mutedAtTail
	mutedAtMessage = mutedAtHead + `m.position` + mutedAtTail

	// sqlFanOut updates every active member's inbox row for a new message in one statement.
	// $7 says whether the message counts (text or file: unread, unarchive); it counts for
	// everyone but the sender whose read marker is before it.
	sqlFanOut = `UPDATE inbox i SET
		last_message_id = $3, last_message_sender_id = $4, last_message_preview = $5,
		last_message_at = $6, last_activity_at = greatest(i.last_activity_at, $6),
		unread_count = i.unread_count + CASE WHEN $7 AND i.user_id <> $4 AND $8 > coalesce(
			(SELECT p.read_version FROM member_prefs p
			 WHERE p.clinic_id = i.clinic_id AND p.user_id = i.user_id AND p.conversation_id = i.conversation_id), 0)
			THEN 1 ELSE 0 END,
		unarchive_position = CASE WHEN $7 AND i.user_id <> $4 AND NOT ` + mutedAtFanOut + `
			THEN greatest(i.unarchive_position, $9) ELSE i.unarchive_position END
		WHERE i.clinic_id = $1 AND i.conversation_id = $2 AND i.membership = 'active'`

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
	// sqlRecountUnarchive recomputes unarchive_position after a mute toggle (which may have
	// been applied after messages that came later in the store): the latest visible message
	// from someone else that arrived while not muted.
	sqlRecountUnarchive = `UPDATE inbox i SET unarchive_position = coalesce((
			SELECT max(m.position) FROM messages m
			WHERE m.clinic_id = i.clinic_id AND m.conversation_id = i.conversation_id
			  AND m.kind <> 'system' AND m.sender_id <> i.user_id
			  AND EXISTS (SELECT 1 FROM visibility v
			      WHERE v.clinic_id = m.clinic_id AND v.conversation_id = m.conversation_id AND v.user_id = i.user_id
			        AND m.version >= v.from_version AND (v.to_version IS NULL OR m.version <= v.to_version))
			  AND NOT ` + mutedAtMessage + `), 0)
		WHERE i.clinic_id = $1 AND i.user_id = $2 AND i.conversation_id = $3`
	sqlPrefArchived = `INSERT INTO member_prefs (clinic_id, user_id, conversation_id, archived, archived_position)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (clinic_id, user_id, conversation_id) DO UPDATE
		SET archived = EXCLUDED.archived,
		    archived_position = CASE WHEN EXCLUDED.archived THEN EXCLUDED.archived_position ELSE member_prefs.archived_position END`
	sqlPrefRead = `INSERT INTO member_prefs (clinic_id, user_id, conversation_id, read_version) VALUES ($1, $2, $3, $4)
		ON CONFLICT (clinic_id, user_id, conversation_id) DO UPDATE SET read_version = EXCLUDED.read_version`
	// sqlRecountUnread recomputes one user's unread count after their read marker moved: text
	// and file messages from others after the marker, inside the user's visibility windows.
	sqlRecountUnread = `UPDATE inbox i SET unread_count = (
			SELECT count(*) FROM messages m
			WHERE m.clinic_id = i.clinic_id AND m.conversation_id = i.conversation_id
			  AND m.version > $4 AND m.kind <> 'system' AND m.sender_id <> i.user_id
			  AND EXISTS (SELECT 1 FROM visibility v
			      WHERE v.clinic_id = m.clinic_id AND v.conversation_id = m.conversation_id AND v.user_id = i.user_id
			        AND m.version >= v.from_version AND (v.to_version IS NULL OR m.version <= v.to_version)))
		WHERE i.clinic_id = $1 AND i.user_id = $2 AND i.conversation_id = $3`
)

func applyInbox(b *stmts, e eventstore.RecordedEvent, ev domain.Event) error {
	clinic := clinicOf(e)
	id := streamSuffix(e.StreamID)
	at := e.RecordedAt.UTC()
	v := e.StreamVersion
	switch x := ev.(type) {
	case domain.ConversationStarted:
		owner := x.OwnerID
		b.add(sqlConvStarted, clinic, id, x.Kind, x.Title, owner, x.StartedBy, at)
		b.add(sqlConvParticipants, clinic, id, owner, v, x.ParticipantIDs)
		b.add(sqlConvVisibility, clinic, id, v, x.ParticipantIDs)
		b.add(sqlConvInbox, clinic, id, at, x.ParticipantIDs)
	case domain.MessageSent:
		b.message(clinic, id, v, x.MessageID, x.SenderID, "text", x.Text,
			nil, nil, nil, nil, nil, nil, nil, nil, at, e.Position)
		b.derived(sqlFanOut, clinic, id, x.MessageID, x.SenderID, preview(x.Text), at, true, v, e.Position)
	case domain.FileShared:
		b.message(clinic, id, v, x.MessageID, x.SenderID, "file", "",
			x.FileID, x.Name, x.Size, x.ContentType, x.SHA256, nil, nil, nil, at, e.Position)
		b.derived(sqlFanOut, clinic, id, x.MessageID, x.SenderID, preview(x.Name), at, true, v, e.Position)
	case domain.ParticipantAdded:
		b.add(sqlParticipantAdded, clinic, id, x.UserID, v)
		b.add(sqlVisibilityOpen, clinic, id, x.UserID, v)
		b.add(sqlInboxJoin, clinic, id, x.UserID, at)
		systemMessage(b, e, clinic, id, x)
	case domain.ParticipantRemoved:
		systemMessage(b, e, clinic, id, x)
		b.add(sqlParticipantGone, clinic, id, x.UserID, "removed")
		b.add(sqlVisibilityClose, clinic, id, x.UserID, v)
		b.add(sqlInboxGone, clinic, id, x.UserID, "removed")
	case domain.ParticipantLeft:
		systemMessage(b, e, clinic, id, x)
		b.add(sqlParticipantGone, clinic, id, x.UserID, "left")
		b.add(sqlVisibilityClose, clinic, id, x.UserID, v)
		b.add(sqlInboxGone, clinic, id, x.UserID, "left")
	case domain.OwnershipPassed:
		b.add(sqlOwnerRoles, clinic, id, x.FromUserID, x.ToUserID)
		b.add(sqlOwner, clinic, id, x.ToUserID)
		systemMessage(b, e, clinic, id, x)
	case domain.GroupRenamed:
		b.add(sqlRename, clinic, id, x.Title)
		systemMessage(b, e, clinic, id, x)
	case domain.GroupDeleted:
		b.add(sqlDeleted, clinic, id)

	case domain.ConversationMuted:
		b.add(sqlPrefMuted, clinic, id, x.ConversationID, true, e.Position)
		b.derived(sqlRecountUnarchive, clinic, id, x.ConversationID)
	case domain.ConversationUnmuted:
		b.add(sqlPrefMuted, clinic, id, x.ConversationID, false, e.Position)
		b.derived(sqlRecountUnarchive, clinic, id, x.ConversationID)
	case domain.ConversationArchived:
		b.add(sqlPrefArchived, clinic, id, x.ConversationID, true, e.Position)
	case domain.ConversationUnarchived:
		b.add(sqlPrefArchived, clinic, id, x.ConversationID, false, e.Position)
	case domain.ReadMarkerMoved:
		b.add(sqlPrefRead, clinic, id, x.ConversationID, x.UpToVersion)
		b.derived(sqlRecountUnread, clinic, id, x.ConversationID, x.UpToVersion)
	}
	return nil
}

// systemMessage stores the system line a conversation event shows as (domain.SystemMessageOf:
// the audit replay uses the same rule) and shows it as every active member's last message. It
// never counts as unread. Its id is domain.MessageID like every message's, so a read marker
// can name it ("read up to here") and auditors' replays name it the same way.
func systemMessage(b *stmts, e eventstore.RecordedEvent, clinic, conv string, ev domain.Event) {
	sys, ok := domain.SystemMessageOf(ev)
	if !ok {
		return
	}
	at := e.RecordedAt.UTC()
	id := domain.MessageID(conv, e.StreamVersion)
	b.message(clinic, conv, e.StreamVersion, id, sys.ActorID, "system", "",
		nil, nil, nil, nil, nil, sys.Event, sys.ActorID, sys.SubjectID, at, e.Position)
	b.derived(sqlFanOut, clinic, conv, id, sys.ActorID, systemPreview(sys.Event), at, false, e.StreamVersion, e.Position)
}

var messageColumns = []string{"clinic_id", "conversation_id", "version", "message_id", "sender_id", "kind", "text",
	"file_id", "file_name", "file_size", "file_content_type", "file_sha256",
	"system_event", "system_actor_id", "system_subject_id", "sent_at", "position"}

// sqlDeriveInbox recomputes, in one set-based statement, every inbox column that the
// incremental statements above derive from messages, visibility and member_prefs (last
// message, unread count, unarchive position, last activity). A rebuild loads the base tables
// without the per-message fan-out and runs this once; the property test holds it to giving
// exactly what the incremental path gives.
var sqlDeriveInbox = `WITH agg AS (
		SELECT v.clinic_id, v.user_id, v.conversation_id, max(m.version) AS last_version,
		       count(*) FILTER (WHERE m.kind <> 'system' AND m.sender_id <> v.user_id
		                          AND m.version > coalesce(p.read_version, 0)) AS unread,
		       coalesce(max(m.position) FILTER (WHERE m.kind <> 'system' AND m.sender_id <> v.user_id
		           AND NOT (cardinality(p.mute_toggles) > 0 AND coalesce((SELECT t > 0 FROM unnest(p.mute_toggles) AS t
		                    WHERE abs(t) < m.position ORDER BY abs(t) DESC LIMIT 1), false))), 0) AS unarchive
		FROM visibility v
		JOIN messages m ON m.clinic_id = v.clinic_id AND m.conversation_id = v.conversation_id
		 AND m.version >= v.from_version AND (v.to_version IS NULL OR m.version <= v.to_version)
		LEFT JOIN member_prefs p ON p.clinic_id = v.clinic_id AND p.user_id = v.user_id AND p.conversation_id = v.conversation_id
		GROUP BY v.clinic_id, v.user_id, v.conversation_id)
	UPDATE inbox i SET
		last_message_id = m.message_id, last_message_sender_id = m.sender_id,
		last_message_preview = ` + previewSQL("m") + `, last_message_at = m.sent_at,
		last_activity_at = greatest(i.last_activity_at, m.sent_at),
		unread_count = agg.unread, unarchive_position = agg.unarchive
	FROM agg
	JOIN messages m ON m.clinic_id = agg.clinic_id AND m.conversation_id = agg.conversation_id AND m.version = agg.last_version
	WHERE i.clinic_id = agg.clinic_id AND i.user_id = agg.user_id AND i.conversation_id = agg.conversation_id`

// previewSQL is preview and systemPreview in SQL, for message rows aliased m.
func previewSQL(m string) string {
	src := `CASE ` + m + `.kind WHEN 'file' THEN ` + m + `.file_name ELSE ` + m + `.text END`
	sys := `CASE ` + m + `.system_event`
	for _, ev := range []string{domain.SystemParticipantAdded, domain.SystemParticipantRemoved, domain.SystemParticipantLeft, domain.SystemGroupRenamed, domain.SystemOwnershipPassed} {
		sys += ` WHEN '` + ev + `' THEN '` + systemPreview(ev) + `'`
	}
	sys += ` ELSE ` + m + `.system_event END`
	return `CASE WHEN ` + m + `.kind = 'system' THEN ` + sys +
		` WHEN char_length(` + src + `) <= ` + strconv.Itoa(previewRunes) + ` THEN ` + src +
		` ELSE left(` + src + `, ` + strconv.Itoa(previewRunes) + `) || '…' END`
}

func deriveInbox(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, sqlDeriveInbox); err != nil {
		return fmt.Errorf("derive inbox: %w", err)
	}
	return nil
}

func preview(s string) string {
	if utf8.RuneCountInString(s) <= previewRunes {
		return s
	}
	r := []rune(s)
	return string(r[:previewRunes]) + "…"
}

func systemPreview(event string) string {
	switch event {
	case domain.SystemParticipantAdded:
		return "added a participant"
	case domain.SystemParticipantRemoved:
		return "removed a participant"
	case domain.SystemParticipantLeft:
		return "left the group"
	case domain.SystemGroupRenamed:
		return "renamed the group"
	case domain.SystemOwnershipPassed:
		return "passed on ownership"
	}
	return event
}
