package live

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/inbox"
	"github.com/huddle-chat/huddle/projections"
)

// The live stream (GET /v1/stream, ADR 0004): while applying events live, the inbox projector
// appends each affected user's feed entries in the same transaction, built from the read
// models as that transaction sees them, and pings the users after commit. A rebuild appends
// nothing (clients would see old notifications again), and neither does a skipped duplicate.

// Writer is the inbox read model's after-apply hook that appends the feed entries and, after
// commit, pings the users (inbox.ReadModel(w.AfterApply)).
type Writer struct{ notifier *Notifier }

// NewWriter returns a writer that pings on nc.
func NewWriter(nc *nats.Conn, log *slog.Logger) *Writer {
	return &Writer{notifier: NewNotifier(nc, log)}
}

// AfterApply appends the entries for events (applied in tx) and returns what pushes them to the
// users' streams after commit.
func (w *Writer) AfterApply(ctx context.Context, tx pgx.Tx, events []eventstore.RecordedEvent) (func(), error) {
	written, err := appendLive(ctx, tx, events)
	if err != nil || len(written) == 0 {
		return nil, err
	}
	return func() { w.notifier.Deliver(written) }, nil
}

// appendLive appends the feed entries for events (already applied in tx) and returns whom to
// ping after commit. Three round trips for a whole batch, however many events and users: what
// each event needs (who sees it, its message row, who had muted the chat, participants), then
// every summary and unread body the entries carry (each distinct one read once: they are all
// read after the batch's statements, so repeats would read the same), then the appends.
func appendLive(ctx context.Context, tx pgx.Tx, events []eventstore.RecordedEvent) ([]Written, error) {
	type item struct {
		clinic, conv, user string // user: a member event's
		unread             bool   // a member event that moves the unread counts
		deleted            bool   // GroupDeleted: inboxUsers get `removed`
		inboxUsers         []string
		m                  inbox.MessageEvent
		member             bool
		receipt            *inbox.Receipt // ReadMarkerMoved of an active member
		// Events about a message already sent (m: that message, and who could see it then).
		ack     *domain.MessageAcknowledged // the sender gets `ack`
		updated bool                        // edit or recall: `message_updated` to whoever sees it
		recall  bool
		at      time.Time
	}
	type convKey struct{ clinic, conv string }
	var items []*item
	parts := map[convKey][]inbox.Participant{}
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
		it := &item{clinic: projections.ClinicOf(e)}
		switch e.Category() {
		case domain.CategoryMember:
			it.member, it.user = true, projections.StreamSuffix(e.StreamID)
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
				inbox.QueueReceipt(b1, it.clinic, it.conv, it.user, func(r inbox.Receipt) { it.receipt = &r })
			default:
				continue
			}
			needParts(it.clinic, it.conv)
		case domain.CategoryConversation:
			it.conv = projections.StreamSuffix(e.StreamID)
			if _, deleted := ev.(domain.GroupDeleted); deleted {
				it.deleted = true
				inbox.QueueInboxUsers(b1, it.clinic, it.conv, func(users []string) { it.inboxUsers = users })
				break
			}
			// Events about a message already sent read that message.
			var msgID string
			switch x := ev.(type) {
			case domain.MessageAcknowledged:
				it.ack, msgID = &x, x.MessageID
			case domain.MessageEdited:
				it.updated, msgID = true, x.MessageID
			case domain.MessageRecalled:
				it.updated, it.recall, msgID = true, true, x.MessageID
			}
			if msgID != "" {
				conv, v, ok := domain.ParseMessageID(msgID)
				if !ok || conv != it.conv {
					continue
				}
				seersAt := v // an edit or recall: whoever can see the message
				if it.ack != nil {
					seersAt = e.StreamVersion // the sender, if still a member
				}
				it.at = e.RecordedAt.UTC()
				inbox.QueueMessageAt(b1, it.clinic, it.conv, seersAt, v, &it.m)
				if it.updated {
					needParts(it.clinic, it.conv)
				}
				break
			}
			inbox.QueueMessageEvent(b1, it.clinic, it.conv, e, &it.m)
			needParts(it.clinic, it.conv)
		default:
			continue
		}
		items = append(items, it)
	}
	for clinic, convs := range convsOf {
		inbox.QueueParticipants(b1, clinic, convs, func(conv string, p inbox.Participant) {
			k := convKey{clinic, conv}
			parts[k] = append(parts[k], p)
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
	summaries := map[sumKey]*inbox.Summary{}
	unreads := map[userKey]*inbox.Unread{}
	b2 := &pgx.Batch{}
	wantSummary := func(clinic, user, conv string) {
		k := sumKey{clinic, user, conv}
		if _, ok := summaries[k]; ok {
			return
		}
		summaries[k] = nil
		inbox.QueueSummary(b2, clinic, user, conv, func(s inbox.Summary) {
			inbox.WithParticipants(&s, parts[convKey{clinic, conv}], user)
			summaries[k] = &s
		})
	}
	wantUnread := func(clinic, user string) {
		k := userKey{clinic, user}
		if _, ok := unreads[k]; ok {
			return
		}
		unreads[k] = nil
		inbox.QueueUnread(b2, clinic, user, func(u inbox.Unread) { unreads[k] = &u })
	}
	for _, it := range items {
		switch {
		case it.member:
			if it.unread {
				wantUnread(it.clinic, it.user)
			}
			wantSummary(it.clinic, it.user, it.conv)
		case it.deleted, it.ack != nil:
		case it.updated:
			if len(it.m.Messages) != 1 {
				continue
			}
			for _, u := range it.m.Seers {
				wantSummary(it.clinic, u, it.conv)
				if it.recall && u != it.m.Messages[0].SenderID {
					wantUnread(it.clinic, u)
				}
			}
		default:
			plain := it.m.Plain()
			for _, u := range it.m.Seers {
				wantSummary(it.clinic, u, it.conv)
				if plain && u != it.m.Messages[0].SenderID {
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
	var pending []Pending
	add := func(clinic, user, kind string, body any) {
		pending = append(pending, Pending{To: Target{ClinicID: clinic, UserID: user}, Kind: kind, Body: body})
	}
	summary := func(clinic, user, conv string) {
		if s := summaries[sumKey{clinic, user, conv}]; s != nil {
			add(clinic, user, KindConversation, *s)
		}
	}
	unread := func(clinic, user string) {
		if u := unreads[userKey{clinic, user}]; u != nil {
			add(clinic, user, KindUnread, *u)
		}
	}
	for _, it := range items {
		switch {
		case it.member:
			if it.unread {
				unread(it.clinic, it.user)
			}
			summary(it.clinic, it.user, it.conv)
			if r := it.receipt; r != nil {
				// The other active members see the marker move.
				for _, p := range parts[convKey{it.clinic, it.conv}] {
					if p.State == "active" && p.ID != it.user {
						add(it.clinic, p.ID, KindReceipt, ReceiptBody{Receipt: *r, ConversationID: it.conv})
					}
				}
			}
		case it.ack != nil:
			if len(it.m.Messages) == 1 && slices.Contains(it.m.Seers, it.m.Messages[0].SenderID) {
				add(it.clinic, it.m.Messages[0].SenderID, KindAck,
					AckBody{ConversationID: it.conv, MessageID: it.ack.MessageID, UserID: it.ack.UserID, At: it.at})
			}
		case it.updated:
			if len(it.m.Messages) != 1 {
				continue
			}
			m := it.m.Messages[0]
			for _, u := range it.m.Seers {
				add(it.clinic, u, KindMessageUpdated, MessageUpdatedBody{Message: m, ConversationID: it.conv})
				summary(it.clinic, u, it.conv)
				if it.recall && u != m.SenderID {
					unread(it.clinic, u)
				}
			}
		case it.deleted:
			for _, u := range it.inboxUsers {
				add(it.clinic, u, KindRemoved, RemovedBody{ConversationID: it.conv})
			}
		case it.m.Plain():
			// A plain message, the hot path: the message entry (notify unless it is their own
			// or they had muted the chat and it is not urgent), the conversation's new summary,
			// and for everyone but the sender the new unread counts.
			m := it.m.Messages[0]
			urgent := m.Priority == domain.PriorityUrgent
			for _, u := range it.m.Seers {
				add(it.clinic, u, KindMessage, MessageBody{Message: m, ConversationID: it.conv, Notify: m.SenderID != u && (urgent || !it.m.Muted[u])})
				summary(it.clinic, u, it.conv)
				if u != m.SenderID {
					unread(it.clinic, u)
				}
			}
		default:
			for _, u := range it.m.Seers {
				if len(it.m.Messages) == 1 {
					add(it.clinic, u, KindMessage, MessageBody{Message: it.m.Messages[0], ConversationID: it.conv, Notify: false})
				}
				summary(it.clinic, u, it.conv)
			}
		}
	}
	return AppendAll(ctx, tx, pending)
}
