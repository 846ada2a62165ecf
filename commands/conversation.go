package commands

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/blobs"
)

// Conversation is what POST /conversations answers: the conversation started or continued.
type Conversation struct {
	ID           string
	Kind         string
	Title        string
	OwnerID      string
	Participants []Person
	// Created is true when this request started it (201), false when it continued an existing
	// direct chat (200).
	Created  bool
	Position Position
}

// Person is a participant as the directory names them.
type Person struct {
	ID   string
	Name string
}

// Message is a message as the API shows it right after sending.
type Message struct {
	ID             string
	ConversationID string
	SenderID       string
	Kind           string // "text" or "file"
	Priority       string // domain.PriorityNormal or domain.PriorityUrgent
	Text           string
	File           *File
	SentAt         time.Time
	Position       Position
}

// File describes a shared file.
type File struct {
	ID          string
	Name        string
	Size        int64
	ContentType string
	SHA256      string
}

// runConversation runs one command on a conversation of the actor's clinic through the
// conversation's sequencer. decide gets the state (already checked against the clinic) and
// the directory. mayRepeat says commandID comes from the client's idempotency key.
func (h *Handler) runConversation(ctx context.Context, a Actor, id, commandID string, mayRepeat bool, dir domain.Directory,
	cmd domain.ConversationCommand) (eventstore.AppendResult, domain.Conversation, error) {
	if !domain.ValidID(id) {
		return eventstore.AppendResult{}, domain.Conversation{}, notFound()
	}
	// seen is written by the stream's drain goroutine and read here after Execute returns,
	// which its channel hand-off orders; the last call is the one the outcome came from.
	var seen domain.Conversation
	res, err := h.conversations.Execute(ctx, domain.ConversationStream(id), eventstore.Command[domain.Conversation]{
		ID: commandID, MayRepeat: mayRepeat,
		Decide: func(c domain.Conversation, _ int64) ([]eventstore.EventData, error) {
			if !inClinic(c, a) {
				return nil, notFound()
			}
			seen = c
			events, err := domain.DecideConversation(c, dir, cmd)
			if err != nil {
				return nil, err
			}
			return h.encode(a, commandID, events)
		},
	})
	if err != nil && domain.ErrorCode(err) == "" {
		// Maybe no answer from the stream (the deadline passed first): seen is not ours to read.
		return res, domain.Conversation{}, busy(err)
	}
	return res, seen, err
}

// runWithDirectory is runConversation with the clinic's directory, checked once more against
// the store when the command is refused: another instance may have changed the directory
// (added someone to a waiting room) within the cache's DirectoryMaxAge.
func (h *Handler) runWithDirectory(ctx context.Context, a Actor, id, commandID string, mayRepeat bool,
	cmd domain.ConversationCommand) (eventstore.AppendResult, domain.Conversation, domain.Directory, error) {
	dir, err := h.loadDirectory(ctx, a.ClinicID)
	if err != nil {
		return eventstore.AppendResult{}, domain.Conversation{}, dir, busy(err)
	}
	res, conv, err := h.runConversation(ctx, a, id, commandID, mayRepeat, dir, cmd)
	if domain.ErrorCode(err) == "" || domain.ErrorCode(err) == domain.CodeBusy {
		return res, conv, dir, err
	}
	fresh, changed, rerr := h.directories.Recheck(ctx, a.ClinicID)
	if rerr != nil || !changed {
		return res, conv, dir, err
	}
	res, conv, err = h.runConversation(ctx, a, id, commandID, mayRepeat, fresh, cmd)
	return res, conv, fresh, err
}

// StartConversation implements POST /conversations: the direct chat with one other person
// (started, or continued and unarchived for the caller), or a new group owned by the caller.
func (h *Handler) StartConversation(ctx context.Context, a Actor, participantIDs []string, title *string) (Conversation, error) {
	others := domain.NormalizeParticipants(a.UserID, participantIDs)
	if len(others) == 0 {
		return Conversation{}, &domain.Error{Code: domain.CodeInvalid, Message: "participant_ids: name at least one other person"}
	}
	if domain.IsDirectRequest(others, title) {
		return h.startDirect(ctx, a, others[0])
	}
	t := ""
	if title != nil {
		t = *title
	}
	id := "g-" + h.opts.NewID()
	commandID := h.opts.NewID()
	res, _, dir, err := h.runWithDirectory(ctx, a, id, commandID, false,
		domain.StartGroup{ConversationID: id, Creator: a.UserID, Title: t, ParticipantIDs: others})
	if err != nil {
		return Conversation{}, err
	}
	out := Conversation{ID: id, Kind: domain.KindGroup, Created: true, Position: positionOf(res, Position{})}
	for _, e := range res.Events {
		ev, ok, err := decode(e)
		if err != nil {
			return Conversation{}, err
		}
		if started, isStart := ev.(domain.ConversationStarted); ok && isStart {
			out.Title, out.OwnerID, out.Participants = started.Title, started.OwnerID, people(dir, started.ParticipantIDs)
		}
	}
	return out, nil
}

func (h *Handler) startDirect(ctx context.Context, a Actor, other string) (Conversation, error) {
	id := domain.DirectConversationID(a.ClinicID, a.UserID, other)
	// Two people opening the same chat at once are sequenced on its stream: the second finds
	// the chat and continues it.
	res, conv, dir, err := h.runWithDirectory(ctx, a, id, h.opts.NewID(), false,
		domain.StartDirect{ConversationID: id, Me: a.UserID, Other: other})
	if err != nil {
		return Conversation{}, err
	}
	created := !res.Duplicate && len(res.Events) > 0
	pair := []string{a.UserID, other}
	if pair[1] < pair[0] {
		pair[0], pair[1] = pair[1], pair[0]
	}
	out := Conversation{ID: id, Kind: domain.KindDirect, Participants: people(dir, pair), Created: created,
		Position: positionOf(res, Position{})}
	if created {
		return out, nil
	}
	// Continuing it brings it back to the caller's chat list.
	mres, err := h.runMember(ctx, a, conv, domain.Unarchive{UserID: a.UserID})
	if err != nil {
		return Conversation{}, err
	}
	if len(mres.Events) > 0 {
		out.Position = positionOf(mres, out.Position)
	}
	return out, nil
}

func people(dir domain.Directory, ids []string) []Person {
	out := make([]Person, 0, len(ids))
	for _, id := range ids {
		out = append(out, Person{ID: id, Name: dir.Users[id].Name})
	}
	return out
}

// SendMessage posts a normal text message (see Send).
func (h *Handler) SendMessage(ctx context.Context, a Actor, conversationID, text, clientMessageID string) (Message, error) {
	return h.Send(ctx, a, conversationID, Send{Text: text, ClientMessageID: clientMessageID})
}

// Send is a text message to post: its text, the client's idempotency key (optional) and its
// priority ("" or "normal", or "urgent").
type Send struct {
	Text, ClientMessageID, Priority string
}

// Send posts a text message. With a ClientMessageID, repeating the request returns the message
// sent the first time and posts nothing; a repeat with other text or another priority is a
// conflict.
func (h *Handler) Send(ctx context.Context, a Actor, conversationID string, in Send) (Message, error) {
	res, _, _, err := h.runWithDirectory(ctx, a, conversationID, h.messageCommandID(a, conversationID, in.ClientMessageID),
		in.ClientMessageID != "", domain.SendMessage{SenderID: a.UserID, Text: in.Text, ClientMessageID: in.ClientMessageID,
			Priority: in.Priority})
	if err != nil {
		return Message{}, err
	}
	m, err := messageOf(conversationID, res)
	if err != nil {
		return Message{}, err
	}
	want := in.Priority
	if want == "" {
		want = domain.PriorityNormal
	}
	if res.Duplicate && (m.Kind != "text" || m.Text != in.Text || m.Priority != want) {
		return Message{}, reusedClientMessageID(in.ClientMessageID)
	}
	return m, nil
}

// reusedClientMessageID refuses a repeat whose content differs from the first run's: the id
// is the same, the command is not (API-v1.1: 409 conflict).
func reusedClientMessageID(id string) error {
	return &domain.Error{Code: domain.CodeConflict,
		Message: fmt.Sprintf("client_message_id %q was already used for a different message", id)}
}

func (h *Handler) messageCommandID(a Actor, conversationID, clientMessageID string) string {
	if clientMessageID == "" {
		return h.opts.NewID()
	}
	return deterministicID("msg", a.ClinicID, a.UserID, conversationID, clientMessageID)
}

// messageOf builds the API's message from an append result (for a repeated command: the first
// run's events).
func messageOf(conversationID string, res eventstore.AppendResult) (Message, error) {
	for _, e := range res.Events {
		ev, ok, err := decode(e)
		if err != nil {
			return Message{}, err
		}
		if !ok {
			continue
		}
		pos := positionOf(res, Position{})
		switch m := ev.(type) {
		case domain.MessageSent:
			priority := domain.PriorityNormal
			if m.Urgent() {
				priority = domain.PriorityUrgent
			}
			return Message{ID: m.MessageID, ConversationID: conversationID, SenderID: m.SenderID, Kind: "text",
				Priority: priority, Text: m.Text, SentAt: e.RecordedAt, Position: pos}, nil
		case domain.FileShared:
			return Message{ID: m.MessageID, ConversationID: conversationID, SenderID: m.SenderID, Kind: "file",
				Priority: domain.PriorityNormal,
				File:     &File{ID: m.FileID, Name: m.Name, Size: m.Size, ContentType: m.ContentType, SHA256: m.SHA256},
				SentAt:   e.RecordedAt, Position: pos}, nil
		}
	}
	return Message{}, fmt.Errorf("append to %s: no message among the events written", res.StreamID)
}

// ShareFile streams a file into the blob store and posts it as a file message. The
// conversation is checked before a byte is stored, so a refused sender never uploads 25 MiB
// for nothing; the size limit is checked while streaming (file_too_large). After the append
// the blob is marked with its FileShared event's version, which is what downloads check.
func (h *Handler) ShareFile(ctx context.Context, a Actor, conversationID, name, clientMessageID string, r io.Reader) (Message, error) {
	dir, err := h.loadDirectory(ctx, a.ClinicID)
	if err != nil {
		return Message{}, err
	}
	probe := domain.ShareFile{SenderID: a.UserID, FileID: "probe", Name: "probe", ContentType: "application/octet-stream",
		SHA256: strings.Repeat("0", 64), ClientMessageID: clientMessageID}
	if err := h.check(ctx, a, conversationID, func(conv domain.Conversation) error {
		_, err := domain.DecideConversation(conv, dir, probe)
		return err
	}); err != nil {
		return Message{}, err
	}
	fileID := h.opts.NewID()
	info, err := h.blobs.Put(ctx, blobs.Upload{ID: fileID, ClinicID: a.ClinicID, ConversationID: conversationID,
		UploaderID: a.UserID, Name: name, MaxBytes: h.opts.MaxFileBytes}, r)
	if err != nil {
		return Message{}, err
	}
	res, _, _, err := h.runWithDirectory(ctx, a, conversationID, h.messageCommandID(a, conversationID, clientMessageID), clientMessageID != "",
		domain.ShareFile{SenderID: a.UserID, FileID: info.ID, Name: info.Name, Size: info.Size,
			ContentType: info.ContentType, SHA256: info.SHA256, ClientMessageID: clientMessageID})
	// The request may be gone by now; what follows must still happen.
	bg := context.WithoutCancel(ctx)
	if domain.ErrorCode(err) != "" || (err == nil && res.Duplicate) {
		// Refused (nothing was appended), or a repeat of a file message already sent (whose
		// own file is the one shared): this upload is not needed. After any other error the
		// append may have committed; SweepUnshared settles the blob from the store.
		if derr := h.blobs.Delete(bg, a.ClinicID, fileID); derr != nil && err == nil {
			err = derr
		}
	}
	if err != nil {
		return Message{}, err
	}
	m, err := messageOf(conversationID, res)
	if err != nil {
		return Message{}, err
	}
	h.markShared(bg, a.ClinicID, res)
	if res.Duplicate && (m.File == nil || m.File.SHA256 != info.SHA256 || m.File.Name != info.Name) {
		return Message{}, reusedClientMessageID(clientMessageID)
	}
	return m, nil
}

// markShared marks the file of the FileShared event in res (for a repeat: the first run's
// file, in case that run stopped before marking). The message is sent whatever happens here:
// a blob left unmarked is marked by its first download or by SweepUnshared, so a failure is
// only logged. A blob that is gone was swept while its append was in flight, which the sweep's
// grace period exists to prevent: logged as an error.
func (h *Handler) markShared(ctx context.Context, clinicID string, res eventstore.AppendResult) {
	for _, e := range res.Events {
		ev, ok, err := decode(e)
		shared, isFile := ev.(domain.FileShared)
		if err != nil || !ok || !isFile {
			continue
		}
		err = h.blobs.MarkShared(ctx, clinicID, shared.FileID, e.StreamVersion)
		switch {
		case domain.ErrorCode(err) == domain.CodeNotFound:
			h.opts.Log.Error("shared file has no bytes: swept before its append finished",
				"file_id", shared.FileID, "stream", e.StreamID, "version", e.StreamVersion)
		case err != nil:
			h.opts.Log.Warn("mark file shared", "file_id", shared.FileID, "err", err)
		}
	}
}

// simple runs a conversation command that answers only with a position.
func (h *Handler) simple(ctx context.Context, a Actor, conversationID string, cmd domain.ConversationCommand) (Position, error) {
	res, _, _, err := h.runWithDirectory(ctx, a, conversationID, h.opts.NewID(), false, cmd)
	if err != nil {
		return Position{}, err
	}
	return positionOf(res, Position{StreamID: domain.ConversationStream(conversationID)}), nil
}

// RenameGroup gives a group a new title.
func (h *Handler) RenameGroup(ctx context.Context, a Actor, conversationID, title string) (Position, error) {
	return h.simple(ctx, a, conversationID, domain.RenameGroup{ActorID: a.UserID, Title: title})
}

// AddParticipant adds (or restores) a member of a group.
func (h *Handler) AddParticipant(ctx context.Context, a Actor, conversationID, userID string) (Position, error) {
	return h.simple(ctx, a, conversationID, domain.AddParticipant{ActorID: a.UserID, UserID: userID})
}

// RemoveParticipant removes another member from a group.
func (h *Handler) RemoveParticipant(ctx context.Context, a Actor, conversationID, userID string) (Position, error) {
	return h.simple(ctx, a, conversationID, domain.RemoveParticipant{ActorID: a.UserID, UserID: userID})
}

// LeaveGroup takes the caller out of a group (passing ownership on if they owned it).
func (h *Handler) LeaveGroup(ctx context.Context, a Actor, conversationID string) (Position, error) {
	return h.simple(ctx, a, conversationID, domain.LeaveGroup{ActorID: a.UserID})
}

// DeleteGroup deletes a group for every member.
func (h *Handler) DeleteGroup(ctx context.Context, a Actor, conversationID string) (Position, error) {
	return h.simple(ctx, a, conversationID, domain.DeleteGroup{ActorID: a.UserID})
}

// OpenFile returns a file's description if the caller can see the message that shared it: the
// file's conversation is of their clinic, not deleted, the FileShared event falls inside one
// of their membership windows, and the message was not recalled. Anything else (including bytes no message shares) is
// not_found. The event's version comes from the blob's mark, or from the store when the
// process that shared it stopped before marking.
func (h *Handler) OpenFile(ctx context.Context, a Actor, fileID string) (blobs.Info, error) {
	gone := &domain.Error{Code: domain.CodeNotFound, Message: "no such file"}
	if !domain.ValidID(fileID) {
		return blobs.Info{}, gone
	}
	info, err := h.blobs.Stat(ctx, a.ClinicID, fileID)
	if err != nil {
		return blobs.Info{}, err
	}
	conv, err := h.loadConversation(ctx, a, info.ConversationID, true)
	if err != nil {
		if domain.ErrorCode(err) == domain.CodeNotFound {
			return blobs.Info{}, gone
		}
		return blobs.Info{}, err
	}
	version, err := h.blobs.Confirm(ctx, info)
	if err != nil {
		return blobs.Info{}, err
	}
	// A recalled file is gone for members too (API-v1.1); auditors keep its description in the
	// events.
	if version == 0 || !conv.CanSee(a.UserID, version) || conv.IsRecalled(version) {
		return blobs.Info{}, gone
	}
	return info, nil
}

// CopyFile writes the bytes of a file OpenFile returned to w, chunk by chunk.
func (h *Handler) CopyFile(ctx context.Context, info blobs.Info, w io.Writer) (int64, error) {
	return h.blobs.WriteTo(ctx, info.ClinicID, info.ID, w)
}
