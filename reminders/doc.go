// Package reminders is the reminders read model and its scheduler (docs/adr/0016-urgent-reminders.md).
//
// The read model (table reminders) holds one row per acknowledgement an urgent message is still
// owed: per (clinic, conversation, message, recipient), the members who were active when it was
// sent and still are, less those who acknowledged; a recall, the recipient leaving or being
// removed, or the group's deletion removes rows (domain.PendingAcks is the rule it mirrors). It
// keeps the conversations' active members (reminder_members) to know who is owed one when a
// message is sent. Each row carries the scheduler's progress: how many reminders fired and when
// the latest did.
//
// The Scheduler fires the due ones: in one transaction it takes due rows with FOR UPDATE SKIP
// LOCKED, appends a `reminder` entry to each recipient's live feed, moves the rows on, commits,
// then pushes the entries to the streams. The schedule lives in Postgres, so every instance can
// run a scheduler and each reminder still fires once, across restarts.
package reminders
