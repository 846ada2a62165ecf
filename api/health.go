package api

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/huddle-chat/huddle/internal/metrics"
)

// readyTimeout bounds one readiness check: a load balancer must get an answer, not a hang.
const readyTimeout = 3 * time.Second

// registerHealthRoutes adds /healthz (the process runs), /readyz (it can serve: Deps.Ready is
// nil) and /metrics (Prometheus text format). None of them needs a token.
func (s *Server) registerHealthRoutes(e *echo.Echo) {
	e.GET("/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
	})
	e.GET("/readyz", func(c echo.Context) error {
		if s.Ready == nil {
			return problem(http.StatusServiceUnavailable, "not_ready", "Not ready", "no readiness check is configured")
		}
		ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
		defer cancel()
		if err := s.Ready(ctx); err != nil {
			return problem(http.StatusServiceUnavailable, "not_ready", "Not ready", err.Error())
		}
		return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
	})
	if s.Metrics != nil {
		h := promhttp.HandlerFor(s.Metrics, promhttp.HandlerOpts{Registry: s.Metrics})
		e.GET("/metrics", echo.WrapHandler(h))
	}
}

// httpMetrics counts requests and observes their latency by method, route template (never the
// raw path, which would make a time series per conversation id) and status. It renders an error
// itself, so the status it records is the one the client gets.
// A nil registry records into unregistered collectors (tests that do not look at metrics).
func httpMetrics(reg *prometheus.Registry) echo.MiddlewareFunc {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "huddle_http_requests_total",
		Help: "HTTP requests by method, route and status.",
	}, []string{"method", "route", "status"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "huddle_http_request_duration_seconds",
		Help:    "HTTP request latency by method, route and status (SSE streams last as long as the connection).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"method", "route", "status"})
	if reg != nil {
		requests = metrics.Register(reg, requests)
		latency = metrics.Register(reg, latency)
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			if err := next(c); err != nil {
				c.Error(err)
			}
			status := strconv.Itoa(c.Response().Status)
			route := routeOf(c)
			requests.WithLabelValues(c.Request().Method, route, status).Inc()
			latency.WithLabelValues(c.Request().Method, route, status).Observe(time.Since(start).Seconds())
			return nil
		}
	}
}

// accessLog writes one structured line per request with its request id (set by the RequestID
// middleware, which must run before it). Never the body or the query string: they may hold
// message text or search terms.
func accessLog(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			if err := next(c); err != nil {
				c.Error(err)
			}
			res := c.Response()
			level := slog.LevelInfo
			switch {
			case c.Path() == "/healthz" || c.Path() == "/readyz" || c.Path() == "/metrics":
				level = slog.LevelDebug // probes every few seconds would drown the log
			case res.Status >= 500:
				level = slog.LevelError
			}
			log.LogAttrs(c.Request().Context(), level, "http request",
				slog.String("request_id", res.Header().Get(echo.HeaderXRequestID)),
				slog.String("method", c.Request().Method),
				slog.String("route", routeOf(c)),
				slog.Int("status", res.Status),
				slog.Int64("bytes", res.Size),
				slog.Duration("took", time.Since(start)),
				slog.String("user", actorOf(c).UserID),
			)
			return nil
		}
	}
}

func routeOf(c echo.Context) string {
	if p := c.Path(); p != "" {
		return p
	}
	return "unmatched"
}
