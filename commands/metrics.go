package commands

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-chat/huddle/internal/metrics"
)

// RegisterMetrics exposes the conversation sequencer's counters: how many appends carried how
// many commands (their ratio is the mean batch: above 1 when a conversation is busy), how many
// found the stream moved on by another instance, and how many conversations are in memory.
func RegisterMetrics(reg prometheus.Registerer, h *Handler) {
	counter := func(name, help string, v func() int64) {
		metrics.Register(reg, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v()) }))
	}
	counter("huddle_command_appends_total", "Appends of the conversation sequencer (each one transaction).",
		func() int64 { return h.Stats().Appends })
	counter("huddle_command_appended_commands_total", "Commands those appends carried (÷ appends: the mean batch).",
		func() int64 { return h.Stats().Commands })
	counter("huddle_command_conflicts_total", "Appends that found the conversation moved on (another instance wrote) and were decided again.",
		func() int64 { return h.Stats().Conflicts })
	metrics.Register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "huddle_command_hot_conversations",
		Help: "Conversations whose state the sequencer holds in memory."}, func() float64 { return float64(h.Stats().Streams) }))
}
