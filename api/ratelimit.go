package api

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// A per-user token bucket on commands (issue 14: one user sent 2,000 messages in 5.3 s). Each
// clinic+user may run RatePerUser commands per second on average and RateBurst at once; the
// limits are far above what a person types, so only scripts and runaway clients meet them.
// The buckets live in this instance's memory: behind a load balancer a user gets up to the
// limit on each instance, which bounds abuse just as well.

// maxBuckets bounds the limiter's memory. A full bucket holds nothing worth keeping (a new one
// is the same), so past this many they are dropped first; then arbitrary ones, which at worst
// gives those users a fresh burst.
const maxBuckets = 100_000

type bucket struct {
	tokens float64
	last   time.Time
}

type rateLimiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

func newRateLimiter(perSecond float64, burst int) *rateLimiter {
	if burst < 1 {
		burst = 1
	}
	return &rateLimiter{rate: perSecond, burst: float64(burst), now: time.Now, buckets: map[string]*bucket{}}
}

// take spends a token of key's bucket; when there is none it returns how long until there is.
func (l *rateLimiter) take(key string) (ok bool, wait time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.prune(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// prune drops full buckets, then, if that was not enough, half of the rest.
func (l *rateLimiter) prune(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < maxBuckets/2 {
			break
		}
		delete(l.buckets, k)
	}
}

// rateLimitedError is the 429 problem; retryAfter (whole seconds, at least 1) becomes the
// Retry-After header (see retryAfter).
type rateLimitedError struct {
	*Problem
	retryAfter int
}

func (e *rateLimitedError) Unwrap() error { return e.Problem }

// isCommand reports whether a request is a staff command: a change (not GET or HEAD) outside
// the admin and auditor routes. Directory administration is not limited: provisioning a clinic
// runs many PUTs in a row, and only administrators can.
func isCommand(c echo.Context) bool {
	switch c.Request().Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	p := c.Path()
	return !strings.HasPrefix(p, "/v1/admin/") && !strings.HasPrefix(p, "/v1/audit/")
}

// rateLimit limits each authenticated clinic+user's commands; nil when RatePerUser is 0 (off).
func (s *Server) rateLimit() echo.MiddlewareFunc {
	if s.RatePerUser <= 0 {
		return func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	l := newRateLimiter(s.RatePerUser, s.RateBurst)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			a, ok := c.Get(actorKey).(Actor)
			if !ok || !isCommand(c) {
				return next(c)
			}
			// Ids are opaque and may hold any character but NUL-free text; a NUL separator
			// cannot be forged by either part.
			if ok, wait := l.take(a.ClinicID + "\x00" + a.UserID); !ok {
				secs := max(1, int(math.Ceil(wait.Seconds())))
				return &rateLimitedError{
					Problem: problem(http.StatusTooManyRequests, "rate_limited", "Too Many Requests",
						fmt.Sprintf("more than %g commands per second (burst %d); retry after %d s", s.RatePerUser, s.RateBurst, secs)),
					retryAfter: secs,
				}
			}
			return next(c)
		}
	}
}
