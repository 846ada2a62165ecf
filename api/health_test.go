package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func healthServer(ready func(context.Context) error) (*Server, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	s := New(Deps{
		Logger:    slog.New(slog.DiscardHandler),
		JWTSecret: []byte(strings.Repeat("k", 32)),
		Ready:     ready,
		Metrics:   reg,
	})
	return s, reg
}

func get(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func TestHealthz_AlwaysOK(t *testing.T) {
	s, _ := healthServer(func(context.Context) error { return errors.New("db down") })
	if rec := get(t, s.Handler(), "/healthz"); rec.Code != http.StatusOK {
		t.Fatalf("healthz %d", rec.Code)
	}
}

func TestReadyz_ReflectsReadyCheck(t *testing.T) {
	var down error
	s, _ := healthServer(func(context.Context) error { return down })
	if rec := get(t, s.Handler(), "/readyz"); rec.Code != http.StatusOK {
		t.Fatalf("ready: %d %s", rec.Code, rec.Body)
	}
	down = errors.New("relay not running")
	rec := get(t, s.Handler(), "/readyz")
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("not ready: got %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("content type %q", ct)
	}
	var p Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || !strings.Contains(p.Detail, "relay not running") {
		t.Errorf("problem %+v (%v)", p, err)
	}
}

func TestReadyz_NoCheckConfiguredIsNotReady(t *testing.T) {
	s, _ := healthServer(nil)
	if rec := get(t, s.Handler(), "/readyz"); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("got %d", rec.Code)
	}
}

func TestMetrics_CountsRequestsByRouteTemplateAndStatus(t *testing.T) {
	s, _ := healthServer(func(context.Context) error { return nil })
	get(t, s.Handler(), "/healthz")
	get(t, s.Handler(), "/v1/conversations/c-123/messages") // no token: 401
	rec := get(t, s.Handler(), "/metrics")
	if rec.Code != http.StatusOK {
		t.Fatalf("metrics %d", rec.Code)
	}
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`huddle_http_requests_total{method="GET",route="/healthz",status="200"} 1`,
		`huddle_http_request_duration_seconds_bucket`,
		`status="401"`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(string(body), "c-123") {
		t.Error("metrics carry a raw path (one series per id)")
	}
}
