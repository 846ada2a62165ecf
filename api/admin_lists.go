package api

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/huddle-chat/huddle/directory"
)

// registerAdminListRoutes mounts the directory lists of API v1.1 (the group already requires
// role admin): what administrators created, paged like every other list.
func (s *Server) registerAdminListRoutes(g *echo.Group) {
	g.GET("/users", s.listUsers, s.awaitMinPosition)
	g.GET("/rooms", s.listRooms, s.awaitMinPosition)
	g.GET("/rooms/:room_id/members", s.listRoomMembers, s.awaitMinPosition)
}

// pageParams reads ?limit= and ?cursor=.
func pageParams(c echo.Context) (limit int, cursor string, err error) {
	if limit, err = queryLimit(c); err != nil {
		return 0, "", err
	}
	cursor, err = queryString(c, "cursor", 1024)
	return limit, cursor, err
}

// directoryErr maps the lists' errors to problems.
func directoryErr(err error) error {
	switch {
	case errors.Is(err, directory.ErrNotFound):
		return notFound("no such room")
	case errors.Is(err, directory.ErrBadCursor):
		return invalid("query parameter cursor: malformed cursor; pass next_cursor from the previous page")
	}
	return err
}

// listPage is the JSON of a page: the list under its name, next_cursor absent on the last.
func listPage[T any](c echo.Context, name string, p directory.Page[T]) error {
	body := map[string]any{name: p.Items}
	if p.NextCursor != "" {
		body["next_cursor"] = p.NextCursor
	}
	return c.JSON(http.StatusOK, body)
}

func (s *Server) listUsers(c echo.Context) error {
	q, err := queryString(c, "q", maxQueryLen)
	if err != nil {
		return err
	}
	limit, cursor, err := pageParams(c)
	if err != nil {
		return err
	}
	p, err := s.Directory.Users(c.Request().Context(), actorOf(c).ClinicID, q, limit, cursor)
	if err != nil {
		return directoryErr(err)
	}
	return listPage(c, "users", p)
}

func (s *Server) listRooms(c echo.Context) error {
	limit, cursor, err := pageParams(c)
	if err != nil {
		return err
	}
	p, err := s.Directory.Rooms(c.Request().Context(), actorOf(c).ClinicID, limit, cursor)
	if err != nil {
		return directoryErr(err)
	}
	return listPage(c, "rooms", p)
}

func (s *Server) listRoomMembers(c echo.Context) error {
	room, err := pathID(c, "room_id")
	if err != nil {
		return err
	}
	limit, cursor, err := pageParams(c)
	if err != nil {
		return err
	}
	p, err := s.Directory.Members(c.Request().Context(), actorOf(c).ClinicID, room, limit, cursor)
	if err != nil {
		return directoryErr(err)
	}
	return listPage(c, "members", p)
}
