package projections

import (
	"context"
	"errors"
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
	sqlMutedAt = `SELECT substr(stream_id, length('member-') + 1) FROM (
		SELECT DISTINCT ON (stream_id) stream_id, type FROM events
		WHERE stream_id = ANY(ARRAY(SELECT 'member-' || user_id FROM visibility
			WHERE clinic_id = $1 AND conversation_id = $2 AND from_version <= $3 AND (to_version IS NULL OR to_version >= $3)))
		  AND type IN ('ConversationMuted', 'ConversationUnmuted')
		  AND data->>'conversation_id' = $2 AND global_position < $4
		ORDER BY stream_id, global_position DESC) last
		WHERE type = 'ConversationMuted'`
)

// appendLive appends the feed entries for events (already applied in tx) and returns whom to
// ping after commit.
func appendLive(ctx context.Context, tx pgx.Tx, events []eventstore.RecordedEvent) ([]live.Target, error) {
	q := &Queries{pool: tx}
	var targets []live.Target
	var pending []live.Pending
	add := func(clinic, user, kind string, body any) error {
		to := live.Target{ClinicID: clinic, UserID: user}
		pending = append(pending, live.Pending{To: to, Kind: kind, Body: body})
		targets = append(targets, to)
		return nil
	}
	summary := func(clinic, user, conv string) error {
		c, err := q.GetConversation(ctx, clinic, user, conv)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return add(clinic, user, live.KindConversation, c.Summary)
	}
	unread := func(clinic, user string) error {
		u, err := q.Unread(ctx, clinic, user)
		if err != nil {
			return err
		}
		return add(clinic, user, live.KindUnread, u)
	}
	for _, e := range events {
		ev, err := domain.Decode(e.Type, e.Data)
		if err != nil {
			continue // the projector already decided what to do with it
		}
		clinic := clinicOf(e)
		switch e.Category() {
		case domain.CategoryMember:
			user := streamSuffix(e.StreamID)
			var conv string
			switch x := ev.(type) {
			case domain.ConversationMuted:
				conv = x.ConversationID
			case domain.ConversationUnmuted:
				conv = x.ConversationID
			case domain.ConversationArchived:
				conv = x.ConversationID
			case domain.ConversationUnarchived:
				conv = x.ConversationID
			case domain.ReadMarkerMoved:
				conv = x.ConversationID
				if err := unread(clinic, user); err != nil {
					return nil, err
				}
			default:
				continue
			}
			if err := summary(clinic, user, conv); err != nil {
				return nil, err
			}
		case domain.CategoryConversation:
			conv := streamSuffix(e.StreamID)
			if _, deleted := ev.(domain.GroupDeleted); deleted {
				users, err := collectStrings(ctx, tx, sqlInboxUsers, clinic, conv)
				if err != nil {
					return nil, err
				}
				for _, u := range users {
					if err := add(clinic, u, live.KindRemoved, LiveRemoved{ConversationID: conv}); err != nil {
						return nil, err
					}
				}
				continue
			}
			m, err := readMessageEvent(ctx, tx, clinic, conv, e)
			if err != nil {
				return nil, err
			}
			users, msgs := m.seers, m.messages
			if len(msgs) == 1 && msgs[0].Kind != "system" {
				// A plain message, the hot path: the message entry says it all, plus the new
				// unread counts of everyone but the sender.
				if err := messageFanOut(ctx, tx, clinic, conv, m, add); err != nil {
					return nil, err
				}
				continue
			}
			for _, u := range users {
				if len(msgs) == 1 {
					m := msgs[0]
					if err := add(clinic, u, live.KindMessage, LiveMessage{Message: m, ConversationID: conv, Notify: false}); err != nil {
						return nil, err
					}
				}
				if err := summary(clinic, u, conv); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := live.AppendAll(ctx, tx, pending); err != nil {
		return nil, err
	}
	return targets, nil
}

// messageEvent is what the live feed needs to know about a conversation event, read in one
// round trip after the event was applied: who can see it, its message row (if it has one), and
// for a plain message, who had muted the chat and the participants.
type messageEvent struct {
	seers    []string
	messages []Message
	muted    map[string]bool
	parts    []Participant
}

func readMessageEvent(ctx context.Context, tx pgx.Tx, clinic, conv string, e eventstore.RecordedEvent) (messageEvent, error) {
	batch := &pgx.Batch{}
	batch.Queue(sqlSeers, clinic, conv, e.StreamVersion)
	batch.Queue(sqlMessageAt, clinic, conv, e.StreamVersion)
	batch.Queue(sqlMutedAt, clinic, conv, e.StreamVersion, e.Position)
	batch.Queue(sqlParticipants, clinic, []string{conv})
	results := tx.SendBatch(ctx, batch)
	defer results.Close()
	var m messageEvent
	rows, err := results.Query()
	if err == nil {
		m.seers, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		return m, fmt.Errorf("live: seers: %w", err)
	}
	if rows, err = results.Query(); err == nil {
		m.messages, err = pgx.CollectRows(rows, scanMessage)
	}
	if err != nil {
		return m, fmt.Errorf("live: message: %w", err)
	}
	var muted []string
	if rows, err = results.Query(); err == nil {
		muted, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil {
		return m, fmt.Errorf("live: muted: %w", err)
	}
	m.muted = make(map[string]bool, len(muted))
	for _, u := range muted {
		m.muted[u] = true
	}
	if rows, err = results.Query(); err == nil {
		m.parts, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Participant, error) {
			_, p, err := scanParticipant(r)
			return p, err
		})
	}
	if err != nil {
		return m, fmt.Errorf("live: participants: %w", err)
	}
	return m, results.Close()
}

// messageFanOut adds, for every user who can see message m, its `message` entry (notify unless
// it is their own or they muted the chat), the conversation's new `conversation` summary as
// that user sees it, and, for everyone but the sender, their new `unread` body. Users are in
// user id order, so the appends lock feed cursors in a consistent order. With readMessageEvent
// before and the appends after, three round trips whatever the group size.
func messageFanOut(ctx context.Context, tx pgx.Tx, clinic, conv string, ev messageEvent,
	add func(clinic, user, kind string, body any) error) error {
	m, users, muted, parts := ev.messages[0], ev.seers, ev.muted, ev.parts
	batch := &pgx.Batch{}
	for _, u := range users {
		batch.Queue(sqlGetConversation, clinic, u, conv)
		if u != m.SenderID {
			batch.Queue(sqlUnread, clinic, u)
		}
	}
	summaries := make(map[string]Summary, len(users))
	unread := make(map[string]Unread, len(users))
	results := tx.SendBatch(ctx, batch)
	for _, u := range users {
		rows, err := results.Query()
		if err != nil {
			results.Close()
			return fmt.Errorf("live: summary: %w", err)
		}
		sums, err := pgx.CollectRows(rows, scanSummary)
		if err != nil {
			results.Close()
			return fmt.Errorf("live: summary: %w", err)
		}
		if len(sums) == 1 {
			withParticipants(&sums[0], parts, u)
			summaries[u] = sums[0]
		}
		if u == m.SenderID {
			continue
		}
		if rows, err = results.Query(); err != nil {
			results.Close()
			return fmt.Errorf("live: unread: %w", err)
		}
		body, err := unreadFrom(rows)
		if err != nil {
			results.Close()
			return fmt.Errorf("live: unread: %w", err)
		}
		unread[u] = body
	}
	if err := results.Close(); err != nil {
		return fmt.Errorf("live: fan-out: %w", err)
	}
	for _, u := range users {
		notify := m.SenderID != u && !muted[u]
		if err := add(clinic, u, live.KindMessage, LiveMessage{Message: m, ConversationID: conv, Notify: notify}); err != nil {
			return err
		}
		if sum, ok := summaries[u]; ok {
			if err := add(clinic, u, live.KindConversation, sum); err != nil {
				return err
			}
		}
		if body, ok := unread[u]; ok {
			if err := add(clinic, u, live.KindUnread, body); err != nil {
				return err
			}
		}
	}
	return nil
}

func collectStrings(ctx context.Context, tx pgx.Tx, sql string, args ...any) ([]string, error) {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("live: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("live: %w", err)
	}
	return out, nil
}
