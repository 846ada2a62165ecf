package reminders

import (
	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/projections"
)

// Name is the read model's name.
const Name = "reminders"

var tables = []string{"reminder_members", "reminders"}

const (
	sqlMembersJoined = `INSERT INTO reminder_members (clinic_id, conversation_id, user_id)
		SELECT $1, $2, unnest($3::text[]) ON CONFLICT DO NOTHING`
	sqlMemberGone = `DELETE FROM reminder_members WHERE clinic_id = $1 AND conversation_id = $2 AND user_id = $3`
	// An ended stint ends what its member owed: coming back does not bring it back, because
	// rows are only ever made when a message is sent.
	sqlOwedByGone = `DELETE FROM reminders WHERE clinic_id = $1 AND conversation_id = $2 AND user_id = $3`
	// sqlUrgentSent: every other member active now (the message is being applied, so exactly
	// those active when it was sent) owes an acknowledgement; the first reminder is due one
	// interval after the message (last_at is its time).
	sqlUrgentSent = `INSERT INTO reminders (clinic_id, conversation_id, message_version, user_id, count, last_at)
		SELECT clinic_id, conversation_id, $3, user_id, 0, $5 FROM reminder_members
		WHERE clinic_id = $1 AND conversation_id = $2 AND user_id <> $4
		ON CONFLICT DO NOTHING`
	sqlAcknowledged = `DELETE FROM reminders
		WHERE clinic_id = $1 AND conversation_id = $2 AND message_version = $3 AND user_id = $4`
	sqlRecalled     = `DELETE FROM reminders WHERE clinic_id = $1 AND conversation_id = $2 AND message_version = $3`
	sqlDeletedOwed  = `DELETE FROM reminders WHERE clinic_id = $1 AND conversation_id = $2`
	sqlDeletedMembs = `DELETE FROM reminder_members WHERE clinic_id = $1 AND conversation_id = $2`
)

// ReadModel returns the reminders read model for the engine. It needs no setting: the
// interval and the limit are the scheduler's.
func ReadModel() *projections.ReadModel {
	return &projections.ReadModel{Name: Name, Categories: []string{domain.CategoryConversation}, Tables: tables, Apply: apply}
}

func apply(b *projections.Batch, e eventstore.RecordedEvent, ev domain.Event) error {
	clinic, conv := projections.ClinicOf(e), projections.StreamSuffix(e.StreamID)
	switch v := ev.(type) {
	case domain.ConversationStarted:
		b.Add(sqlMembersJoined, clinic, conv, v.ParticipantIDs)
	case domain.ParticipantAdded:
		b.Add(sqlMembersJoined, clinic, conv, []string{v.UserID})
	case domain.ParticipantLeft:
		b.Add(sqlMemberGone, clinic, conv, v.UserID)
		b.Add(sqlOwedByGone, clinic, conv, v.UserID)
	case domain.ParticipantRemoved:
		b.Add(sqlMemberGone, clinic, conv, v.UserID)
		b.Add(sqlOwedByGone, clinic, conv, v.UserID)
	case domain.GroupDeleted:
		// Nobody can acknowledge in a deleted group (its commands answer conversation_deleted):
		// reminding them would ask for what they cannot do.
		b.Add(sqlDeletedOwed, clinic, conv)
		b.Add(sqlDeletedMembs, clinic, conv)
	case domain.MessageSent:
		if v.Urgent() {
			b.Add(sqlUrgentSent, clinic, conv, e.StreamVersion, v.SenderID, e.RecordedAt)
		}
	case domain.MessageAcknowledged:
		if _, version, ok := domain.ParseMessageID(v.MessageID); ok {
			b.Add(sqlAcknowledged, clinic, conv, version, v.UserID)
		}
	case domain.MessageRecalled:
		if _, version, ok := domain.ParseMessageID(v.MessageID); ok {
			b.Add(sqlRecalled, clinic, conv, version)
		}
	}
	return nil
}
