package config

import (
	"strings"
	"testing"
	"time"
)

func TestLoad_UrgentReminders(t *testing.T) {
	t.Parallel()
	env := func(kv ...string) func(string) string { return minimalEnv(t, kv...) }
	c, err := load(env())
	if err != nil {
		t.Fatal(err)
	}
	if c.RemindEvery != 2*time.Minute || c.RemindMax != 10 {
		t.Fatalf("defaults: every %v, max %d; want 2m and 10", c.RemindEvery, c.RemindMax)
	}
	c, err = load(env("HUDDLE_URGENT_REMIND_EVERY", "200ms", "HUDDLE_URGENT_REMIND_MAX", "0"))
	if err != nil || c.RemindEvery != 200*time.Millisecond || c.RemindMax != 0 {
		t.Fatalf("set: every %v, max %d, %v", c.RemindEvery, c.RemindMax, err)
	}
	for _, bad := range [][2]string{{"HUDDLE_URGENT_REMIND_EVERY", "0s"}, {"HUDDLE_URGENT_REMIND_EVERY", "-2m"},
		{"HUDDLE_URGENT_REMIND_EVERY", "often"}, {"HUDDLE_URGENT_REMIND_EVERY", "50ms"}, {"HUDDLE_URGENT_REMIND_MAX", "-1"},
		{"HUDDLE_URGENT_REMIND_MAX", "ten"}, {"HUDDLE_URGENT_REMIND_MAX", "100000"}} {
		if _, err := load(env(bad[0], bad[1])); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%s=%s: err %v, want one naming the variable", bad[0], bad[1], err)
		}
	}
}
