package inbox

import (
	"github.com/jackc/pgx/v5"

	"github.com/huddle-chat/huddle/eventstore"
)

// Reads for the live feed's writer (package live), queued on its pgx batch inside the
// transaction that applied the events, so they see the inbox as that transaction left it.

var (
	sqlSeers = `SELECT user_id FROM visibility
		WHERE clinic_id = $1 AND conversation_id = $2 AND from_version <= $3 AND (to_version IS NULL OR to_version >= $3)
		ORDER BY user_id`
	sqlInboxUsers = `SELECT user_id FROM inbox WHERE clinic_id = $1 AND conversation_id = $2 ORDER BY user_id`
	sqlMessageAt  = `SELECT ` + messageCols + `
		FROM messages m WHERE m.clinic_id = $1 AND m.conversation_id = $2 AND m.version = $3`
	// sqlMutedAt names the users who can see message version $3 of conversation $2 and had
	// muted it when the message was stored (global position $4): the inbox projection's rule
	// "muted at that moment" (mutedAtHead), over the mute toggles it keeps with their positions,
	// so a mute applied after a later message still counts as later.
	sqlMutedAt = `SELECT i.user_id FROM inbox i
		WHERE i.clinic_id = $1 AND i.conversation_id = $2
		  AND i.user_id IN (SELECT user_id FROM visibility
			WHERE clinic_id = $1 AND conversation_id = $2 AND from_version <= $3 AND (to_version IS NULL OR to_version >= $3))
		  AND ` + mutedAtHead + `$4` + mutedAtTail
)

// QueueParticipants queues on b the read of the participants of convs in clinic; fn gets each.
func QueueParticipants(b *pgx.Batch, clinic string, convs []string, fn func(conv string, p Participant)) {
	b.Queue(sqlParticipants, clinic, convs).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			conv, p, err := scanParticipant(rows)
			if err != nil {
				return err
			}
			fn(conv, p)
		}
		return rows.Err()
	})
}

// QueueInboxUsers queues on b the read of the users with an inbox row for conv.
func QueueInboxUsers(b *pgx.Batch, clinic, conv string, fn func(users []string)) {
	b.Queue(sqlInboxUsers, clinic, conv).Query(func(rows pgx.Rows) error {
		users, err := pgx.CollectRows(rows, pgx.RowTo[string])
		fn(users)
		return err
	})
}

// QueueSummary queues on b the read of conv as user's chat list shows it, without its
// participants (WithParticipants adds them); fn gets it when user has it in their list.
func QueueSummary(b *pgx.Batch, clinic, user, conv string, fn func(Summary)) {
	b.Queue(sqlGetConversation, clinic, user, conv).Query(func(rows pgx.Rows) error {
		sums, err := pgx.CollectRows(rows, scanSummary)
		if err != nil {
			return err
		}
		if len(sums) == 1 {
			fn(sums[0])
		}
		return nil
	})
}

// QueueUnread queues on b the read of user's unread counts (the /v1/unread body).
func QueueUnread(b *pgx.Batch, clinic, user string, fn func(Unread)) {
	b.Queue(sqlUnread, clinic, user).Query(func(rows pgx.Rows) error {
		u, err := unreadFrom(rows)
		fn(u)
		return err
	})
}

// MessageEvent is what the live feed needs to know about a conversation event: who can see
// it, its message row (if it has one), and who had muted the chat when it was stored.
type MessageEvent struct {
	Seers    []string
	Messages []Message
	Muted    map[string]bool
}

// Plain reports a text or file message (not a system line).
func (m *MessageEvent) Plain() bool { return len(m.Messages) == 1 && m.Messages[0].Kind != "system" }

// QueueMessageAt queues on b the reads that fill m (without Muted) for the message at version
// msg of conv, with the members who could see version seersAt.
func QueueMessageAt(b *pgx.Batch, clinic, conv string, seersAt, msg int64, m *MessageEvent) {
	b.Queue(sqlSeers, clinic, conv, seersAt).Query(func(rows pgx.Rows) (err error) {
		m.Seers, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	b.Queue(sqlMessageAt, clinic, conv, msg).Query(func(rows pgx.Rows) (err error) {
		m.Messages, err = pgx.CollectRows(rows, scanMessage)
		return err
	})
}

// QueueReceipt queues on b the read of user's receipt in conv; fn gets it when user is an
// active member.
func QueueReceipt(b *pgx.Batch, clinic, conv, user string, fn func(Receipt)) {
	b.Queue(sqlReceipts, clinic, conv, user).Query(func(rows pgx.Rows) error {
		rs, err := pgx.CollectRows(rows, scanReceipt)
		if err == nil && len(rs) == 1 {
			fn(rs[0])
		}
		return err
	})
}

// QueueMessageEvent queues on b the reads that fill m for conversation event e.
func QueueMessageEvent(b *pgx.Batch, clinic, conv string, e eventstore.RecordedEvent, m *MessageEvent) {
	b.Queue(sqlSeers, clinic, conv, e.StreamVersion).Query(func(rows pgx.Rows) (err error) {
		m.Seers, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	b.Queue(sqlMessageAt, clinic, conv, e.StreamVersion).Query(func(rows pgx.Rows) (err error) {
		m.Messages, err = pgx.CollectRows(rows, scanMessage)
		return err
	})
	b.Queue(sqlMutedAt, clinic, conv, e.StreamVersion, e.Position).Query(func(rows pgx.Rows) error {
		muted, err := pgx.CollectRows(rows, pgx.RowTo[string])
		m.Muted = make(map[string]bool, len(muted))
		for _, u := range muted {
			m.Muted[u] = true
		}
		return err
	})
}
