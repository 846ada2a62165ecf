package api

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-chat/huddle/internal/testenv"
)

// slowBody opens a raw connection and sends a request whose body is announced but only
// begun: what an attacker holding connections open does.
func slowBody(t *testing.T, base, token string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST /v1/conversations/c1chat/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"text\":\"", token)
	return conn, bufio.NewReader(conn)
}

// A bogus token with a slow body gets its 401 at once, and the server lets go of the
// connection instead of reading the rest of the body first.
func TestBounds_BogusTokenSlowBodyIs401AtOnceAndClosed(t *testing.T) {
	t.Parallel()
	s, _ := bareServer(t)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	conn, r := slowBody(t, srv.URL, "bogus")
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("no response while the body is still coming: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
		t.Fatalf("status %d (close: %v), want 401 and Connection: close", resp.StatusCode, resp.Close)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("connection still open after the 401 (read: %v)", err)
	}
}

// With a valid token, a body that never finishes is cut at the request deadline.
func TestBounds_SlowBodyIsCutAtTheRequestDeadline(t *testing.T) {
	t.Parallel()
	secret := []byte("http-secret-http-secret-http-secret")
	s := New(Deps{Logger: testenv.Logger(t), JWTSecret: secret, Metrics: prometheus.NewRegistry(),
		RequestTimeout: 300 * time.Millisecond})
	tok, _ := MintToken(secret, "ann", "c1", []string{RoleStaff}, time.Hour)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	conn, r := slowBody(t, srv.URL, tok)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	// Whatever the server answers (if it can), it must then close the connection.
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatalf("the server held the connection past its deadline: %v", err)
	}
}

// Requests other than the live stream carry a deadline on their context.
func TestBounds_RequestContextHasTheDeadline(t *testing.T) {
	t.Parallel()
	s, tok := bareServer(t)
	s.RequestTimeout = 2 * time.Second
	var left time.Duration
	s.echo.GET("/v1/probe-deadline", func(c echo.Context) error {
		dl, ok := c.Request().Context().Deadline()
		if ok {
			left = time.Until(dl)
		}
		return c.NoContent(http.StatusNoContent)
	})
	rec := serve(s, "GET", "/v1/probe-deadline", tok, "", "")
	if rec.Code != http.StatusNoContent || left <= 0 || left > 2*time.Second {
		t.Fatalf("status %d, deadline in %v; want 204 and at most 2 s", rec.Code, left)
	}
	if s.timeoutFor(streamRoute) != 0 {
		t.Fatal("the live stream must have no deadline")
	}
}
