package api

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/audit"
)

// registerAuditRoutes serves API.md's "Audit" section: straight from the event store, every
// read recorded as an AuditRead event.
func (s *Server) registerAuditRoutes(g *echo.Group) {
	g.GET("/conversations/:id/events", s.auditEvents)
	g.GET("/conversations/:id/state", s.auditState)
	g.GET("/conversations/:id/export", s.auditExport)
	g.GET("/verify", s.auditVerify)
	g.GET("/reads", s.auditReads)
}

type auditEventsPage struct {
	Events     []audit.EventJSON `json:"events"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

func auditor(c echo.Context) audit.Auditor {
	a := actorOf(c)
	return audit.Auditor{UserID: a.UserID, ClinicID: a.ClinicID, CorrelationID: c.Response().Header().Get(echo.HeaderXRequestID)}
}

func auditError(err error) error {
	switch {
	case errors.Is(err, audit.ErrNotFound):
		return notFound("no such conversation or stream in your clinic")
	case errors.Is(err, audit.ErrNotYet):
		return notFound(err.Error())
	}
	return err
}

// auditPageParams reads `after` (a cursor: the last stream version seen) and `limit`.
func auditPageParams(c echo.Context, afterName string) (int64, int, error) {
	var after int64
	if raw := c.QueryParam(afterName); raw != "" {
		v, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || v < 0 {
			return 0, 0, invalid(fmt.Sprintf("query parameter %s: not a cursor from next_cursor", afterName))
		}
		after = v
	}
	limit, err := queryLimit(c) // the staff lists' rule: 1..100, default 20
	return after, limit, err
}

// auditPage answers one page of stored events; the cursor is the last stream version sent.
func auditPage(c echo.Context, events []eventstore.RecordedEvent, more bool, err error) error {
	if err != nil {
		return auditError(err)
	}
	p := auditEventsPage{Events: make([]audit.EventJSON, len(events))}
	for i, e := range events {
		p.Events[i] = audit.ToJSON(e)
	}
	if more && len(events) > 0 {
		p.NextCursor = strconv.FormatInt(events[len(events)-1].StreamVersion, 10)
	}
	return c.JSON(http.StatusOK, p)
}

func (s *Server) auditEvents(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	after, limit, err := auditPageParams(c, "after")
	if err != nil {
		return err
	}
	events, more, err := s.Audit.Events(c.Request().Context(), auditor(c), id, after, limit)
	return auditPage(c, events, more, err)
}

func (s *Server) auditReads(c echo.Context) error {
	after, limit, err := auditPageParams(c, "after")
	if err != nil {
		return err
	}
	events, more, err := s.Audit.AuditReads(c.Request().Context(), auditor(c), after, limit)
	return auditPage(c, events, more, err)
}

func (s *Server) auditState(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	at := time.Now()
	if raw := c.QueryParam("at"); raw != "" {
		at, err = time.Parse(time.RFC3339Nano, raw)
		if err != nil {
			return invalid("query parameter at: must be an RFC 3339 time, e.g. 2026-11-25T12:00:00Z")
		}
	}
	st, err := s.Audit.StateAt(c.Request().Context(), auditor(c), id, at)
	if err != nil {
		return auditError(err)
	}
	return c.JSON(http.StatusOK, st)
}

func (s *Server) auditExport(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	format := c.QueryParam("format")
	if format == "" {
		format = audit.FormatJSONL
	}
	contentType := map[string]string{audit.FormatJSONL: "application/x-ndjson", audit.FormatCSV: "text/csv; charset=utf-8"}[format]
	if contentType == "" {
		return invalid("query parameter format: must be jsonl or csv")
	}
	ctx := c.Request().Context()
	a := auditor(c)
	if err := s.Audit.CheckExport(ctx, a, id); err != nil {
		return auditError(err)
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, contentType)
	h.Set(echo.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="conversation-%s.%s"`, id, format))
	c.Response().WriteHeader(http.StatusOK)
	if err := s.Audit.Export(ctx, a, id, format, c.Response()); err != nil {
		// Headers are out: the client sees a truncated download; log why.
		s.Logger.Error("audit export failed mid-stream", "conversation", id, "err", err)
	}
	return nil
}

func (s *Server) auditVerify(c echo.Context) error {
	stream := c.QueryParam("stream_id")
	if stream == "" {
		return invalid("query parameter stream_id: required (e.g. conversation-<id>)")
	}
	if !streamIDPattern.MatchString(stream) {
		return invalid("query parameter stream_id: malformed stream id")
	}
	r, err := s.Audit.Verify(c.Request().Context(), auditor(c), stream)
	if err != nil {
		return auditError(err)
	}
	return c.JSON(http.StatusOK, r)
}

// streamIDPattern is a stream id: a category, '-', and an id in the id alphabet, long enough
// for member-<clinic>.<user> with both ids at their 128-character limit (ADR 0013).
var streamIDPattern = regexp.MustCompile(`^[a-z]{1,16}-[A-Za-z0-9][A-Za-z0-9._:@-]{0,256}$`)
