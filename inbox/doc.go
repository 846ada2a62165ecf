// Package inbox is the inbox read model (docs/adr/0014-read-model-contract.md): conversations,
// participants, visibility windows, messages, one inbox row per member and conversation, and
// each member's own choices (member_prefs).
//
//   - inbox.go: ReadModel, the statements each event queues, and their twins for a rebuild's
//     load (writer);
//   - rules.go: the derived rules (visibility, counting, muted at that moment, unread,
//     unarchive), each once, its SQL beside its Go twin;
//   - load.go, copy.go: the rebuild's bulk load (projections.BulkLoad);
//   - queries.go: the API's reads (conversations, messages, unread);
//   - feedreads.go: the reads the live feed's writer (package live) queues in the applying
//     transaction.
package inbox
