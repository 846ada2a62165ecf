// Package projections builds Huddle's read models (contacts, inbox, unread, messages,
// conversation details) from the event store, and answers the queries the API serves.
//
// Each projection (directory, inbox) has one reader at a time across instances that applies,
// in one Postgres transaction per batch, what the store holds after its cursor, recording per
// stream the last version applied (catchup.go, apply.go). A Watermill handler on the
// projection's durable JetStream consumer only wakes it, and acks once the reader has passed
// its event; a message naming no stored event is reported and dropped. So the read models are
// exactly what a replay of the store gives, whatever NATS delivers, and a restart applies what
// was committed and not applied at once. Rebuild replays the store into shadow tables and swaps
// them in (docs/adr/0003-projections.md, 0011-projections-catch-up-from-the-store.md).
package projections
