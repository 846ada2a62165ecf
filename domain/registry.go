package domain

// KnownEventType reports whether this version of the domain knows the event type name.
// Readers use it to skip (rather than fail on) events a newer writer introduced.
func KnownEventType(eventType string) bool {
	_, ok := eventFactories[eventType]
	return ok
}
