package api

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/labstack/echo/v4"
)

// Request bounds (issue 14): a client may hold a connection and a handler may wait on the
// database only so long. The defaults suit tests and bare servers; internal/app sets them from
// HUDDLE_REQUEST_TIMEOUT.
const (
	// DefaultRequestTimeout is the deadline of a request's context and of reading its body and
	// writing its response, on every route but the live stream and transfers.
	DefaultRequestTimeout = 10 * time.Second
	// transferTimeout bounds file uploads and downloads, audit exports and verification, whose
	// size is that of a file or a conversation's history rather than of a JSON object.
	transferTimeout = 10 * time.Minute
	// retryAfterUnavailable is what a 503 for an unreachable database asks clients to wait.
	retryAfterUnavailable = "2"
)

// streamRoute is the live stream: no deadline, its heartbeats keep the connection busy.
const streamRoute = "/v1/stream"

// transferRoutes need longer than a JSON request (see transferTimeout).
var transferRoutes = map[string]bool{
	"/v1/conversations/:id/files":        true,
	"/v1/files/:file_id":                 true,
	"/v1/audit/conversations/:id/export": true,
	"/v1/audit/verify":                   true,
	"/v1/audit/conversations/:id/events": true,
	"/v1/audit/conversations/:id/state":  true,
	"/v1/audit/reads":                    true,
}

// timeoutFor is the bound of the matched route: 0 for the stream.
func (s *Server) timeoutFor(route string) time.Duration {
	switch {
	case route == streamRoute:
		return 0
	case transferRoutes[route]:
		return max(transferTimeout, s.RequestTimeout)
	default:
		return s.RequestTimeout
	}
}

// bound is the outermost handler middleware of every route (it runs after routing, so it
// knows the route):
//
//   - the request's context ends at the route's deadline, or as soon as the database watchdog
//     finds the database gone (Deps.DatabaseLost), so handlers waiting on Postgres give up;
//   - reading the body and writing the response must finish by then too (http.Server has no
//     per-route timeouts, and a server-wide one would cut the live stream);
//   - an error answer to a request with a body closes the connection, instead of net/http
//     reading up to 256 KiB of a (slow, unread) body: a bogus token with a slow body gets its
//     401 at once and holds nothing;
//   - a request that failed because its deadline passed or the database is unreachable answers
//     503 `unavailable` with Retry-After, never a 500 and never a hang.
func (s *Server) bound(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		timeout := s.timeoutFor(c.Path())
		lost := s.databaseLost()
		if timeout > 0 {
			if lost.Err() != nil && strings.HasPrefix(c.Path(), "/v1/") && c.Path() != "/v1/openapi.yaml" {
				c.Response().Header().Set("Connection", "close")
				return unavailable("the database is unreachable; try again shortly")
			}
			deadline := time.Now().Add(timeout)
			rc := http.NewResponseController(c.Response())
			// Errors mean the writer cannot (a test's recorder); the context deadline still holds.
			_ = rc.SetReadDeadline(deadline)
			_ = rc.SetWriteDeadline(deadline.Add(time.Second)) // room to write the 503
			ctx, cancel := context.WithDeadline(req.Context(), deadline)
			defer cancel()
			stop := context.AfterFunc(lost, cancel)
			defer stop()
			c.SetRequest(req.WithContext(ctx))
		}
		err := next(c)
		if err == nil {
			return nil
		}
		if req.ContentLength != 0 {
			// The body may be unread (a 401 comes before it is touched): close the connection
			// after the answer, and end any read of the rest now, or net/http would read up to
			// 256 KiB of it before (to keep the connection) and after (to close the body)
			// writing the answer.
			c.Response().Header().Set("Connection", "close")
			_ = http.NewResponseController(c.Response()).SetReadDeadline(time.Now())
		}
		if _, internal := toProblem(err); internal && (c.Request().Context().Err() != nil || lost.Err() != nil || unreachable(err)) {
			return unavailable("the database did not answer in time; try again shortly")
		}
		return err
	}
}

func unavailable(detail string) error {
	return &unavailableError{problem(http.StatusServiceUnavailable, "unavailable", "Service Unavailable", detail)}
}

// unavailableError is the 503 problem; the Retry-After header is set by retryAfter.
type unavailableError struct{ *Problem }

func (e *unavailableError) Unwrap() error { return e.Problem }

// retryAfter sets Retry-After on 503 and 429 problems before the error handler renders them
// (problem+json has no header fields). It runs inside httpMetrics, which renders errors.
func retryAfter(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		var ue *unavailableError
		var rl *rateLimitedError
		switch {
		case errors.As(err, &ue):
			c.Response().Header().Set("Retry-After", retryAfterUnavailable)
		case errors.As(err, &rl):
			c.Response().Header().Set("Retry-After", strconv.Itoa(rl.retryAfter))
		}
		return err
	}
}

// databaseLost is the watchdog's context, never done without one.
func (s *Server) databaseLost() context.Context {
	if s.DatabaseLost == nil {
		return context.Background()
	}
	return s.DatabaseLost()
}

// unreachable reports errors that mean Postgres could not be reached or stopped answering (as
// opposed to a bug or a rejected statement): connection refused or reset, a timeout, a
// connection closed mid-query, a server shutting down.
func unreachable(err error) bool {
	var ne net.Error
	var ce *pgconn.ConnectError
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return true
	case errors.As(err, &ce), errors.As(err, &ne), pgconn.Timeout(err):
		return true
	case errors.As(err, &pe):
		// 57P01-03: admin shutdown, crash shutdown, cannot connect now; 57014: statement
		// timeout (query_canceled); 55P03: lock_timeout; 08xxx: connection exceptions.
		return pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" || pe.Code == "57014" ||
			pe.Code == "55P03" || strings.HasPrefix(pe.Code, "08")
	}
	return strings.Contains(err.Error(), "closed pool") || strings.Contains(err.Error(), "conn closed")
}
