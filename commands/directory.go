package commands

import (
	"context"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
)

// runDirectory runs one directory command for the actor's clinic and returns the directory as
// it was before, the events decided, and the position.
func (h *Handler) runDirectory(ctx context.Context, a Actor, cmd domain.DirectoryCommand) (domain.Directory, []domain.Event, Position, error) {
	stream := domain.DirectoryStream(a.ClinicID)
	commandID := h.opts.NewID()
	var before domain.Directory
	var decided []domain.Event
	res, err := eventstore.Execute(ctx, h.store, stream, directoryAggregate, commandID,
		func(d domain.Directory, _ int64) ([]eventstore.EventData, error) {
			events, err := domain.DecideDirectory(d, cmd)
			if err != nil {
				return nil, err
			}
			before, decided = d, events
			return h.encode(a, commandID, events)
		})
	if err != nil {
		return before, nil, Position{}, busy(err)
	}
	if len(res.Events) > 0 {
		h.directories.Invalidate(a.ClinicID)
	}
	return before, decided, positionOf(res, Position{StreamID: stream}), nil
}

// SetUser creates, updates or reactivates a user and returns them as saved.
func (h *Handler) SetUser(ctx context.Context, a Actor, userID, name, email, title string) (domain.User, Position, error) {
	before, events, pos, err := h.runDirectory(ctx, a, domain.SetUser{UserID: userID, Name: name, Email: email, Title: title})
	if err != nil {
		return domain.User{}, pos, err
	}
	u := before.Users[userID]
	u.Rooms = nil // the caller gets the profile; room membership is another endpoint's business
	for _, e := range events {
		if set, ok := e.(domain.UserProfileSet); ok {
			u = domain.User{ID: set.UserID, Name: set.Name, Email: set.Email, Title: set.Title, Active: true}
		}
	}
	return u, pos, nil
}

// DeactivateUser takes a user out of every address book; their chats and history stay.
func (h *Handler) DeactivateUser(ctx context.Context, a Actor, userID string) (Position, error) {
	_, _, pos, err := h.runDirectory(ctx, a, domain.DeactivateUser{UserID: userID})
	return pos, err
}

// NameRoom creates or renames a waiting room and returns it.
func (h *Handler) NameRoom(ctx context.Context, a Actor, roomID, name string) (domain.Room, Position, error) {
	before, events, pos, err := h.runDirectory(ctx, a, domain.NameRoom{RoomID: roomID, Name: name})
	if err != nil {
		return domain.Room{}, pos, err
	}
	r := domain.Room{ID: roomID, Name: before.Rooms[roomID].Name}
	for _, e := range events {
		if named, ok := e.(domain.RoomNamed); ok {
			r.Name = named.Name
		}
	}
	return r, pos, nil
}

// AddRoomMember puts a user into a waiting room.
func (h *Handler) AddRoomMember(ctx context.Context, a Actor, roomID, userID string) (Position, error) {
	_, _, pos, err := h.runDirectory(ctx, a, domain.AddRoomMember{RoomID: roomID, UserID: userID})
	return pos, err
}

// RemoveRoomMember takes a user out of a waiting room.
func (h *Handler) RemoveRoomMember(ctx context.Context, a Actor, roomID, userID string) (Position, error) {
	_, _, pos, err := h.runDirectory(ctx, a, domain.RemoveRoomMember{RoomID: roomID, UserID: userID})
	return pos, err
}
