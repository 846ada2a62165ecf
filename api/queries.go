package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/huddle-chat/huddle/inbox"
	"github.com/huddle-chat/huddle/internal/commands"
)

// minPositionWait bounds how long a GET waits for the read models to catch up with the
// Huddle-Min-Position it names (API.md: 5 s, then 503 projection_lag).
const minPositionWait = 5 * time.Second

// maxQueryLen bounds the q search parameter (runes).
const maxQueryLen = 200

// registerQueryRoutes mounts the staff read endpoints; each honours Huddle-Min-Position.
func (s *Server) registerQueryRoutes(g *echo.Group) {
	staff := requireRole(RoleStaff)
	g.GET("/contacts", s.listContacts, staff, s.awaitMinPosition)
	g.GET("/conversations", s.listConversations, staff, s.awaitMinPosition)
	g.GET("/conversations/:id", s.getConversation, staff, s.awaitMinPosition)
	g.GET("/conversations/:id/messages", s.listMessages, staff, s.awaitMinPosition)
	g.GET("/unread", s.getUnread, staff, s.awaitMinPosition)
	g.GET("/urgent", s.getUrgent, staff, s.awaitMinPosition)
	g.GET("/conversations/:id/receipts", s.getReceipts, staff, s.awaitMinPosition)
}

// awaitMinPosition makes a GET carrying Huddle-Min-Position wait until the projections that
// read the named stream have applied that version, and every projection everything stored
// before it (read-your-writes), or answer 503.
func (s *Server) awaitMinPosition(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		token := c.Request().Header.Get(headerMinPosition)
		if token == "" {
			return next(c)
		}
		pos, err := decodePosition(c, token)
		if err != nil {
			return invalid("header " + headerMinPosition + ": malformed position token")
		}
		if err := s.awaitPosition(c, pos, "the read models have not caught up with your last write yet; retry shortly"); err != nil {
			return err
		}
		return next(c)
	}
}

// awaitPosition waits until the projections that read pos's stream have applied its version,
// and every projection of the caller's clinic everything stored before it; past
// minPositionWait, 503 projection_lag with detail.
func (s *Server) awaitPosition(c echo.Context, pos commands.Position, detail string) error {
	if s.Projections == nil || pos.StreamID == "" || pos.Version < 1 {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), minPositionWait)
	defer cancel()
	err := s.Projections.WaitFor(ctx, pos.StreamID, pos.Version)
	if err == nil {
		// The token is signed for the caller's clinic, so all it names is in that clinic:
		// another clinic's backlog or stuck event does not hold this read.
		err = s.Projections.WaitForClinic(ctx, actorOf(c).ClinicID, pos.At)
	}
	if err == nil {
		return nil
	}
	if c.Request().Context().Err() != nil {
		return c.Request().Context().Err()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return problem(http.StatusServiceUnavailable, "projection_lag", "Projection lag", detail)
	}
	return err
}

// queryLimit reads ?limit= (default 20); anything but an integer in 1..100 is a 400.
func queryLimit(c echo.Context) (int, error) {
	raw, ok := c.QueryParams()["limit"]
	if !ok {
		return inbox.DefaultLimit, nil
	}
	if len(raw) != 1 {
		return 0, invalid("query parameter limit: give it once")
	}
	n, err := strconv.Atoi(raw[0])
	if err != nil || n < 1 || n > inbox.MaxLimit {
		return 0, invalid(fmt.Sprintf("query parameter limit: must be an integer from 1 to %d", inbox.MaxLimit))
	}
	return n, nil
}

// queryString reads an optional single-valued string parameter of at most max runes.
func queryString(c echo.Context, name string, max int) (string, error) {
	raw, ok := c.QueryParams()[name]
	if !ok {
		return "", nil
	}
	if len(raw) != 1 {
		return "", invalid("query parameter " + name + ": give it once")
	}
	if !utf8.ValidString(raw[0]) || utf8.RuneCountInString(raw[0]) > max {
		return "", invalid(fmt.Sprintf("query parameter %s: at most %d characters", name, max))
	}
	return raw[0], nil
}

// queryErr maps the read side's errors to problems.
func queryErr(err error, cursorParam string) error {
	switch {
	case errors.Is(err, inbox.ErrNotFound):
		return notFound("no such conversation")
	case errors.Is(err, inbox.ErrBadCursor):
		return invalid("query parameter " + cursorParam + ": malformed cursor; pass next_cursor from the previous page")
	}
	return err
}

func (s *Server) listContacts(c echo.Context) error {
	a := actorOf(c)
	q, err := queryString(c, "q", maxQueryLen)
	if err != nil {
		return err
	}
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	contacts, err := s.Directory.Contacts(c.Request().Context(), a.ClinicID, a.UserID, q, limit)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"contacts": contacts})
}

// listConversations serves the chat list. archived defaults to false (the chat list); with a
// q search and no archived parameter, archived conversations are searched too, which is how the
// "New Chat" search brings an archived chat back.
func (s *Server) listConversations(c echo.Context) error {
	a := actorOf(c)
	var opt inbox.ListOptions
	var err error
	if opt.Q, err = queryString(c, "q", maxQueryLen); err != nil {
		return err
	}
	archived, err := queryString(c, "archived", 5)
	if err != nil {
		return err
	}
	switch archived {
	case "":
		if _, given := c.QueryParams()["archived"]; given {
			return invalid("query parameter archived: must be true or false")
		}
		if opt.Q == "" {
			f := false
			opt.Archived = &f
		}
	case "true", "false":
		v := archived == "true"
		opt.Archived = &v
	default:
		return invalid("query parameter archived: must be true or false")
	}
	if opt.Limit, err = queryLimit(c); err != nil {
		return err
	}
	if opt.Cursor, err = queryString(c, "cursor", 1024); err != nil {
		return err
	}
	page, err := s.Queries.ListConversations(c.Request().Context(), a.ClinicID, a.UserID, opt)
	if err != nil {
		return queryErr(err, "cursor")
	}
	return c.JSON(http.StatusOK, page)
}

func (s *Server) getConversation(c echo.Context) error {
	a := actorOf(c)
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	conv, err := s.Queries.GetConversation(c.Request().Context(), a.ClinicID, a.UserID, id)
	if err != nil {
		return queryErr(err, "")
	}
	return c.JSON(http.StatusOK, conv)
}

func (s *Server) listMessages(c echo.Context) error {
	a := actorOf(c)
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	before, err := queryString(c, "before", 1024)
	if err != nil {
		return err
	}
	limit, err := queryLimit(c)
	if err != nil {
		return err
	}
	page, err := s.Queries.Messages(c.Request().Context(), a.ClinicID, a.UserID, id, before, limit)
	if err != nil {
		return queryErr(err, "before")
	}
	return c.JSON(http.StatusOK, page)
}

func (s *Server) getUrgent(c echo.Context) error {
	a := actorOf(c)
	u, err := s.Queries.Urgent(c.Request().Context(), a.ClinicID, a.UserID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, u)
}

func (s *Server) getReceipts(c echo.Context) error {
	a := actorOf(c)
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	r, err := s.Queries.Receipts(c.Request().Context(), a.ClinicID, a.UserID, id)
	if err != nil {
		return queryErr(err, "")
	}
	return c.JSON(http.StatusOK, r)
}

func (s *Server) getUnread(c echo.Context) error {
	a := actorOf(c)
	u, err := s.Queries.Unread(c.Request().Context(), a.ClinicID, a.UserID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, u)
}
