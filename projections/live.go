package projections

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/live"
)

// The live stream (GET /v1/stream, ADR 0004): while applying events live, the inbox projector
// appends each affected user's feed entries in the same transaction, built from the read
// models as that transaction sees them, and pings the users after commit. A rebuild appends
// nothing (clients would see old notifications again), and neither does a skipped duplicate.

// LiveMessage is the body of a `message` entry: a Message plus its conversation and whether
// the client should pop up and play a sound.
type LiveMessage struct {
	Message
	ConversationID string `json:"conversation_id"`
	Notify         bool   `json:"notify"`
}

// LiveRemoved is the body of a `removed` entry: a conversation left the list (deleted).
type LiveRemoved struct {
	ConversationID string `json:"conversation_id"`
}

const (
	sqlSeers = `SELECT user_id FROM visibility
		WHERE clinic_id = $1 AND conversation_id = $2 AND from_version <= $3 AND (to_version IS NULL OR to_version >= $3)
		ORDER BY user_id`
	sqlInboxUsers = `SELECT user_id FROM inbox WHERE clinic_id = $1 AND conversation_id = $2 ORDER BY user_id`
	sqlMessageAt  = `SELECT m.version, m.message_id, m.sender_id, m.kind, m.text,
		m.file_id, m.file_name, m.file_size, m.file_content_type, m.file_sha256,
		m.system_event, m.system_actor_id, m.system_subject_id, m.sent_at
		FROM messages m WHERE m.clinic_id = $1 AND m.conversation_id = $2 AND m.version = $3`
	// sqlMutedAt names the users who can see message version $3 of conversation $2 and whose
	// last mute toggle of it stored before position $4 was a mute: the state the message was
	// sent into. It reads the store, not member_prefs, so it does not depend on whether the
	// projector has applied the mute yet (instances and workers may apply a mute and a later
	// message in either order). Causally later commands always get larger positions.
	// Each user's toggles are in their member stream member-<clinic>.<user> and, in stores
	// written before ADR 0013, the legacy member-<user> (conversation ids are unique across
	// clinics, so the conversation filter keeps other clinics' toggles out).
	sqlMutedAt = `SELECT user_id FROM (
		SELECT DISTINCT ON (user_id) user_id, type FROM events, (SELECT DISTINCT user_id FROM visibility
			WHERE clinic_id = $1 AND conversation_id = $2 AND from_version <= $3 AND (to_version IS NULL OR to_version >= $3)) v
		WHERE stream_id IN ('member-' || $1 || '.' || user_id, 'member-' || user_id)
		  AND type IN ('ConversationMuted', 'ConversationUnmuted')
		  AND data->>'conversation_id' = $2 AND global_position < $4
		ORDER BY user_id, global_position DESC) last
		WHERE type = 'ConversationMuted'`
)

// appendLive appends the feed entries for events (already applied in tx) and returns them, to
// push to the users' streams after commit. Three round trips for a whole batch, however many events and users: what
// each event needs (who sees it, its message row, who had muted the chat, participants), then
// every summary and unread body the entries carry (each distinct one read once: they are all
// read after the batch's statements, so repeats would read the same), then the appends.
func appendLive(ctx context.Context, tx pgx.Tx, events []eventstore.RecordedEvent) ([]live.Written, error) {
	type item struct {
		clinic, conv, user string // user: a member event's
		unread             bool   // a member event that moves the unread counts
		deleted            bool   // GroupDeleted: inboxUsers get `removed`
		inboxUsers         []string
		m                  messageEvent
		member             bool
	}
	type convKey struct{ clinic, conv string }
	var items []*item
	parts := map[convKey][]Participant{}
	convsOf := map[string][]string{} // clinic → conversations whose participants summaries need

	// Round trip 1: each event's facts.
	b1 := &pgx.Batch{}
	needParts := func(clinic, conv string) {
		k := convKey{clinic, conv}
		if _, ok := parts[k]; !ok {
			parts[k] = nil
			convsOf[clinic] = append(convsOf[clinic], conv)
		}
	}
	for _, e := range events {
		ev, err := domain.Decode(e.Type, e.Data)
		if err != nil {
			continue // the projector already decided what to do with it
		}
		it := &item{clinic: clinicOf(e)}
		switch e.Category() {
		case domain.CategoryMember:
			it.member, it.user = true, streamSuffix(e)
			switch x := ev.(type) {
			case domain.ConversationMuted:
				it.conv = x.ConversationID
			case domain.ConversationUnmuted:
				it.conv = x.ConversationID
			case domain.ConversationArchived:
				it.conv = x.ConversationID
			case domain.ConversationUnarchived:
				it.conv = x.ConversationID
			case domain.ReadMarkerMoved:
				it.conv, it.unread = x.ConversationID, true
			default:
				continue
			}
			needParts(it.clinic, it.conv)
		case domain.CategoryConversation:
			it.conv = streamSuffix(e)
			if _, deleted := ev.(domain.GroupDeleted); deleted {
				it.deleted = true
				b1.Queue(sqlInboxUsers, it.clinic, it.conv).Query(func(rows pgx.Rows) (err error) {
					it.inboxUsers, err = pgx.CollectRows(rows, pgx.RowTo[string])
					return err
				})
				break
			}
			queueMessageEvent(b1, it.clinic, it.conv, e, &it.m)
			needParts(it.clinic, it.conv)
		default:
			continue
		}
		items = append(items, it)
	}
	for clinic, convs := range convsOf {
		b1.Queue(sqlParticipants, clinic, convs).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				conv, p, err := scanParticipant(rows)
				if err != nil {
					return err
				}
				k := convKey{clinic, conv}
				parts[k] = append(parts[k], p)
			}
			return rows.Err()
		})
	}
	if b1.Len() > 0 {
		if err := tx.SendBatch(ctx, b1).Close(); err != nil {
			return nil, fmt.Errorf("live: read events: %w", err)
		}
	}

	// Round trip 2: the summaries and unread bodies the entries carry.
	type sumKey struct{ clinic, user, conv string }
	type userKey struct{ clinic, user string }
	summaries := map[sumKey]*Summary{}
	unreads := map[userKey]*Unread{}
	b2 := &pgx.Batch{}
	wantSummary := func(clinic, user, conv string) {
		k := sumKey{clinic, user, conv}
		if _, ok := summaries[k]; ok {
			return
		}
		summaries[k] = nil
		b2.Queue(sqlGetConversation, clinic, user, conv).Query(func(rows pgx.Rows) error {
			sums, err := pgx.CollectRows(rows, scanSummary)
			if err != nil {
				return err
			}
			if len(sums) == 1 {
				withParticipants(&sums[0], parts[convKey{clinic, conv}], user)
				summaries[k] = &sums[0]
			}
			return nil
		})
	}
	wantUnread := func(clinic, user string) {
		k := userKey{clinic, user}
		if _, ok := unreads[k]; ok {
			return
		}
		unreads[k] = nil
		b2.Queue(sqlUnread, clinic, user).Query(func(rows pgx.Rows) error {
			u, err := unreadFrom(rows)
			unreads[k] = &u
			return err
		})
	}
	for _, it := range items {
		switch {
		case it.member:
			if it.unread {
				wantUnread(it.clinic, it.user)
			}
			wantSummary(it.clinic, it.user, it.conv)
		case it.deleted:
		default:
			plain := it.m.plain()
			for _, u := range it.m.seers {
				wantSummary(it.clinic, u, it.conv)
				if plain && u != it.m.messages[0].SenderID {
					wantUnread(it.clinic, u)
				}
			}
		}
	}
	if b2.Len() > 0 {
		if err := tx.SendBatch(ctx, b2).Close(); err != nil {
			return nil, fmt.Errorf("live: summaries: %w", err)
		}
	}

	// Round trip 3: the entries, in event order; per event in user id order, so two
	// transactions lock the users' feed cursors in a consistent order.
	var pending []live.Pending
	add := func(clinic, user, kind string, body any) {
		pending = append(pending, live.Pending{To: live.Target{ClinicID: clinic, UserID: user}, Kind: kind, Body: body})
	}
	summary := func(clinic, user, conv string) {
		if s := summaries[sumKey{clinic, user, conv}]; s != nil {
			add(clinic, user, live.KindConversation, *s)
		}
	}
	unread := func(clinic, user string) {
		if u := unreads[userKey{clinic, user}]; u != nil {
			add(clinic, user, live.KindUnread, *u)
		}
	}
	for _, it := range items {
		switch {
		case it.member:
			if it.unread {
				unread(it.clinic, it.user)
			}
			summary(it.clinic, it.user, it.conv)
		case it.deleted:
			for _, u := range it.inboxUsers {
				add(it.clinic, u, live.KindRemoved, LiveRemoved{ConversationID: it.conv})
			}
		case it.m.plain():
			// A plain message, the hot path: the message entry (notify unless it is their own
			// or they had muted the chat), the conversation's new summary, and for everyone but
			// the sender the new unread counts.
			m := it.m.messages[0]
			for _, u := range it.m.seers {
				add(it.clinic, u, live.KindMessage, LiveMessage{Message: m, ConversationID: it.conv, Notify: m.SenderID != u && !it.m.muted[u]})
				summary(it.clinic, u, it.conv)
				if u != m.SenderID {
					unread(it.clinic, u)
				}
			}
		default:
			for _, u := range it.m.seers {
				if len(it.m.messages) == 1 {
					add(it.clinic, u, live.KindMessage, LiveMessage{Message: it.m.messages[0], ConversationID: it.conv, Notify: false})
				}
				summary(it.clinic, u, it.conv)
			}
		}
	}
	return live.AppendAll(ctx, tx, pending)
}

// messageEvent is what the live feed needs to know about a conversation event: who can see
// it, its message row (if it has one), and who had muted the chat when it was stored.
type messageEvent struct {
	seers    []string
	messages []Message
	muted    map[string]bool
}

// plain reports a text or file message (not a system line).
func (m *messageEvent) plain() bool { return len(m.messages) == 1 && m.messages[0].Kind != "system" }

// queueMessageEvent queues on b the reads that fill m for conversation event e.
func queueMessageEvent(b *pgx.Batch, clinic, conv string, e eventstore.RecordedEvent, m *messageEvent) {
	b.Queue(sqlSeers, clinic, conv, e.StreamVersion).Query(func(rows pgx.Rows) (err error) {
		m.seers, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	b.Queue(sqlMessageAt, clinic, conv, e.StreamVersion).Query(func(rows pgx.Rows) (err error) {
		m.messages, err = pgx.CollectRows(rows, scanMessage)
		return err
	})
	b.Queue(sqlMutedAt, clinic, conv, e.StreamVersion, e.Position).Query(func(rows pgx.Rows) error {
		muted, err := pgx.CollectRows(rows, pgx.RowTo[string])
		m.muted = make(map[string]bool, len(muted))
		for _, u := range muted {
			m.muted[u] = true
		}
		return err
	})
}
