package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/huddle-chat/huddle/commands"
	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/inbox"
)

// registerAdminRoutes mounts the directory endpoints (the group already requires role admin).
func (s *Server) registerAdminRoutes(g *echo.Group) {
	s.registerAdminListRoutes(g) // api/admin_lists.go
	g.PUT("/users/:user_id", s.putUser)
	g.DELETE("/users/:user_id", s.deleteUser)
	g.PUT("/rooms/:room_id", s.putRoom)
	g.PUT("/rooms/:room_id/members/:user_id", s.putRoomMember)
	g.DELETE("/rooms/:room_id/members/:user_id", s.deleteRoomMember)
}

// registerCommandRoutes mounts the staff command endpoints. The role is checked per route, not
// with Group.Use, which would register catch-all routes under /v1 for everyone's paths.
func (s *Server) registerCommandRoutes(g *echo.Group) {
	staff := requireRole(RoleStaff)
	g.POST("/conversations", s.startConversation, staff)
	g.PATCH("/conversations/:id", s.renameGroup, staff)
	g.DELETE("/conversations/:id", s.deleteGroup, staff)
	g.POST("/conversations/:id/messages", s.sendMessage, staff)
	g.POST("/conversations/:id/files", s.shareFile, staff)
	g.POST("/conversations/:id/participants", s.addParticipant, staff)
	g.DELETE("/conversations/:id/participants/:user_id", s.removeParticipant, staff)
	g.POST("/conversations/:id/leave", s.leaveGroup, staff)
	g.PUT("/conversations/:id/mute", s.memberCommand((*commands.Handler).Mute), staff)
	g.DELETE("/conversations/:id/mute", s.memberCommand((*commands.Handler).Unmute), staff)
	g.PUT("/conversations/:id/archive", s.memberCommand((*commands.Handler).Archive), staff)
	g.DELETE("/conversations/:id/archive", s.memberCommand((*commands.Handler).Unarchive), staff)
	g.POST("/conversations/:id/read", s.markRead, staff)
	g.GET("/files/:file_id", s.downloadFile, staff)
	s.registerMessageRoutes(g) // api/messages.go
}

// commandActor is the caller as the command handler sees them; the request id correlates every
// event this request causes.
func commandActor(c echo.Context) commands.Actor {
	a := actorOf(c)
	return commands.Actor{UserID: a.UserID, ClinicID: a.ClinicID, CorrelationID: c.Response().Header().Get(echo.HeaderXRequestID)}
}

// bindCommand bounds the body to MaxBodyBytes and decodes it strictly.
func (s *Server) bindCommand(c echo.Context, v any) error {
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, s.MaxBodyBytes)
	return bindJSON(c, v)
}

// setPosition sets Huddle-Position, which every successful command answers with.
func setPosition(c echo.Context, p commands.Position) {
	if p.StreamID != "" && p.Version > 0 {
		c.Response().Header().Set(headerPosition, encodePosition(c, p))
	}
}

func noContent(c echo.Context, p commands.Position, err error) error {
	if err != nil {
		return err
	}
	setPosition(c, p)
	return c.NoContent(http.StatusNoContent)
}

// ---- Directory ----

type userInputBody struct {
	Name  string `json:"name"`
	Email string `json:"email"`
	Title string `json:"title,omitempty"`
}

type userBody struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Email  string `json:"email"`
	Title  string `json:"title,omitempty"`
	Active bool   `json:"active"`
}

func (s *Server) putUser(c echo.Context) error {
	id, err := directoryPathID(c, "user_id")
	if err != nil {
		return err
	}
	var in userInputBody
	if err := s.bindCommand(c, &in); err != nil {
		return err
	}
	u, pos, err := s.Commands.SetUser(c.Request().Context(), commandActor(c), id, in.Name, in.Email, in.Title)
	if err != nil {
		return err
	}
	setPosition(c, pos)
	return c.JSON(http.StatusOK, userBody{ID: u.ID, Name: u.Name, Email: u.Email, Title: u.Title, Active: u.Active})
}

func (s *Server) deleteUser(c echo.Context) error {
	id, err := pathID(c, "user_id")
	if err != nil {
		return err
	}
	pos, err := s.Commands.DeactivateUser(c.Request().Context(), commandActor(c), id)
	return noContent(c, pos, err)
}

type roomBody struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name"`
}

func (s *Server) putRoom(c echo.Context) error {
	id, err := directoryPathID(c, "room_id")
	if err != nil {
		return err
	}
	var in struct {
		Name string `json:"name"`
	}
	if err := s.bindCommand(c, &in); err != nil {
		return err
	}
	r, pos, err := s.Commands.NameRoom(c.Request().Context(), commandActor(c), id, in.Name)
	if err != nil {
		return err
	}
	setPosition(c, pos)
	return c.JSON(http.StatusOK, roomBody{ID: r.ID, Name: r.Name})
}

func (s *Server) roomMember(c echo.Context, run func(h *commands.Handler, c echo.Context, a commands.Actor, room, user string) (commands.Position, error)) error {
	room, err := directoryPathID(c, "room_id")
	if err != nil {
		return err
	}
	user, err := directoryPathID(c, "user_id")
	if err != nil {
		return err
	}
	pos, err := run(s.Commands, c, commandActor(c), room, user)
	return noContent(c, pos, err)
}

func (s *Server) putRoomMember(c echo.Context) error {
	return s.roomMember(c, func(h *commands.Handler, c echo.Context, a commands.Actor, room, user string) (commands.Position, error) {
		return h.AddRoomMember(c.Request().Context(), a, room, user)
	})
}

func (s *Server) deleteRoomMember(c echo.Context) error {
	return s.roomMember(c, func(h *commands.Handler, c echo.Context, a commands.Actor, room, user string) (commands.Position, error) {
		return h.RemoveRoomMember(c.Request().Context(), a, room, user)
	})
}

// ---- Conversations ----

type startConversationBody struct {
	ParticipantIDs []string `json:"participant_ids"`
	Title          *string  `json:"title,omitempty"`
}

type personBody struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type startedConversationBody struct {
	ID           string       `json:"id"`
	Kind         string       `json:"kind"`
	Title        string       `json:"title"`
	OwnerID      *string      `json:"owner_id"`
	Participants []personBody `json:"participants"`
}

func (s *Server) startConversation(c echo.Context) error {
	var in startConversationBody
	if err := s.bindCommand(c, &in); err != nil {
		return err
	}
	if len(in.ParticipantIDs) == 0 || len(in.ParticipantIDs) > domain.MaxParticipants {
		return invalid("participant_ids: name 1 to 256 people")
	}
	for _, id := range in.ParticipantIDs {
		if !validID(id) {
			return invalid("participant_ids: malformed id " + strconv.Quote(id))
		}
	}
	conv, err := s.Commands.StartConversation(c.Request().Context(), commandActor(c), in.ParticipantIDs, in.Title)
	if err != nil {
		return err
	}
	out := startedConversationBody{ID: conv.ID, Kind: conv.Kind, Title: conv.Title, Participants: []personBody{}}
	if conv.OwnerID != "" {
		out.OwnerID = &conv.OwnerID
	}
	refs := make([]inbox.ParticipantRef, 0, len(conv.Participants))
	for _, p := range conv.Participants {
		out.Participants = append(out.Participants, personBody{ID: p.ID, Name: p.Name})
		refs = append(refs, inbox.ParticipantRef{ID: p.ID, Name: p.Name})
	}
	if conv.Kind == domain.KindGroup && conv.Title == "" {
		out.Title = inbox.UntitledTitle(refs, actorOf(c).UserID)
	}
	setPosition(c, conv.Position)
	status := http.StatusOK
	if conv.Created {
		status = http.StatusCreated
	}
	return c.JSON(status, out)
}

func (s *Server) deleteGroup(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	pos, err := s.Commands.DeleteGroup(c.Request().Context(), commandActor(c), id)
	return noContent(c, pos, err)
}

func (s *Server) leaveGroup(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	pos, err := s.Commands.LeaveGroup(c.Request().Context(), commandActor(c), id)
	return noContent(c, pos, err)
}

func (s *Server) addParticipant(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var in struct {
		UserID string `json:"user_id"`
	}
	if err := s.bindCommand(c, &in); err != nil {
		return err
	}
	if !validID(in.UserID) {
		return invalid("user_id: malformed id " + strconv.Quote(in.UserID))
	}
	pos, err := s.Commands.AddParticipant(c.Request().Context(), commandActor(c), id, in.UserID)
	return noContent(c, pos, err)
}

func (s *Server) removeParticipant(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	user, err := pathID(c, "user_id")
	if err != nil {
		return err
	}
	pos, err := s.Commands.RemoveParticipant(c.Request().Context(), commandActor(c), id, user)
	return noContent(c, pos, err)
}

func (s *Server) memberCommand(run func(*commands.Handler, context.Context, commands.Actor, string) (commands.Position, error)) echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := pathID(c, "id")
		if err != nil {
			return err
		}
		pos, err := run(s.Commands, c.Request().Context(), commandActor(c), id)
		return noContent(c, pos, err)
	}
}

func (s *Server) markRead(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var in struct {
		UpToMessageID string `json:"up_to_message_id,omitempty"`
	}
	// The body is optional: none (or an empty one) means "everything". It is read whole (it is
	// bounded by MaxBodyBytes) because a chunked request gives no length to go by.
	r := c.Request()
	raw, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, s.MaxBodyBytes))
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return problem(http.StatusRequestEntityTooLarge, "request_too_large", "Request Entity Too Large", "request body is over the limit")
	}
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if len(bytes.TrimSpace(raw)) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(raw))
		if err := bindJSON(c, &in); err != nil {
			return err
		}
		if in.UpToMessageID != "" && !validID(in.UpToMessageID) {
			return invalid("up_to_message_id: malformed id")
		}
	}
	pos, err := s.Commands.MarkRead(c.Request().Context(), commandActor(c), id, in.UpToMessageID)
	return noContent(c, pos, err)
}

// ---- Messages and files ----

type sentMessageBody struct {
	ID       string        `json:"id"`
	SenderID string        `json:"sender_id"`
	Kind     string        `json:"kind"`
	Priority string        `json:"priority"`
	Text     string        `json:"text"`
	File     *sentFileBody `json:"file,omitempty"`
	SentAt   string        `json:"sent_at"`
}

type sentFileBody struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
	SHA256      string `json:"sha256"`
}

func sentMessage(c echo.Context, m commands.Message) error {
	out := sentMessageBody{ID: m.ID, SenderID: m.SenderID, Kind: m.Kind, Priority: m.Priority, Text: m.Text,
		SentAt: m.SentAt.UTC().Format(time.RFC3339Nano)}
	if m.File != nil {
		out.File = &sentFileBody{ID: m.File.ID, Name: m.File.Name, Size: m.File.Size, ContentType: m.File.ContentType, SHA256: m.File.SHA256}
	}
	setPosition(c, m.Position)
	return c.JSON(http.StatusCreated, out)
}

func (s *Server) sendMessage(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	var in struct {
		Text            string `json:"text"`
		ClientMessageID string `json:"client_message_id,omitempty"`
		Priority        string `json:"priority,omitempty"`
	}
	if err := s.bindCommand(c, &in); err != nil {
		return err
	}
	if in.ClientMessageID != "" && !validID(in.ClientMessageID) {
		return invalid("client_message_id: malformed id (1..128 of A-Z a-z 0-9 . _ : @ -)")
	}
	m, err := s.Commands.Send(c.Request().Context(), commandActor(c), id,
		commands.Send{Text: in.Text, ClientMessageID: in.ClientMessageID, Priority: in.Priority})
	if err != nil {
		return err
	}
	return sentMessage(c, m)
}

// multipartOverhead is what a multipart envelope may add to the file itself (headers,
// boundaries, a client_message_id field).
const multipartOverhead = 64 << 10

// shareFile streams the multipart part `file` straight into the blob store: the upload is
// never buffered whole in memory or on disk. A `client_message_id` field, when sent before
// the file part, makes the upload idempotent like a text message.
func (s *Server) shareFile(c echo.Context) error {
	id, err := pathID(c, "id")
	if err != nil {
		return err
	}
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, s.MaxFileBytes+multipartOverhead)
	mr, err := r.MultipartReader()
	if err != nil {
		return invalid("expected a multipart/form-data body with a file field")
	}
	clientMessageID := ""
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return invalid("multipart body has no file field")
		}
		if err != nil {
			return bodyError(err)
		}
		switch part.FormName() {
		case "client_message_id":
			raw, err := io.ReadAll(io.LimitReader(part, 256))
			if err != nil {
				return bodyError(err)
			}
			clientMessageID = string(raw)
			if !validID(clientMessageID) {
				return invalid("client_message_id: malformed id")
			}
		case "file":
			body := &bodyReader{r: part}
			m, err := s.Commands.ShareFile(r.Context(), commandActor(c), id, part.FileName(), clientMessageID, body)
			if err != nil {
				if body.err != nil {
					// The upload failed because the request body did: the client's fault.
					return bodyError(body.err)
				}
				return uploadError(err)
			}
			return sentMessage(c, m)
		}
		_ = part.Close()
	}
}

// bodyReader remembers the first error reading the request body gave, so a failed upload can
// be blamed on the body (malformed multipart, over the limit, cut short) rather than on us.
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && b.err == nil {
		b.err = err
	}
	return n, err
}

// bodyError maps an error reading the multipart body: over the limit is 413 file_too_large,
// anything else a malformed body (400).
func bodyError(err error) error {
	if p := uploadError(err); p != err {
		return p
	}
	return invalid("malformed multipart body: " + err.Error())
}

// uploadError maps a body that outgrew http.MaxBytesReader to file_too_large; other errors
// pass through to the error handler.
func uploadError(err error) error {
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return problem(http.StatusRequestEntityTooLarge, domain.CodeFileTooLarge, "Request Entity Too Large", "the file is larger than the limit")
	}
	return err
}

func (s *Server) downloadFile(c echo.Context) error {
	id, err := pathID(c, "file_id")
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	info, err := s.Commands.OpenFile(ctx, commandActor(c), id)
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, info.ContentType)
	h.Set(echo.HeaderContentLength, strconv.FormatInt(info.Size, 10))
	disposition := mime.FormatMediaType("attachment", map[string]string{"filename": info.Name})
	if disposition == "" {
		disposition = "attachment"
	}
	h.Set(echo.HeaderContentDisposition, disposition)
	// Served bytes are whatever a colleague uploaded: never let a browser sniff or run them.
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	h.Set("Cache-Control", "private, no-store")
	h.Set("ETag", `"`+info.SHA256+`"`)
	c.Response().WriteHeader(http.StatusOK)
	if c.Request().Method == http.MethodHead {
		return nil
	}
	if _, err := s.Commands.CopyFile(ctx, info, c.Response()); err != nil {
		// The status line is out; all we can do is log and cut the response short.
		s.Logger.Error("file download failed", "file_id", id, "err", err)
	}
	return nil
}
