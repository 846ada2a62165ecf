package projections

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-chat/huddle/eventstore"
)

// What the tests (package projections_test, which runs the engine with the real read models)
// need of the engine's insides.

// SetApplyHook makes f run before each event is applied; an error fails it.
func SetApplyHook(e *Engine, f func(projection string, ev eventstore.RecordedEvent) error) {
	e.applyHook = f
}

// SetAfterCommit makes f run in a handler after the reader passed its event and before the
// message is acked; an error nacks it, as if the process died before acking.
func SetAfterCommit(e *Engine, f func(projection string, ev eventstore.RecordedEvent) error) {
	e.afterCommit = f
}

// ForeignCounter is the count of messages naming no stored event, for the read model name.
func ForeignCounter(e *Engine, name string) prometheus.Counter {
	return e.m.foreign.WithLabelValues(name)
}

// WatermarkPrefix prefixes the name of a read model's watermark checkpoint.
const WatermarkPrefix = watermarkPrefix

// Reached reports whether a is at or after b in the gap-safe order.
func Reached(a, b eventstore.Checkpoint) bool { return reached(a, b) }
