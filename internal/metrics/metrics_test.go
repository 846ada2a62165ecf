package metrics_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-chat/huddle/internal/metrics"
)

func TestRegister_ReusesTheCollectorRegisteredFirst(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "huddle_test_total", Help: "test"}
	first := metrics.Register(reg, prometheus.NewCounter(opts))
	second := metrics.Register(reg, prometheus.NewCounter(opts))
	if first != second {
		t.Fatal("the second registration did not get the first collector back")
	}
	second.Inc()
	families, err := reg.Gather()
	if err != nil || len(families) != 1 || families[0].GetMetric()[0].GetCounter().GetValue() != 1 {
		t.Fatalf("gathered %v, %v", families, err)
	}
	if c := metrics.Register(nil, prometheus.NewCounter(opts)); c == nil {
		t.Fatal("a nil registry must still give a usable collector")
	}
}
