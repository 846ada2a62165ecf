package commands

import (
	"context"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
)

// runMember runs one command on the actor's own settings stream, about conv.
func (h *Handler) runMember(ctx context.Context, a Actor, conv domain.Conversation, cmd domain.MemberCommand) (eventstore.AppendResult, error) {
	commandID := h.opts.NewID()
	return eventstore.Execute(ctx, h.store, domain.MemberStream(a.ClinicID, a.UserID), memberAggregate, commandID,
		func(m domain.Member, _ int64) ([]eventstore.EventData, error) {
			events, err := domain.DecideMember(m, conv, cmd)
			if err != nil {
				return nil, err
			}
			return h.encode(a, commandID, events)
		})
}

func (h *Handler) member(ctx context.Context, a Actor, conversationID string, cmd domain.MemberCommand) (Position, error) {
	conv, err := h.loadConversation(ctx, a, conversationID, false)
	if err != nil {
		return Position{}, err
	}
	res, err := h.runMember(ctx, a, conv, cmd)
	if domain.ErrorCode(err) != "" {
		// Refused: check again on the store's state of the conversation (see check).
		if conv, err = h.loadConversation(ctx, a, conversationID, true); err != nil {
			return Position{}, err
		}
		res, err = h.runMember(ctx, a, conv, cmd)
	}
	if err != nil {
		return Position{}, busy(err)
	}
	// A no-op on a member stream that has no events yet has no position of its own; the
	// conversation's current end is a safe stand-in for read-your-writes.
	return positionOf(res, Position{StreamID: domain.ConversationStream(conversationID), Version: conv.Version}), nil
}

// Mute silences pop-ups and sound for a conversation, for the caller.
func (h *Handler) Mute(ctx context.Context, a Actor, conversationID string) (Position, error) {
	return h.member(ctx, a, conversationID, domain.Mute{UserID: a.UserID})
}

// Unmute undoes Mute.
func (h *Handler) Unmute(ctx context.Context, a Actor, conversationID string) (Position, error) {
	return h.member(ctx, a, conversationID, domain.Unmute{UserID: a.UserID})
}

// Archive takes a conversation out of the caller's chat list.
func (h *Handler) Archive(ctx context.Context, a Actor, conversationID string) (Position, error) {
	return h.member(ctx, a, conversationID, domain.Archive{UserID: a.UserID})
}

// Unarchive brings it back.
func (h *Handler) Unarchive(ctx context.Context, a Actor, conversationID string) (Position, error) {
	return h.member(ctx, a, conversationID, domain.Unarchive{UserID: a.UserID})
}

// MarkRead moves the caller's read marker up to a message (empty: everything they can see).
// Message ids name their conversation and stream version (domain.MessageID), so no lookup is
// needed; an id of another conversation is not_found.
func (h *Handler) MarkRead(ctx context.Context, a Actor, conversationID, upToMessageID string) (Position, error) {
	cmd := domain.MarkRead{UserID: a.UserID, UpToMessageID: upToMessageID}
	if upToMessageID != "" {
		conv, version, ok := domain.ParseMessageID(upToMessageID)
		if !ok || conv != conversationID {
			return Position{}, &domain.Error{Code: domain.CodeNotFound, Message: "no such message in this conversation"}
		}
		cmd.UpToVersion = version
	}
	return h.member(ctx, a, conversationID, cmd)
}
