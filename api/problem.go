package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/huddle-chat/huddle/domain"
)

// Problem is an RFC 9457 problem+json body with our stable machine-readable code.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Code   string `json:"code"`
}

func (p *Problem) Error() string { return fmt.Sprintf("%d %s: %s", p.Status, p.Code, p.Detail) }

// problem builds an error the error handler renders as problem+json. The title argument is
// not used: a code has one title (titleOf), whichever call site builds it; the argument stays
// so that call sites read as the problem they build.
func problem(status int, code, _, detail string) *Problem {
	return &Problem{Type: "https://huddle.dev/problems/" + code, Title: titleOf(code), Status: status, Detail: detail, Code: code}
}

// titleOf is the one title of a code: the code in words ("not_found": "Not found"). Clients
// that show titles then show the same words for the same condition, whichever layer (router,
// handler, domain) raised it, and a new code needs no table entry.
func titleOf(code string) string {
	if code == "internal" {
		return "Internal error"
	}
	words := strings.ReplaceAll(code, "_", " ")
	if words == "" {
		return "Error"
	}
	return strings.ToUpper(words[:1]) + words[1:]
}

// invalid is the 400 invalid_request problem; detail should name the offending field.
func invalid(detail string) *Problem {
	return problem(http.StatusBadRequest, domain.CodeInvalid, "", detail)
}

func notFound(detail string) *Problem {
	return problem(http.StatusNotFound, domain.CodeNotFound, "", detail)
}

// statusByCode maps each stable domain code to its HTTP status: the one place that does so.
var statusByCode = map[string]int{
	domain.CodeInvalid:              http.StatusBadRequest,
	domain.CodeNotInAddressBook:     http.StatusUnprocessableEntity,
	domain.CodeNotAParticipant:      http.StatusForbidden,
	domain.CodeCannotSend:           http.StatusForbidden,
	domain.CodeNotGroupOwner:        http.StatusForbidden,
	domain.CodeNotAGroup:            http.StatusUnprocessableEntity,
	domain.CodeOwnerCannotBeRemoved: http.StatusUnprocessableEntity,
	domain.CodeConversationDeleted:  http.StatusNotFound,
	domain.CodeFileTooLarge:         http.StatusRequestEntityTooLarge,
	domain.CodeForbidden:            http.StatusForbidden,
	domain.CodeNotFound:             http.StatusNotFound,
	domain.CodeConflict:             http.StatusConflict,
	domain.CodeCannotAckOwn:         http.StatusUnprocessableEntity,
	domain.CodeNotUrgent:            http.StatusUnprocessableEntity,
	domain.CodeNotMessageSender:     http.StatusForbidden,
	domain.CodeNotEditable:          http.StatusUnprocessableEntity,
	domain.CodeBusy:                 http.StatusServiceUnavailable,
	domain.CodeUnknownUser:          http.StatusForbidden,
}

// retryAfterByCode is the Retry-After (seconds) sent with the codes that invite a retry.
var retryAfterByCode = map[string]string{
	domain.CodeBusy: "1",
}

// toProblem turns any error into the problem to show. Unknown errors become a 500 that says
// nothing of their cause (it is logged instead).
func toProblem(err error) (p *Problem, internal bool) {
	if errors.As(err, &p) {
		return p, false
	}
	var de *domain.Error
	if errors.As(err, &de) {
		status, ok := statusByCode[de.Code]
		if !ok {
			status = http.StatusUnprocessableEntity
		}
		return problem(status, de.Code, "", de.Message), false
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		code := codeForStatus(he.Code)
		detail := http.StatusText(he.Code)
		if m, ok := he.Message.(string); ok && m != "" {
			detail = m
		}
		return problem(he.Code, code, "", detail), false
	}
	return problem(http.StatusInternalServerError, "internal", "", "an unexpected error occurred; it has been logged"), true
}

func codeForStatus(status int) string {
	switch status {
	case http.StatusNotFound:
		return domain.CodeNotFound
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return domain.CodeForbidden
	case http.StatusUnsupportedMediaType, http.StatusBadRequest:
		return domain.CodeInvalid
	case http.StatusServiceUnavailable:
		return "unavailable"
	}
	if status >= 500 {
		return "internal"
	}
	return domain.CodeInvalid
}

// errorHandler renders every error as problem+json, once, and logs internal ones.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		h := c.Response().Header()
		if err == echo.ErrNotFound { // the router's: no route for this method and path
			if allow := allowedMethods(c); allow != "" {
				h.Set(echo.HeaderAllow, allow)
				err = echo.ErrMethodNotAllowed
			}
		}
		p, internal := toProblem(err)
		if internal {
			log.Error("request failed", "method", c.Request().Method, "path", c.Path(),
				"request_id", c.Response().Header().Get(echo.HeaderXRequestID), "err", err)
		}
		if p.Status == http.StatusUnauthorized {
			// RFC 9110 §11.6.1: a 401 names the scheme to authenticate with.
			h.Set(echo.HeaderWWWAuthenticate, "Bearer")
		}
		h.Set(echo.HeaderContentType, "application/problem+json")
		if after, ok := retryAfterByCode[p.Code]; ok {
			h.Set("Retry-After", after)
		}
		c.Response().WriteHeader(p.Status)
		if c.Request().Method == http.MethodHead {
			return
		}
		_ = json.NewEncoder(c.Response()).Encode(p)
	}
}

// routeMethods are the methods the API routes; OPTIONS and HEAD are not among them.
var routeMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// allowedMethods lists (for the Allow header) the methods that have a route for the request's
// path, or "" when none has. Echo answers 405 itself only outside route groups with middleware:
// such a group registers a catch-all 404 route that shadows a wrong method on a known path.
func allowedMethods(c echo.Context) string {
	e := c.Echo()
	registered := map[string]bool{}
	for _, r := range e.Routes() {
		registered[r.Method+" "+r.Path] = true
	}
	path := c.Request().URL.RawPath
	if path == "" {
		path = c.Request().URL.Path
	}
	var allow []string
	for _, m := range routeMethods {
		probe := e.NewContext(c.Request(), nil)
		e.Router().Find(m, path, probe)
		if registered[m+" "+probe.Path()] {
			allow = append(allow, m)
		}
	}
	return strings.Join(allow, ", ")
}

// bindJSON decodes the request body strictly: JSON content type, one object, no unknown fields.
func bindJSON(c echo.Context, v any) error {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if !strings.HasPrefix(ct, echo.MIMEApplicationJSON) {
		return invalid("Content-Type must be application/json")
	}
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return problem(http.StatusRequestEntityTooLarge, "request_too_large", "Request Entity Too Large", "request body is over the limit")
		}
		if errors.Is(err, io.EOF) {
			return invalid("request body is empty; expected a JSON object")
		}
		return invalid("malformed JSON body: " + err.Error())
	}
	if dec.More() {
		return invalid("request body must hold exactly one JSON object")
	}
	return nil
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)

// validID reports whether s is a well-formed opaque id (1..128 chars, no spaces or slashes).
func validID(s string) bool { return idPattern.MatchString(s) }

// pathID reads a path parameter and rejects malformed ids with a 400 naming the parameter.
func pathID(c echo.Context, name string) (string, error) {
	v := c.Param(name)
	if !validID(v) {
		return "", invalid(fmt.Sprintf("path parameter %s: malformed id %q", name, v))
	}
	return v, nil
}
