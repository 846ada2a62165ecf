package domain

import "errors"

// Error codes are stable and machine-readable; the API maps each to a problem+json status in
// one place (api/problem.go). They are the codes of API.md.
const (
	CodeInvalid              = "invalid_request"
	CodeNotInAddressBook     = "not_in_address_book"
	CodeNotAParticipant      = "not_a_participant"
	CodeCannotSend           = "cannot_send"
	CodeNotGroupOwner        = "not_group_owner"
	CodeNotAGroup            = "not_a_group"
	CodeOwnerCannotBeRemoved = "owner_cannot_be_removed"
	CodeConversationDeleted  = "conversation_deleted"
	CodeFileTooLarge         = "file_too_large"
	CodeForbidden            = "forbidden"
	CodeNotFound             = "not_found"
	CodeConflict             = "conflict"
	// Clinical messaging (API-v1.1): acknowledging, editing and recalling messages.
	CodeCannotAckOwn     = "cannot_ack_own"
	CodeNotUrgent        = "not_urgent"
	CodeNotMessageSender = "not_message_sender"
	CodeNotEditable      = "not_editable"
	// CodeBusy: the command could not be applied before its deadline (503, Retry-After).
	CodeBusy = "busy"
	// CodeUnknownUser: a staff token whose user is not active in its clinic's directory.
	CodeUnknownUser = "unknown_user"
)

// Error is a rule the command broke: a stable code plus a message a person can read.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// newError builds a domain error.
func newError(code, message string) *Error { return &Error{Code: code, Message: message} }

// ErrorCode returns the stable code of a domain error anywhere in err's chain, or "".
func ErrorCode(err error) string {
	var de *Error
	if errors.As(err, &de) {
		return de.Code
	}
	return ""
}
