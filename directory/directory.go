package directory

import (
	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/projections"
)

// Name is the read model's name.
const Name = "directory"

// The directory read model: users, waiting rooms and room membership. The address book is not
// stored: it is a join over room membership at query time (rooms are small), so a room change
// never rewrites anyone's contact rows.
var tables = []string{"dir_users", "dir_rooms", "dir_room_members"}

const (
	sqlUserSet = `INSERT INTO dir_users (clinic_id, user_id, name, email, title, active)
		VALUES ($1, $2, $3, $4, $5, true)
		ON CONFLICT (clinic_id, user_id) DO UPDATE
		SET name = EXCLUDED.name, email = EXCLUDED.email, title = EXCLUDED.title, active = true`
	sqlUserDeactivated = `UPDATE dir_users SET active = false WHERE clinic_id = $1 AND user_id = $2`
	sqlRoomNamed       = `INSERT INTO dir_rooms (clinic_id, room_id, name) VALUES ($1, $2, $3)
		ON CONFLICT (clinic_id, room_id) DO UPDATE SET name = EXCLUDED.name`
	sqlRoomMemberAdded = `INSERT INTO dir_room_members (clinic_id, room_id, user_id) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`
	sqlRoomMemberRemoved = `DELETE FROM dir_room_members WHERE clinic_id = $1 AND room_id = $2 AND user_id = $3`
)

// ReadModel returns the directory read model for the engine.
func ReadModel() *projections.ReadModel {
	return &projections.ReadModel{Name: Name, Categories: []string{domain.CategoryDirectory}, Tables: tables, Apply: apply}
}

func apply(b *projections.Batch, e eventstore.RecordedEvent, ev domain.Event) error {
	clinic := projections.ClinicOf(e)
	switch v := ev.(type) {
	case domain.UserProfileSet:
		b.Add(sqlUserSet, clinic, v.UserID, v.Name, v.Email, v.Title)
	case domain.UserDeactivated:
		b.Add(sqlUserDeactivated, clinic, v.UserID)
	case domain.RoomNamed:
		b.Add(sqlRoomNamed, clinic, v.RoomID, v.Name)
	case domain.RoomMemberAdded:
		b.Add(sqlRoomMemberAdded, clinic, v.RoomID, v.UserID)
	case domain.RoomMemberRemoved:
		b.Add(sqlRoomMemberRemoved, clinic, v.RoomID, v.UserID)
	}
	return nil
}
