// Package api is Huddle's HTTP interface (API.md): thin handlers that parse and validate input,
// call the command handler or the read-model queries, and map results and errors to JSON and
// problem+json. No business rule lives here.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-chat/huddle/commands"
	"github.com/huddle-chat/huddle/directory"
	"github.com/huddle-chat/huddle/inbox"
	"github.com/huddle-chat/huddle/internal/audit"
	"github.com/huddle-chat/huddle/live"
	"github.com/huddle-chat/huddle/projections"
	"github.com/huddle-chat/huddle/web"
)

// Deps is everything the HTTP layer needs; the composition root (internal/app) fills it.
type Deps struct {
	Logger    *slog.Logger
	JWTSecret []byte
	Commands  *commands.Handler
	// Queries answers the inbox reads (conversations, messages, unread).
	Queries *inbox.Queries
	// Directory answers the address book and the admin directory lists.
	Directory *directory.Queries
	// Projections answers read-your-writes waits (Huddle-Min-Position).
	Projections *projections.Engine
	// Ready reports whether Postgres, NATS, the relay and the projectors are up (for /readyz).
	Ready func(ctx context.Context) error
	// Metrics is the registry /metrics serves; HTTP metrics are registered into it.
	Metrics *prometheus.Registry
	// MaxBodyBytes bounds JSON request bodies; MaxFileBytes bounds uploads.
	MaxBodyBytes int64
	MaxFileBytes int64
	// Audit serves the auditors' endpoints straight from the event store.
	Audit *audit.Service
	// Live and Feed serve GET /v1/stream; StreamHeartbeat is its keep-alive interval (15 s).
	Live            *live.Hub
	Feed            *live.Feed
	StreamHeartbeat time.Duration
	// RequestTimeout bounds every request but the live stream and transfers (api/limits.go);
	// 0 takes DefaultRequestTimeout.
	RequestTimeout time.Duration
	// DatabaseLost returns a context that ends when the database watchdog finds Postgres
	// unreachable (and a fresh one once it answers again); nil: no watchdog.
	DatabaseLost func() context.Context
	// RatePerUser commands per second per clinic+user, with bursts of RateBurst
	// (api/ratelimit.go); 0 turns the limit off.
	RatePerUser float64
	RateBurst   int
	// DevSignIn serves the web client's dev sign-in (api/devsignin.go): true only on the
	// embedded default's generated JWT secret.
	DevSignIn bool
}

// Server holds the handlers' dependencies.
type Server struct {
	Deps
	echo   *echo.Echo
	parked *parkedStreams
}

// New builds the Echo instance with every route of API.md.
func New(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.MaxBodyBytes == 0 {
		d.MaxBodyBytes = 1 << 20
	}
	if d.MaxFileBytes == 0 {
		d.MaxFileBytes = 25 << 20
	}
	if d.RequestTimeout == 0 {
		d.RequestTimeout = DefaultRequestTimeout
	}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(d.Logger)
	s := &Server{Deps: d, echo: e, parked: newParkedStreams()}

	e.Pre(dropUnsafeRequestID)
	e.Use(middleware.RequestID())
	e.Use(accessLog(d.Logger)) // platform (api/health.go)
	e.Use(httpMetrics(d.Metrics))
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{DisableStackAll: true, LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		d.Logger.Error("panic recovered", "path", c.Path(), "err", err, "stack", string(stack))
		return err
	}}))
	e.Use(retryAfter)
	e.Use(s.bound)
	e.Use(checkURL)

	s.registerHealthRoutes(e)
	e.GET("/v1/openapi.yaml", serveOpenAPI)

	v1 := e.Group("/v1", authenticate(d.JWTSecret), s.rateLimit(), s.checkJSONBody, withPositionKey(positionKey(d.JWTSecret)),
		withStaffChecker(staffChecker(d.Commands)))
	s.registerAdminRoutes(v1.Group("/admin", requireRole(RoleAdmin)))
	s.registerCommandRoutes(v1)
	s.registerQueryRoutes(v1)
	v1.GET("/stream", s.stream, requireRole(RoleStaff))
	s.registerAuditRoutes(v1.Group("/audit", requireRole(RoleAuditor)))
	e.GET("/*", web.Serve) // the web client; a catch-all, so every API route above wins
	s.registerDevSignIn(e)
	return s
}

var safeRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// dropUnsafeRequestID removes an incoming X-Request-Id that is too long or could forge log
// lines, so RequestID mints a fresh one instead of echoing and logging it.
func dropUnsafeRequestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Request().Header
		if id := h.Get(echo.HeaderXRequestID); id != "" && !safeRequestID.MatchString(id) {
			h.Del(echo.HeaderXRequestID)
		}
		return next(c)
	}
}

// Handler returns the http.Handler to serve.
func (s *Server) Handler() http.Handler { return s.echo }

// Echo exposes the router (tests list its routes).
func (s *Server) Echo() *echo.Echo { return s.echo }

// staffChecker is h as a StaffChecker, or nil when there is no command handler.
func staffChecker(h *commands.Handler) StaffChecker {
	if h == nil {
		return nil
	}
	return h
}
