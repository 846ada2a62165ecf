package api

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-chat/huddle/internal/testenv"
)

func TestRateLimit_CommandsPerClinicAndUserGet429WithRetryAfter(t *testing.T) {
	t.Parallel()
	secret := []byte("http-secret-http-secret-http-secret")
	s := New(Deps{Logger: testenv.Logger(t), JWTSecret: secret, Metrics: prometheus.NewRegistry(),
		RatePerUser: 0.5, RateBurst: 3})
	tok := func(user, clinic string, roles ...string) string {
		tk, err := MintToken(secret, user, clinic, roles, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	ann := tok("ann", "c1", RoleStaff, RoleAdmin)
	// Malformed commands: rejected by the handler, but each one spends a token first.
	command := func(token string) *http.Response {
		rec := serve(s, "POST", "/v1/conversations", token, "application/json", `{`)
		return rec.Result()
	}
	for i := range 3 {
		if r := command(ann); r.StatusCode != http.StatusBadRequest {
			t.Fatalf("command %d within the burst: %d", i+1, r.StatusCode)
		}
	}
	rec := serve(s, "POST", "/v1/conversations", ann, "application/json", `{`)
	p := problemOf(t, rec, http.StatusTooManyRequests, "rate_limited")
	if secs, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || secs < 1 || secs > 2 {
		t.Errorf("Retry-After %q, want 1-2 s at 0.5 commands/s (%s)", rec.Header().Get("Retry-After"), p.Detail)
	}
	// Others are not affected: another user, the same user id in another clinic.
	for _, other := range []string{tok("bob", "c1", RoleStaff), tok("ann", "c2", RoleStaff)} {
		if r := command(other); r.StatusCode != http.StatusBadRequest {
			t.Errorf("another user's command: %d", r.StatusCode)
		}
	}
	// Reads and directory administration are not commands of staff.
	if rec := serve(s, "GET", "/v1/nowhere", ann, "", ""); rec.Code == http.StatusTooManyRequests {
		t.Error("a GET was rate limited")
	}
	if rec := serve(s, "PUT", "/v1/admin/users/bad%20id", ann, "application/json", `{}`); rec.Code == http.StatusTooManyRequests {
		t.Error("an admin PUT was rate limited")
	}
}

func TestRateLimit_OffByDefaultInDeps(t *testing.T) {
	t.Parallel()
	s, tok := bareServer(t)
	for i := range 200 {
		if rec := serve(s, "POST", "/v1/conversations", tok, "application/json", `{`); rec.Code == http.StatusTooManyRequests {
			t.Fatalf("command %d limited with RatePerUser 0", i)
		}
	}
}

func TestRateLimiter_RefillsAndStaysBounded(t *testing.T) {
	t.Parallel()
	now := time.Unix(0, 0)
	l := newRateLimiter(2, 2)
	l.now = func() time.Time { return now }
	for range 2 {
		if ok, _ := l.take("k"); !ok {
			t.Fatal("burst refused")
		}
	}
	ok, wait := l.take("k")
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("empty bucket: ok=%v wait=%v, want refused for 500ms", ok, wait)
	}
	now = now.Add(500 * time.Millisecond)
	if ok, _ := l.take("k"); !ok {
		t.Fatal("not refilled after 500ms at 2/s")
	}
	for i := range maxBuckets + 10 {
		l.take(fmt.Sprint("user", i))
	}
	if n := len(l.buckets); n > maxBuckets {
		t.Fatalf("%d buckets kept, want at most %d", n, maxBuckets)
	}
}
