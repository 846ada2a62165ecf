package live

import (
	"time"

	"github.com/huddle-chat/huddle/inbox"
)

// The bodies of the stream's events (API.md, GET /v1/stream). A `conversation` entry carries an
// inbox.Summary and an `unread` entry an inbox.Unread, as the read endpoints answer them.

// MessageBody is the body of a `message` entry: a message plus its conversation and whether the
// client should pop up and play a sound.
type MessageBody struct {
	inbox.Message
	ConversationID string `json:"conversation_id"`
	Notify         bool   `json:"notify"`
}

// Entry kinds of clinical messaging (API-v1.1): acknowledgements, receipts, edits and recalls.
const (
	KindAck            = "ack"
	KindReceipt        = "receipt"
	KindMessageUpdated = "message_updated"
)

// AckBody is the body of an `ack` entry, to an urgent message's sender: who acknowledged it,
// when.
type AckBody struct {
	ConversationID string    `json:"conversation_id"`
	MessageID      string    `json:"message_id"`
	UserID         string    `json:"user_id"`
	At             time.Time `json:"at"`
}

// ReceiptBody is the body of a `receipt` entry: a member's read marker moved.
type ReceiptBody struct {
	inbox.Receipt
	ConversationID string `json:"conversation_id"`
}

// MessageUpdatedBody is the body of a `message_updated` entry: a message as it is after an
// edit or a recall.
type MessageUpdatedBody struct {
	inbox.Message
	ConversationID string `json:"conversation_id"`
}

// RemovedBody is the body of a `removed` entry: a conversation left the list (deleted).
type RemovedBody struct {
	ConversationID string `json:"conversation_id"`
}

// ResetBody is the body of the `reset` event a stream sends when it cannot resume from the
// client's Last-Event-ID.
var ResetBody = []byte(`{"reason":"the stream cannot resume from Last-Event-ID; refetch your state"}`)

// KindReminder is the entry the reminders scheduler appends while an urgent message waits for
// the user's acknowledgement (API-v1.1 "Clinical messaging").
const KindReminder = "reminder"

// ReminderBody is the body of a `reminder` entry: the count-th reminder of the message.
type ReminderBody struct {
	ConversationID string `json:"conversation_id"`
	MessageID      string `json:"message_id"`
	Count          int    `json:"count"`
}
