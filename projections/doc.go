// Package projections builds Huddle's read models (contacts, inbox, unread, messages,
// conversation details) from the event stream, and answers the queries the API serves.
package projections

// Queries answers the read side of API.md.
type Queries struct{}

// Engine runs the projectors.
type Engine struct{}
