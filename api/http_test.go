package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/internal/testenv"
)

func bareServer(t *testing.T) (*Server, string) {
	secret := []byte("http-secret-http-secret-http-secret")
	s := New(Deps{Logger: testenv.Logger(t), JWTSecret: secret, Metrics: prometheus.NewRegistry(), MaxBodyBytes: 1 << 10})
	tok, _ := MintToken(secret, "ann", "c1", []string{RoleStaff, RoleAdmin}, time.Hour)
	return s, tok
}

func serve(s *Server, method, path, token, ctype, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	return rec
}

func problemOf(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) Problem {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status %d, want %d: %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json", ct)
	}
	var p Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	if p.Code != code || p.Status != status || p.Title == "" || p.Type == "" {
		t.Fatalf("problem %+v, want code %s", p, code)
	}
	return p
}

func TestRouterErrorsAreProblems(t *testing.T) {
	s, tok := bareServer(t)
	problemOf(t, serve(s, "GET", "/v1/nowhere", tok, "", ""), 404, "not_found")
	problemOf(t, serve(s, "GET", "/nowhere", "", "", ""), 404, "not_found")
	problemOf(t, serve(s, "PATCH", "/healthz", "", "", ""), 405, "method_not_allowed")
	problemOf(t, serve(s, "GET", "/v1/contacts", "", "", ""), 401, "unauthorized")
	problemOf(t, serve(s, "GET", "/v1/contacts", "Bearer-less", "", ""), 401, "unauthorized")
}

func TestBodyLimitsAndContentTypes(t *testing.T) {
	s, tok := bareServer(t)
	big := `{"name":"` + strings.Repeat("x", 2<<10) + `","email":"a@b.test"}`
	problemOf(t, serve(s, "PUT", "/v1/admin/users/u1", tok, "application/json", big), 413, "request_too_large")
	p := problemOf(t, serve(s, "PUT", "/v1/admin/users/u1", tok, "text/plain", `{"name":"a","email":"a@b.test"}`), 400, "invalid_request")
	if !strings.Contains(p.Detail, "Content-Type") {
		t.Errorf("detail %q does not name the content type", p.Detail)
	}
	p = problemOf(t, serve(s, "PUT", "/v1/admin/users/u1", tok, "application/json", `{"name":"a","email":"a@b.test","admin":true}`), 400, "invalid_request")
	if !strings.Contains(p.Detail, "admin") {
		t.Errorf("detail %q does not name the unknown field", p.Detail)
	}
	p = problemOf(t, serve(s, "PUT", "/v1/admin/users/bad%20id", tok, "application/json", `{"name":"a","email":"a@b.test"}`), 400, "invalid_request")
	if !strings.Contains(p.Detail, "user_id") {
		t.Errorf("detail %q does not name the path parameter", p.Detail)
	}
}

func TestPanicsAreRecoveredAndNotLeaked(t *testing.T) {
	s, _ := bareServer(t)
	s.Echo().GET("/boom", func(echo.Context) error { panic("secret internals") })
	rec := serve(s, "GET", "/boom", "", "", "")
	p := problemOf(t, rec, 500, "internal")
	if strings.Contains(rec.Body.String(), "secret internals") || strings.Contains(p.Detail, "panic") {
		t.Errorf("the panic leaked: %s", rec.Body)
	}
}

func TestRequestIDsAreEchoedOrMinted(t *testing.T) {
	s, _ := bareServer(t)
	rec := serve(s, "GET", "/healthz", "", "", "", "X-Request-Id", "client-req-42")
	if got := rec.Header().Get("X-Request-Id"); got != "client-req-42" {
		t.Errorf("X-Request-Id echoed as %q", got)
	}
	rec = serve(s, "GET", "/healthz", "", "", "")
	if got := rec.Header().Get("X-Request-Id"); len(got) < 16 {
		t.Errorf("minted X-Request-Id %q", got)
	}
	// An id that could forge log lines or is absurdly long is replaced, not echoed.
	for _, bad := range []string{"evil\" level=ERROR msg=forged", strings.Repeat("a", 500)} {
		rec = serve(s, "GET", "/healthz", "", "", "", "X-Request-Id", bad)
		if got := rec.Header().Get("X-Request-Id"); got == bad || len(got) < 16 {
			t.Errorf("bad incoming id %q answered with %q", bad, got)
		}
	}
}

// API v1.1 "Conventions added": one title per code, whichever layer raised it.
func TestProblems_OneTitlePerCode(t *testing.T) {
	for code, ps := range map[string][]*Problem{
		domain.CodeInvalid: {
			invalid("x"),
			mustProblem(toProblem(&domain.Error{Code: domain.CodeInvalid, Message: "x"})),
			mustProblem(toProblem(echo.NewHTTPError(http.StatusBadRequest, "x"))),
			mustProblem(toProblem(echo.ErrUnsupportedMediaType)),
		},
		domain.CodeNotFound: {
			notFound("x"),
			mustProblem(toProblem(echo.ErrNotFound)),
			mustProblem(toProblem(&domain.Error{Code: domain.CodeNotFound, Message: "x"})),
		},
		domain.CodeForbidden: {
			problem(403, domain.CodeForbidden, "Forbidden", "x"),
			mustProblem(toProblem(echo.ErrForbidden)),
		},
	} {
		for _, p := range ps[1:] {
			if p.Code != code || p.Title != ps[0].Title {
				t.Errorf("code %s: title %q (code %s), want %q as everywhere else", code, p.Title, p.Code, ps[0].Title)
			}
		}
	}
}

func mustProblem(p *Problem, _ bool) *Problem { return p }

// 401 names the scheme; a known path with a wrong method is 405 with Allow, not 404.
func TestProblems_WWWAuthenticateAndMethodNotAllowed(t *testing.T) {
	s, tok := bareServer(t)
	for _, rec := range []*httptest.ResponseRecorder{
		serve(s, "GET", "/v1/contacts", "", "", ""),
		serve(s, "GET", "/v1/contacts", "not-a-jwt", "", ""),
	} {
		problemOf(t, rec, 401, "unauthorized")
		if got := rec.Header().Get("WWW-Authenticate"); got != "Bearer" {
			t.Errorf("401 with WWW-Authenticate %q, want Bearer", got)
		}
	}
	for _, tc := range []struct{ method, path, allow string }{
		{"DELETE", "/v1/contacts", "GET"},
		{"PATCH", "/v1/conversations/c1/messages", "GET, POST"},
		{"GET", "/v1/admin/users/u1", "PUT, DELETE"},
		{"POST", "/v1/stream", "GET"},
	} {
		rec := serve(s, tc.method, tc.path, tok, "", "")
		problemOf(t, rec, 405, "method_not_allowed")
		if got := rec.Header().Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
		if got := rec.Header().Get("WWW-Authenticate"); got != "" {
			t.Errorf("%s %s: WWW-Authenticate %q on a 405", tc.method, tc.path, got)
		}
	}
	// Unknown paths stay 404.
	problemOf(t, serve(s, "GET", "/v1/nowhere", tok, "", ""), 404, "not_found")
	problemOf(t, serve(s, "DELETE", "/v1/conversations/c1/nowhere", tok, "", ""), 404, "not_found")
}

// Clinic, user and room ids keep to an alphabet without NATS's '.', '*', '>' and whitespace,
// wherever they are created or enter, so "c.1" and "c_1" never share a subject.
func TestDirectoryIDs_SafeAlphabetWhereverCreated(t *testing.T) {
	secret := []byte("http-secret-http-secret-http-secret")
	for _, bad := range []string{"c.1", "c 1", "c>", "c*", "", ".c", strings.Repeat("c", 129)} {
		if _, err := MintToken(secret, "ann", bad, []string{RoleStaff}, time.Hour); err == nil {
			t.Errorf("MintToken accepted clinic id %q", bad)
		}
		if _, err := MintToken(secret, bad, "c1", []string{RoleStaff}, time.Hour); err == nil {
			t.Errorf("MintToken accepted user id %q", bad)
		}
	}
	for _, good := range []string{"c1", "c_1", "clinic-1", "u@example", "idp:1234", "C-9_z"} {
		if _, err := MintToken(secret, good, good, []string{RoleStaff}, time.Hour); err != nil {
			t.Errorf("MintToken rejected %q: %v", good, err)
		}
	}

	// A token made elsewhere with such an id is not accepted.
	s, admin := bareServer(t)
	for _, claims := range []Claims{
		{Clinic: "c.1", Roles: []string{RoleStaff}, RegisteredClaims: jwt.RegisteredClaims{Subject: "ann"}},
		{Clinic: "c1", Roles: []string{RoleStaff}, RegisteredClaims: jwt.RegisteredClaims{Subject: "a*"}},
	} {
		claims.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Hour))
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		problemOf(t, serve(s, "GET", "/v1/contacts", tok, "", ""), 401, "unauthorized")
	}

	// The admin API creates none.
	for _, path := range []string{"/v1/admin/users/u.1", "/v1/admin/rooms/r.1", "/v1/admin/rooms/r1/members/u.1", "/v1/admin/rooms/r.1/members/u1"} {
		p := problemOf(t, serve(s, "PUT", path, admin, "application/json", `{"name":"N","email":"n@example.com"}`), 400, "invalid_request")
		if !strings.Contains(p.Detail, "_id") {
			t.Errorf("PUT %s: detail %q does not name the parameter", path, p.Detail)
		}
	}
}
