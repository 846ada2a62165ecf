// Package commands is the write side's application layer: for each command of API.md it loads
// the state the domain needs (directory, conversation, member), asks the pure deciders in
// domain/ what happens, and appends the resulting events through the eventstore command runner.
// No business rule lives here; what lives here is scoping (every conversation is checked
// against the caller's clinic), idempotency (command ids) and event metadata.
package commands
