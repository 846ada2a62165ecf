// Package live carries per-user live updates to connected clients (GET /v1/stream, ADR 0004).
//
// The inbox read model's after-apply hook (Writer.AfterApply, writer.go) appends entries to each
// affected user's feed inside the transaction that updated the read models (AppendAll), built
// from the read models as that transaction sees them, then, after commit, publishes them on the
// user's core NATS subject huddle.live.<clinic>.<user> (Notifier.Deliver). Each server instance
// holds one NATS subscription for every user's pings (Hub) and hands the entries to that user's
// streams, which write them when they follow on from the last sequence sent and read the feed
// otherwise (a lost or overtaken ping, entries too large to push, a heartbeat). A reconnect with Last-Event-ID resumes from the feed:
// no loss and no duplicates within the retention window; older than that, the client gets
// reset. The bodies of the stream's events are in bodies.go; the HTTP side is api/stream.go.
package live
