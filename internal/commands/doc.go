// Package commands is the write side's application layer: for each command of API.md it loads
// the state the domain needs (directory, conversation, member), asks the pure deciders in
// domain/ what happens, and appends the resulting events through the eventstore command runner.
package commands

// Handler runs every command. Fields and methods: see handler.go.
type Handler struct{}
