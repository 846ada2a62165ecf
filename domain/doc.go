// Package domain holds Huddle's business rules as pure deciders: for each aggregate, a Decide
// function (state, command) → events or a coded *Error, and an Evolve function that applies
// an event to the state. Nothing here does I/O or reads the clock; ids and time come in with
// the command or from the stream.
//
// Aggregates and their streams:
//   - Directory (directory-<clinic>): users, waiting rooms, room membership; it answers the
//     address book (everyone active sharing a room with you, never yourself).
//   - Conversation (conversation-<id>): a direct chat or a group, its participants with their
//     membership windows, and its messages and files.
//   - Member (member-<clinic>.<user>): one user's mute, archive and read marker per conversation.
//
// Decisions where the brief and API.md are silent:
//   - A caller who never took part in a conversation gets not_found for every command on it
//     (as for GET), so existence does not leak; a deleted group answers conversation_deleted
//     to its (former) members.
//   - Commands that would change nothing decide no events and succeed: adding an active
//     member, removing or leaving when already gone, muting when muted, setting the same
//     profile, a read marker that would move backwards. Retried clicks are harmless.
//   - Removing yourself is invalid_request ("leave the group instead").
//   - A group's title is optional (0..200; blank is untitled, and the read side shows the
//     members' names); renaming needs 1..200. A group needs at least one other participant;
//     the caller is dropped from participant_ids and repeats are ignored.
//   - Starting (or continuing) a direct chat requires the other person in your address book,
//     as API.md says for every participant. Sending in an existing direct chat only needs both
//     people active: leaving a shared room keeps the chat usable, a deactivated user's direct
//     chats keep their history but refuse new messages (cannot_send).
//   - When the last member leaves a group it is empty and closed: nobody is active, so nobody
//     can add anyone back or send; OwnerID keeps naming the last owner for auditors.
//   - The owner can delete only while an active member; when the owner leaves, ownership passes
//     to the active member whose current stint began first (ties: order added).
//   - Deactivated users keep their room memberships, so reactivating them restores their
//     address book.
//   - Message ids are MessageID(conversation, stream version): a read marker naming a message
//     needs no lookup, and system messages can use the same scheme.
//   - Urgent messages (API-v1.1): acknowledging is for an active member (not_a_participant)
//     who can see the message (not_found) and did not send it (cannot_ack_own), of an urgent
//     message (not_urgent); acknowledging one you owe nothing on (acknowledged already,
//     recalled, or you left and came back since it was sent) changes nothing. PendingAcks is
//     the one rule of who still owes an acknowledgement.
//   - Editing: the sender (not_message_sender), while they can send (cannot_send), a text
//     message not recalled (not_editable). Each edit is recorded, the same text again too.
//   - Recalling: the sender or the group's owner (not_message_sender), while an active
//     member (not_a_participant); recalling again changes nothing. A recalled urgent message
//     waits for nobody.
package domain
