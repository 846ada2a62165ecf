package config

import (
	"strings"
	"testing"
	"time"
)

func TestLoad_RequestAndRateLimits(t *testing.T) {
	t.Parallel()
	env := func(kv ...string) func(string) string { return minimalEnv(t, kv...) }
	c, err := load(env())
	if err != nil {
		t.Fatal(err)
	}
	if c.RequestTimeout != 10*time.Second || c.RatePerUser != 20 || c.RateBurst != 60 {
		t.Fatalf("defaults: %v %v %v", c.RequestTimeout, c.RatePerUser, c.RateBurst)
	}
	c, err = load(env("HUDDLE_RATE_PER_USER", "0", "HUDDLE_REQUEST_TIMEOUT", "3s"))
	if err != nil || c.RatePerUser != 0 || c.RequestTimeout != 3*time.Second {
		t.Fatalf("off: %v %v %v", c.RatePerUser, c.RequestTimeout, err)
	}
	for _, bad := range [][2]string{{"HUDDLE_RATE_PER_USER", "-1"}, {"HUDDLE_RATE_PER_USER", "fast"},
		{"HUDDLE_RATE_BURST", "0"}, {"HUDDLE_REQUEST_TIMEOUT", "0s"}} {
		if _, err := load(env(bad[0], bad[1])); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%s=%s: err %v, want one naming the variable", bad[0], bad[1], err)
		}
	}
}

// minimalEnv is a lookup with the settings every load needs (a data dir, a JWT secret) plus kv
// (name, value, …).
func minimalEnv(t *testing.T, kv ...string) func(string) string {
	m := map[string]string{"HUDDLE_DATA_DIR": t.TempDir(), "HUDDLE_JWT_SECRET": strings.Repeat("x", 32)}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}
