package api

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/huddle-chat/huddle/inbox"
	"github.com/huddle-chat/huddle/internal/commands"
)

// Commands on one message (API-v1.1 "Clinical messaging") and the commands that answer with
// what the read side shows (rename: the Summary; edit: the Message).

// registerMessageRoutes mounts acknowledge, edit and recall.
func (s *Server) registerMessageRoutes(g *echo.Group) {
	staff := requireRole(RoleStaff)
	g.POST("/conversations/:id/messages/:message_id/ack", s.acknowledgeMessage, staff)
	g.PATCH("/conversations/:id/messages/:message_id", s.editMessage, staff)
	g.DELETE("/conversations/:id/messages/:message_id", s.recallMessage, staff)
}

// messagePath reads the conversation and message ids of a message route.
func messagePath(c echo.Context) (conversationID, messageID string, err error) {
	if conversationID, err = pathID(c, "id"); err != nil {
		return "", "", err
	}
	if messageID, err = pathID(c, "message_id"); err != nil {
		return "", "", err
	}
	return conversationID, messageID, nil
}

func (s *Server) acknowledgeMessage(c echo.Context) error {
	id, msg, err := messagePath(c)
	if err != nil {
		return err
	}
	pos, err := s.Commands.AcknowledgeMessage(c.Request().Context(), commandActor(c), id, msg)
	return noContent(c, pos, err)
}

func (s *Server) recallMessage(c echo.Context) error {
	id, msg, err := messagePath(c)
	if err != nil {
		return err
	}
	pos, err := s.Commands.RecallMessage(c.Request().Context(), commandActor(c), id, msg)
	return noContent(c, pos, err)
}

func (s *Server) editMessage(c echo.Context) error {
	id, msg, err := messagePath(c)
	if err != nil {
		return err
	}
	var in struct {
		Text string `json:"text"`
	}
	if err := s.bindCommand(c, &in); err != nil {
		return err
	}
	edit, err := s.Commands.EditMessage(c.Request().Context(), commandActor(c), id, msg, in.Text)
	if err != nil {
		return err
	}
	if err := s.awaitRead(c, edit.Position); err != nil {
		return err
	}
	m, err := s.readMessage(c, id, msg)
	if err != nil {
		return err
	}
	setPosition(c, edit.Position)
	return c.JSON(http.StatusOK, m)
}

func (s *Server) renameGroup(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var in struct {
		Title string `json:"title"`
	}
	if err := s.bindCommand(c, &in); err != nil {
		return err
	}
	a := commandActor(c)
	pos, err := s.Commands.RenameGroup(c.Request().Context(), a, id, in.Title)
	if err != nil {
		return err
	}
	if err := s.awaitRead(c, pos); err != nil {
		return err
	}
	if s.Queries == nil {
		return errors.New("api: no read side to answer a rename with")
	}
	conv, err := s.Queries.GetConversation(c.Request().Context(), a.ClinicID, a.UserID, id)
	if err != nil {
		return queryErr(err, "")
	}
	setPosition(c, pos)
	return c.JSON(http.StatusOK, conv.Summary)
}

// awaitRead waits until the read models hold the command's position (what a GET with that
// Huddle-Min-Position waits for), for a command that answers with the read side's view.
func (s *Server) awaitRead(c echo.Context, pos commands.Position) error {
	return s.awaitPosition(c, pos, "the change is stored, but the read models have not caught up with it yet; read it again shortly")
}

// readMessage returns one message as the caller's message list shows it.
func (s *Server) readMessage(c echo.Context, conversationID, messageID string) (inbox.Message, error) {
	if s.Queries == nil {
		return inbox.Message{}, errors.New("api: no read side to answer an edit with")
	}
	a := actorOf(c)
	m, err := s.Queries.Message(c.Request().Context(), a.ClinicID, a.UserID, conversationID, messageID)
	if errors.Is(err, inbox.ErrNotFound) {
		return inbox.Message{}, notFound("no such message")
	}
	return m, err
}
