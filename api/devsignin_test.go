package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-chat/huddle/internal/testenv"
)

func devServer(t *testing.T, dev bool) *Server {
	secret := []byte("dev-secret-dev-secret-dev-secret-dev")
	return New(Deps{Logger: testenv.Logger(t), JWTSecret: secret, Metrics: prometheus.NewRegistry(), DevSignIn: dev})
}

func devRequest(s *Server, method, path, remote, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = remote
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	return rec
}

func TestDevSignIn_AbsentOutsideDevModeAndForOtherHosts(t *testing.T) {
	cases := []struct {
		name   string
		dev    bool
		remote string
	}{
		{"HUDDLE_JWT_SECRET set", false, "127.0.0.1:5000"},
		{"dev mode, another host", true, "192.0.2.7:5000"},
		{"dev mode, another host claiming to be local", true, "[2001:db8::1]:5000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := devServer(t, tc.dev)
			for _, r := range []struct{ method, path, body string }{
				{"GET", "/dev/signin/users?clinic=c1", ""},
				{"POST", "/dev/signin/token", `{"clinic":"c1","user_id":"alice"}`},
			} {
				rec := devRequest(s, r.method, r.path, tc.remote, r.body)
				if rec.Code != http.StatusNotFound || strings.Contains(rec.Body.String(), "token\"") {
					t.Errorf("%s %s: %d %s, want 404", r.method, r.path, rec.Code, rec.Body)
				}
			}
		})
	}
}

func TestDevSignIn_MintsAStaffTokenForLoopbackInDevMode(t *testing.T) {
	s := devServer(t, true)
	rec := devRequest(s, "POST", "/dev/signin/token", "127.0.0.1:5000", `{"clinic":"c1","user_id":"alice"}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("token: %d %s", rec.Code, rec.Body)
	}
	var out struct{ Token string }
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	claims := new(Claims)
	if _, err := jwt.ParseWithClaims(out.Token, claims, func(*jwt.Token) (any, error) { return s.JWTSecret, nil }); err != nil {
		t.Fatalf("the minted token does not verify with the server's secret: %v", err)
	}
	if claims.Subject != "alice" || claims.Clinic != "c1" || len(claims.Roles) != 1 || claims.Roles[0] != RoleStaff {
		t.Fatalf("claims %+v, want alice of c1 with the staff role", claims)
	}
	if left := time.Until(claims.ExpiresAt.Time); left <= 0 || left > devTokenTTL {
		t.Fatalf("token expires in %v, want within %v", left, devTokenTTL)
	}

	for _, body := range []string{
		`{"clinic":"c1","user_id":"alice","role":"auditor"}`, // only staff and admin
		`{"clinic":"c.1","user_id":"alice"}`,                 // not a directory id
		`{"clinic":"c1","user_id":"alice","extra":1}`,        // unknown field
	} {
		if rec := devRequest(s, "POST", "/dev/signin/token", "[::1]:5000", body); rec.Code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", body, rec.Code, rec.Body)
		}
	}
}
