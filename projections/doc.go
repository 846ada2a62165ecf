// Package projections builds Huddle's read models (contacts, inbox, unread, messages,
// conversation details) from the event stream, and answers the queries the API serves.
//
// Each projection (directory, inbox) is a Watermill router handler on its own durable JetStream
// consumer. An event is applied in one Postgres transaction that also records, per projection
// and stream, the last version applied; the message is acked only after that commit. Duplicates
// are skipped and gaps are filled from the event store, so the read models are exactly what a
// replay of the store gives, whatever NATS delivers. Rebuild replays the store into shadow
// tables and swaps them in (see docs/adr/0003-projections.md).
package projections
