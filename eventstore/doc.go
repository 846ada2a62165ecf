// Package eventstore is Huddle's record: an append-only Postgres event store.
//
// Append writes events to a stream in one round trip (the eventstore_append function):
// optimistic concurrency with a typed conflict, idempotency by command id, and a per-stream
// sha256 hash chain that Verify (and `huddle audit verify`) recomputes. ReadStream reads one
// stream; ReadAll reads everything in the gap-safe (tx_id, global_position) order, never passing
// a transaction that is still running. Load and Execute rebuild a decider's state (with
// optional snapshots) and run a command with bounded retries on conflicts. Upcasters bring old
// schema versions to the current shape on every read. The Relay publishes the store to NATS
// JetStream, one active instance per database, at least once and deduplicated by event id.
// RepairAfterRestore fixes transaction ids after a dump is restored into another cluster.
//
// docs/adr/0002-event-store.md explains the choices.
package eventstore
