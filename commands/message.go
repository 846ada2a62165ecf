package commands

import (
	"context"
	"time"

	"github.com/huddle-chat/huddle/domain"
)

// Commands on a message already sent: acknowledge an urgent one, edit, recall (API-v1.1
// "Clinical messaging"). Each reads the facts of the message from its event (the message id
// names its version) and lets the conversation decide; the state holds nothing per message
// (domain/message.go says why).

// Edit is what PATCH .../messages/{message_id} learns from the command side: the new text and
// when it was recorded (the message's edited_at).
type Edit struct {
	MessageID string
	Text      string
	EditedAt  time.Time
	Position  Position
}

// sentMessage reads the facts of the message messageID names in conversationID from its event.
// Events never change once stored, so this read needs no sequencing with the commands. A
// malformed id, an id of another conversation, a version that holds no message or an event of
// another clinic give the zero SentMessage, which the domain refuses as not_found (after its
// own access checks, so a stranger learns nothing more than with any other command).
func (h *Handler) sentMessage(ctx context.Context, a Actor, conversationID, messageID string) (domain.SentMessage, error) {
	conv, version, ok := domain.ParseMessageID(messageID)
	if !ok || conv != conversationID || !domain.ValidID(conversationID) {
		return domain.SentMessage{}, nil
	}
	evs, err := h.store.ReadStream(ctx, domain.ConversationStream(conversationID), version, 1)
	if err != nil {
		return domain.SentMessage{}, busy(err)
	}
	if len(evs) != 1 || evs[0].StreamVersion != version || evs[0].Metadata.ClinicID != a.ClinicID {
		return domain.SentMessage{}, nil
	}
	ev, known, err := decode(evs[0])
	if err != nil || !known {
		return domain.SentMessage{}, err
	}
	m, _ := domain.SentMessageOf(version, ev)
	return m, nil
}

// AcknowledgeMessage records that the caller saw an urgent message; acknowledging again
// changes nothing.
func (h *Handler) AcknowledgeMessage(ctx context.Context, a Actor, conversationID, messageID string) (Position, error) {
	m, err := h.sentMessage(ctx, a, conversationID, messageID)
	if err != nil {
		return Position{}, err
	}
	return h.simple(ctx, a, conversationID, domain.AcknowledgeMessage{ActorID: a.UserID, Message: m})
}

// RecallMessage withdraws a message (its sender, or the group's owner); recalling again
// changes nothing.
func (h *Handler) RecallMessage(ctx context.Context, a Actor, conversationID, messageID string) (Position, error) {
	m, err := h.sentMessage(ctx, a, conversationID, messageID)
	if err != nil {
		return Position{}, err
	}
	return h.simple(ctx, a, conversationID, domain.RecallMessage{ActorID: a.UserID, Message: m})
}

// EditMessage gives a text message new text. Every edit is recorded (a retried request
// records the same text again, which changes nothing a member sees but the edit time).
func (h *Handler) EditMessage(ctx context.Context, a Actor, conversationID, messageID, text string) (Edit, error) {
	m, err := h.sentMessage(ctx, a, conversationID, messageID)
	if err != nil {
		return Edit{}, err
	}
	res, _, _, err := h.runWithDirectory(ctx, a, conversationID, h.opts.NewID(), false,
		domain.EditMessage{ActorID: a.UserID, Text: text, Message: m})
	if err != nil {
		return Edit{}, err
	}
	out := Edit{MessageID: messageID, Position: positionOf(res, Position{StreamID: domain.ConversationStream(conversationID)})}
	for _, e := range res.Events {
		ev, ok, err := decode(e)
		if err != nil {
			return Edit{}, err
		}
		if edited, isEdit := ev.(domain.MessageEdited); ok && isEdit {
			out.Text, out.EditedAt = edited.Text, e.RecordedAt
		}
	}
	return out, nil
}
