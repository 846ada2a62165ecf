package api

import (
	"bytes"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/huddle-chat/huddle/domain"
)

// Untrusted text is checked once, at the edge, with domain.CheckInput (issue 14: q=%00 was a
// 500, invalid UTF-8 in JSON was silently replaced).

// checkURL rejects a path or query (names and values) holding NUL or invalid UTF-8. It reads
// no body, so it runs before authentication like routing does.
func checkURL(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := domain.CheckInput("path", c.Request().URL.Path); err != nil {
			return invalid(err.(*domain.Error).Message)
		}
		for k, vs := range c.QueryParams() {
			if err := domain.CheckInput("query parameter", k); err != nil {
				return invalid(err.(*domain.Error).Message)
			}
			for _, v := range vs {
				if err := domain.CheckInput("query parameter "+k, v); err != nil {
					return invalid(err.(*domain.Error).Message)
				}
			}
		}
		return next(c)
	}
}

// checkJSONBody rejects a JSON body that is not valid UTF-8 or holds a NUL, raw or escaped
// (\u0000 decodes to one). It runs after authentication: the body of an unauthenticated
// request is never read. Bodies over limit are left for bindJSON's 413.
func (s *Server) checkJSONBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.ContentLength == 0 || req.Body == nil || req.Body == http.NoBody ||
			!strings.HasPrefix(req.Header.Get(echo.HeaderContentType), echo.MIMEApplicationJSON) {
			return next(c)
		}
		head, err := io.ReadAll(io.LimitReader(req.Body, s.MaxBodyBytes+1))
		if err != nil {
			return invalid("reading the request body: " + err.Error())
		}
		if err := domain.CheckInput("request body", string(head)); err != nil {
			return invalid(err.(*domain.Error).Message)
		}
		if escapedNUL(head) {
			return invalid("request body: contains a NUL character (\\u0000)")
		}
		req.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(head), req.Body), req.Body}
		return next(c)
	}
}

// escapedNUL reports a JSON \u0000 escape: a backslash preceded by an even number of
// backslashes (so not itself escaped), then u0000.
func escapedNUL(b []byte) bool {
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(`u0000`))
		if j < 0 {
			return false
		}
		at := i + j
		n := 0
		for k := at - 1; k >= 0 && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 1 {
			return true
		}
		i = at + 1
	}
}
