// Package projections is the read-model engine (docs/adr/0003-projections.md,
// 0011-projections-catch-up-from-the-store.md, 0014-read-model-contract.md). It runs the read
// models it is given (ReadModel: name, categories, tables, apply, optional bulk load and
// after-apply hooks) and knows none of them by name; the read models are packages of their own
// (inbox, directory) and the composition root lists them.
//
// Each read model has one reader at a time across instances that applies, in one Postgres
// transaction per batch, what the store holds after its cursor, recording per stream the last
// version applied (catchup.go, apply.go). A Watermill handler on the read model's durable
// JetStream consumer only wakes it, and acks once the reader has passed its event; a message
// naming no stored event is reported and dropped (handler.go). So the read models are exactly
// what a replay of the store gives, whatever NATS delivers, and a restart applies what was
// committed and not applied at once. Rebuild replays the store into shadow tables and swaps them
// in (rebuild.go); Status reports the true lag (status.go); the watermarks give read-your-writes
// per clinic (watermark.go). The events table is read only through eventstore's API.
package projections
