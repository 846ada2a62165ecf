package inbox

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/huddle-chat/huddle/directory"
	"github.com/huddle-chat/huddle/domain"
)

// Errors the queries return; the API maps them to 404 and 400.
var (
	// ErrNotFound: the caller never took part in the conversation, it was deleted, or the
	// message is not one the caller can see.
	ErrNotFound = errors.New("not found")
	// ErrBadCursor: a pagination cursor this server did not issue.
	ErrBadCursor = errors.New("malformed cursor")
)

// MaxLimit bounds every page; DefaultLimit is used when the caller gives none.
const (
	MaxLimit     = 100
	DefaultLimit = 20
)

// Queries answers the inbox side of API.md (conversations, messages, unread) from the read model.
type Queries struct{ pool db }

// db is a pool or, for the live feed built inside an applying transaction, that transaction.
type db interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// NewQueries returns the read-side queries over pool.
func NewQueries(pool *pgxpool.Pool) *Queries { return &Queries{pool: pool} }

// ParticipantRef is a participant as a conversation summary lists them.
type ParticipantRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Participant is a participant as the conversation details list them.
type Participant struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
	Role  string `json:"role"`
	// State is active, left or removed (details list everyone who took part).
	State string `json:"state"`
}

// LastMessage is a summary's preview of the latest message the caller can see.
type LastMessage struct {
	ID       string    `json:"id"`
	SenderID string    `json:"sender_id"`
	Preview  string    `json:"preview"`
	SentAt   time.Time `json:"sent_at"`
}

// Summary is one conversation as the caller's chat list shows it.
type Summary struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Title is the group's title; for a direct chat, the other person's name.
	Title string `json:"title"`
	// OwnerID is null for direct chats.
	OwnerID        *string          `json:"owner_id"`
	Participants   []ParticipantRef `json:"participants"`
	LastMessage    *LastMessage     `json:"last_message"`
	LastActivityAt time.Time        `json:"last_activity_at"`
	UnreadCount    int              `json:"unread_count"`
	Muted          bool             `json:"muted"`
	Archived       bool             `json:"archived"`
	Membership     string           `json:"membership"`
	CanSend        bool             `json:"can_send"`
}

// Conversation is a summary with full participant details.
type Conversation struct {
	Summary
	Participants []Participant `json:"participants"`
}

// ConversationPage is one page of the chat list.
type ConversationPage struct {
	Conversations []Summary `json:"conversations"`
	NextCursor    string    `json:"next_cursor,omitempty"`
}

// FileRef describes a shared file; the bytes are served by GET /v1/files/{id}.
type FileRef struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
	SHA256      string `json:"sha256"`
}

// SystemInfo describes what a system message records.
type SystemInfo struct {
	Event     string `json:"event"`
	ActorID   string `json:"actor_id"`
	SubjectID string `json:"subject_id"`
}

// Message is one message of a conversation.
type Message struct {
	ID       string      `json:"id"`
	SenderID string      `json:"sender_id"`
	Kind     string      `json:"kind"`
	Text     string      `json:"text"`
	File     *FileRef    `json:"file,omitempty"`
	System   *SystemInfo `json:"system,omitempty"`
	SentAt   time.Time   `json:"sent_at"`
	Priority string      `json:"priority"`
	// EditedAt is the time of the latest edit (the text is that edit's).
	EditedAt *time.Time `json:"edited_at,omitempty"`
	// Recalled: the message keeps its place, without its text or file.
	Recalled bool `json:"recalled,omitempty"`
	// Acks is set on urgent messages.
	Acks *Acks `json:"acks,omitempty"`
	// Version is the message's position in its conversation (not part of the JSON).
	Version int64 `json:"-"`
}

// Acks is who acknowledged an urgent message and who still has to (pendingExpr).
type Acks struct {
	Acked   []Ack    `json:"acked"`
	Pending []string `json:"pending"`
}

// Ack is one acknowledgement.
type Ack struct {
	UserID string    `json:"user_id"`
	At     time.Time `json:"at"`
}

// UrgentMessage is a message of the urgent list: a Message plus its conversation.
type UrgentMessage struct {
	Message
	ConversationID string `json:"conversation_id"`
}

// UrgentList is the body of GET /v1/urgent.
type UrgentList struct {
	Messages []UrgentMessage `json:"messages"`
}

// Receipt is one member's read marker: the latest message at or before it that they can see,
// and when they moved it (nulls: they have read nothing).
type Receipt struct {
	UserID            string     `json:"user_id"`
	LastReadMessageID *string    `json:"last_read_message_id"`
	ReadAt            *time.Time `json:"read_at"`
}

// Receipts is the body of GET /v1/conversations/{id}/receipts.
type Receipts struct {
	Receipts []Receipt `json:"receipts"`
}

// MessagePage is one page of messages, oldest first.
type MessagePage struct {
	Messages   []Message `json:"messages"`
	NextCursor string    `json:"next_cursor,omitempty"`
}

// UnreadConversation is one conversation with unread messages.
type UnreadConversation struct {
	ID          string `json:"id"`
	UnreadCount int    `json:"unread_count"`
	Muted       bool   `json:"muted"`
}

// Unread is the body of GET /v1/unread.
type Unread struct {
	Total               int                  `json:"total"`
	TotalIncludingMuted int                  `json:"total_including_muted"`
	Conversations       []UnreadConversation `json:"conversations"`
}

func clampLimit(limit int) int {
	if limit <= 0 {
		return DefaultLimit
	}
	return min(limit, MaxLimit)
}

// archivedExpr is the effective archived flag: archived by the member, and no message from
// someone else (while unmuted) arrived after that archive.
const archivedExpr = `(coalesce(p.archived, false) AND coalesce(p.archived_position, 0) > i.unarchive_position)`

const sqlSummaryFrom = `SELECT c.conversation_id, c.kind, c.title, c.owner_id, i.membership,
		i.last_message_id, i.last_message_sender_id, i.last_message_preview, i.last_message_at,
		i.last_activity_at, i.unread_count, coalesce(p.muted, false), ` + archivedExpr + `
	FROM inbox i
	JOIN conversations c ON c.clinic_id = i.clinic_id AND c.conversation_id = i.conversation_id
	LEFT JOIN member_prefs p ON p.clinic_id = i.clinic_id AND p.user_id = i.user_id AND p.conversation_id = i.conversation_id
	WHERE i.clinic_id = $1 AND i.user_id = $2 AND NOT c.deleted`

const sqlListConversations = sqlSummaryFrom + `
	  AND ($3::boolean IS NULL OR ` + archivedExpr + ` = $3)
	  AND ($4 = '' OR lower(c.title) LIKE $4 ESCAPE '\' OR EXISTS (
	      SELECT 1 FROM participants pp
	      JOIN dir_users u ON u.clinic_id = pp.clinic_id AND u.user_id = pp.user_id
	      WHERE pp.clinic_id = i.clinic_id AND pp.conversation_id = i.conversation_id
	        AND pp.user_id <> i.user_id AND lower(u.name) LIKE $4 ESCAPE '\'))
	  AND ($5::timestamptz IS NULL OR (i.last_activity_at, i.conversation_id) < ($5, $6))
	ORDER BY i.last_activity_at DESC, i.conversation_id DESC
	LIMIT $7`

const sqlGetConversation = sqlSummaryFrom + ` AND i.conversation_id = $3`

const sqlParticipants = `SELECT pp.conversation_id, pp.user_id, coalesce(u.name, ''), coalesce(u.email, ''), pp.role, pp.state
	FROM participants pp
	LEFT JOIN dir_users u ON u.clinic_id = pp.clinic_id AND u.user_id = pp.user_id
	WHERE pp.clinic_id = $1 AND pp.conversation_id = ANY($2)
	ORDER BY pp.conversation_id, pp.join_order`

// scanParticipant reads a row of sqlParticipants: the conversation and the participant.
func scanParticipant(r pgx.Row) (conv string, p Participant, err error) {
	err = r.Scan(&conv, &p.ID, &p.Name, &p.Email, &p.Role, &p.State)
	return conv, p, err
}

// ListOptions filter and page the chat list.
type ListOptions struct {
	// Archived selects archived (true) or not archived (false) conversations; nil: both.
	Archived *bool
	// Q filters by title or participant name (case-insensitive substring).
	Q      string
	Limit  int
	Cursor string
}

type listCursor struct {
	At time.Time `json:"t"`
	ID string    `json:"id"`
}

func encodeCursor(v any) string {
	raw, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(raw)
}

func decodeCursor(s string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return ErrBadCursor
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return ErrBadCursor
	}
	return nil
}

// ListConversations returns the caller's chat list, newest activity first, keyset-paginated on
// (last_activity_at, id): a conversation that gets a new message while the caller pages moves
// ahead of the pages already read, so no page repeats it and none skips an unchanged one.
func (q *Queries) ListConversations(ctx context.Context, clinicID, userID string, opt ListOptions) (ConversationPage, error) {
	limit := clampLimit(opt.Limit)
	var at *time.Time
	var afterID string
	if opt.Cursor != "" {
		var c listCursor
		if err := decodeCursor(opt.Cursor, &c); err != nil || c.ID == "" || c.At.IsZero() {
			return ConversationPage{}, ErrBadCursor
		}
		at, afterID = &c.At, c.ID
	}
	rows, err := q.pool.Query(ctx, sqlListConversations, clinicID, userID, opt.Archived, directory.LikePattern(opt.Q), at, afterID, limit+1)
	if err != nil {
		return ConversationPage{}, fmt.Errorf("list conversations: %w", err)
	}
	sums, err := pgx.CollectRows(rows, scanSummary)
	if err != nil {
		return ConversationPage{}, fmt.Errorf("list conversations: %w", err)
	}
	page := ConversationPage{Conversations: sums}
	if len(sums) > limit {
		page.Conversations = sums[:limit]
		last := page.Conversations[limit-1]
		page.NextCursor = encodeCursor(listCursor{At: last.LastActivityAt, ID: last.ID})
	}
	if page.Conversations == nil {
		page.Conversations = []Summary{}
	}
	if err := q.fillParticipants(ctx, clinicID, userID, page.Conversations, nil); err != nil {
		return ConversationPage{}, err
	}
	return page, nil
}

// GetConversation returns one conversation with its participants' details, or ErrNotFound if
// the caller never took part in it or it was deleted.
func (q *Queries) GetConversation(ctx context.Context, clinicID, userID, conversationID string) (Conversation, error) {
	rows, err := q.pool.Query(ctx, sqlGetConversation, clinicID, userID, conversationID)
	if err != nil {
		return Conversation{}, fmt.Errorf("get conversation: %w", err)
	}
	sums, err := pgx.CollectRows(rows, scanSummary)
	if err != nil {
		return Conversation{}, fmt.Errorf("get conversation: %w", err)
	}
	if len(sums) == 0 {
		return Conversation{}, ErrNotFound
	}
	details := map[string][]Participant{}
	if err := q.fillParticipants(ctx, clinicID, userID, sums, details); err != nil {
		return Conversation{}, err
	}
	c := Conversation{Summary: sums[0], Participants: details[conversationID]}
	if c.Participants == nil {
		c.Participants = []Participant{}
	}
	return c, nil
}

func scanSummary(r pgx.CollectableRow) (Summary, error) {
	var s Summary
	var owner string
	var lmID, lmSender, lmPreview *string
	var lmAt *time.Time
	err := r.Scan(&s.ID, &s.Kind, &s.Title, &owner, &s.Membership, &lmID, &lmSender, &lmPreview, &lmAt,
		&s.LastActivityAt, &s.UnreadCount, &s.Muted, &s.Archived)
	if err != nil {
		return s, err
	}
	if owner != "" {
		s.OwnerID = &owner
	}
	if lmID != nil {
		s.LastMessage = &LastMessage{ID: *lmID, SenderID: deref(lmSender), Preview: deref(lmPreview), SentAt: lmAt.UTC()}
	}
	s.LastActivityAt = s.LastActivityAt.UTC()
	s.CanSend = s.Membership == "active"
	return s, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// fillParticipants sets each summary's active participants (and, for a direct chat without a
// title, the title: the other person's name); with details non-nil it also collects everyone
// who took part, per conversation.
func (q *Queries) fillParticipants(ctx context.Context, clinicID, userID string, sums []Summary, details map[string][]Participant) error {
	if len(sums) == 0 {
		return nil
	}
	ids := make([]string, len(sums))
	index := make(map[string]int, len(sums))
	for i, s := range sums {
		ids[i] = s.ID
		index[s.ID] = i
		sums[i].Participants = []ParticipantRef{}
	}
	rows, err := q.pool.Query(ctx, sqlParticipants, clinicID, ids)
	if err != nil {
		return fmt.Errorf("participants: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		conv, p, err := scanParticipant(rows)
		if err != nil {
			return fmt.Errorf("participants: %w", err)
		}
		addParticipant(&sums[index[conv]], p, userID)
		if details != nil {
			details[conv] = append(details[conv], p)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("participants: %w", err)
	}
	for i := range sums {
		nameUntitled(&sums[i], userID)
	}
	return nil
}

// untitledNames is how many names an untitled group's title lists before "+N".
const untitledNames = 3

// nameUntitled titles a group nobody named (API-v1.1 "Groups") after its other active
// participants, as the caller sees them: "Ann Lee, Bob Cruz, Cat Ma +2".
func nameUntitled(s *Summary, userID string) {
	if s.Kind != "group" || s.Title != "" {
		return
	}
	var names []string
	for _, p := range s.Participants {
		if p.ID == userID {
			continue
		}
		name := p.Name
		if name == "" {
			name = p.ID
		}
		names = append(names, name)
	}
	if len(names) > untitledNames {
		s.Title = strings.Join(names[:untitledNames], ", ") + " +" + strconv.Itoa(len(names)-untitledNames)
		return
	}
	s.Title = strings.Join(names, ", ")
}

// addParticipant adds p to the summary as userID sees it: active participants are listed, and
// a direct chat without a title is named after the other person.
func addParticipant(s *Summary, p Participant, userID string) {
	if p.State == "active" {
		s.Participants = append(s.Participants, ParticipantRef{ID: p.ID, Name: p.Name})
	}
	if s.Kind == "direct" && s.Title == "" && p.ID != userID {
		s.Title = p.Name
	}
}

// WithParticipants sets a summary's participants (all of one conversation, in join order) as
// userID sees them.
func WithParticipants(s *Summary, parts []Participant, userID string) {
	s.Participants = []ParticipantRef{}
	for _, p := range parts {
		addParticipant(s, p, userID)
	}
	nameUntitled(s, userID)
}

const sqlCanSee = `SELECT EXISTS (SELECT 1 FROM inbox i
	JOIN conversations c ON c.clinic_id = i.clinic_id AND c.conversation_id = i.conversation_id
	WHERE i.clinic_id = $1 AND i.user_id = $2 AND i.conversation_id = $3 AND NOT c.deleted)`

// visibleExpr: message m is one the caller ($3) can see (visibleTo).
var visibleExpr = visibleTo("$3", "m.version")

// messageCols are the columns scanMessage reads, of message m: the row and, for an urgent
// message, who acknowledged it (in order) and who still has to (pendingExpr, in join order).
var messageCols = `m.version, m.message_id, m.sender_id, m.kind, m.text,
		m.file_id, m.file_name, m.file_size, m.file_content_type, m.file_sha256,
		m.system_event, m.system_actor_id, m.system_subject_id, m.sent_at, m.urgent, m.edited_at, m.recalled,
		CASE WHEN m.urgent THEN ARRAY(SELECT a.user_id FROM message_acks a WHERE a.clinic_id = m.clinic_id
			AND a.conversation_id = m.conversation_id AND a.version = m.version ORDER BY a.at, a.user_id) END,
		CASE WHEN m.urgent THEN ARRAY(SELECT a.at FROM message_acks a WHERE a.clinic_id = m.clinic_id
			AND a.conversation_id = m.conversation_id AND a.version = m.version ORDER BY a.at, a.user_id) END,
		CASE WHEN m.urgent THEN ARRAY(SELECT p.user_id FROM participants p WHERE p.clinic_id = m.clinic_id
			AND p.conversation_id = m.conversation_id AND ` + pendingExpr + ` ORDER BY p.join_order) END`

var sqlMessages = `SELECT ` + messageCols + `
	FROM messages m
	WHERE m.clinic_id = $1 AND m.conversation_id = $2 AND m.version < $4 AND ` + visibleExpr + `
	ORDER BY m.version DESC
	LIMIT $5`

var sqlMessageVersion = `SELECT m.version FROM messages m
	WHERE m.clinic_id = $1 AND m.conversation_id = $2 AND m.message_id = $4 AND ` + visibleExpr

var sqlOneMessage = `SELECT ` + messageCols + ` FROM messages m
	WHERE m.clinic_id = $1 AND m.conversation_id = $2 AND m.message_id = $4 AND ` + visibleExpr + `
	  AND EXISTS (SELECT 1 FROM conversations c WHERE c.clinic_id = $1 AND c.conversation_id = $2 AND NOT c.deleted)`

// sqlUrgent: the urgent messages $2 still has to acknowledge (pendingExpr with p their own
// participant row), oldest first, whatever mute and archive say.
var sqlUrgent = `SELECT ` + messageCols + `, m.conversation_id
	FROM inbox i
	JOIN conversations c ON c.clinic_id = i.clinic_id AND c.conversation_id = i.conversation_id AND NOT c.deleted
	JOIN participants p ON p.clinic_id = i.clinic_id AND p.conversation_id = i.conversation_id AND p.user_id = i.user_id
	JOIN messages m ON m.clinic_id = i.clinic_id AND m.conversation_id = i.conversation_id AND m.version > p.joined_version
		AND m.urgent AND NOT m.recalled
	WHERE i.clinic_id = $1 AND i.user_id = $2 AND i.membership = 'active' AND ` + pendingExpr + `
	ORDER BY m.position`

// sqlReceipts: the read markers of conversation $2's active members ($3: only that one).
var sqlReceipts = `SELECT pp.user_id,
		(SELECT m.message_id FROM messages m
		 WHERE m.clinic_id = pp.clinic_id AND m.conversation_id = pp.conversation_id AND m.version <= pr.read_version
		   AND ` + visibleTo("pp.user_id", "m.version") + `
		 ORDER BY m.version DESC LIMIT 1),
		pr.read_at
	FROM participants pp
	LEFT JOIN member_prefs pr ON pr.clinic_id = pp.clinic_id AND pr.user_id = pp.user_id AND pr.conversation_id = pp.conversation_id
	WHERE pp.clinic_id = $1 AND pp.conversation_id = $2 AND pp.state = 'active' AND ($3 = '' OR pp.user_id = $3)
	ORDER BY pp.join_order`

// Message returns one message as the caller's message list shows it, or ErrNotFound.
func (q *Queries) Message(ctx context.Context, clinicID, userID, conversationID, messageID string) (Message, error) {
	rows, err := q.pool.Query(ctx, sqlOneMessage, clinicID, conversationID, userID, messageID)
	if err != nil {
		return Message{}, fmt.Errorf("message: %w", err)
	}
	msgs, err := pgx.CollectRows(rows, scanMessage)
	if err != nil {
		return Message{}, fmt.Errorf("message: %w", err)
	}
	if len(msgs) != 1 {
		return Message{}, ErrNotFound
	}
	return msgs[0], nil
}

// Urgent returns the urgent messages the caller still has to acknowledge, oldest first.
func (q *Queries) Urgent(ctx context.Context, clinicID, userID string) (UrgentList, error) {
	rows, err := q.pool.Query(ctx, sqlUrgent, clinicID, userID)
	if err != nil {
		return UrgentList{}, fmt.Errorf("urgent: %w", err)
	}
	msgs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (UrgentMessage, error) {
		var u UrgentMessage
		err := scanMessageInto(r, &u.Message, &u.ConversationID)
		return u, err
	})
	if err != nil {
		return UrgentList{}, fmt.Errorf("urgent: %w", err)
	}
	if msgs == nil {
		msgs = []UrgentMessage{}
	}
	return UrgentList{Messages: msgs}, nil
}

// Receipts returns the read markers of the conversation's active members, or ErrNotFound if
// the caller never took part in it or it was deleted.
func (q *Queries) Receipts(ctx context.Context, clinicID, userID, conversationID string) (Receipts, error) {
	var ok bool
	if err := q.pool.QueryRow(ctx, sqlCanSee, clinicID, userID, conversationID).Scan(&ok); err != nil {
		return Receipts{}, fmt.Errorf("receipts: %w", err)
	}
	if !ok {
		return Receipts{}, ErrNotFound
	}
	rows, err := q.pool.Query(ctx, sqlReceipts, clinicID, conversationID, "")
	if err != nil {
		return Receipts{}, fmt.Errorf("receipts: %w", err)
	}
	rs, err := pgx.CollectRows(rows, scanReceipt)
	if err != nil {
		return Receipts{}, fmt.Errorf("receipts: %w", err)
	}
	if rs == nil {
		rs = []Receipt{}
	}
	return Receipts{Receipts: rs}, nil
}

func scanReceipt(r pgx.CollectableRow) (Receipt, error) {
	var x Receipt
	err := r.Scan(&x.UserID, &x.LastReadMessageID, &x.ReadAt)
	if x.ReadAt != nil {
		t := x.ReadAt.UTC()
		x.ReadAt = &t
	}
	return x, err
}

// Messages returns a page of the messages the caller can see, the newest before the cursor
// (the latest when empty), oldest first within the page. next_cursor continues with older
// messages. ErrNotFound if the caller never took part or the conversation was deleted.
func (q *Queries) Messages(ctx context.Context, clinicID, userID, conversationID, before string, limit int) (MessagePage, error) {
	limit = clampLimit(limit)
	beforeVersion := int64(1<<63 - 1)
	if before != "" {
		v, err := decodeMessageCursor(before)
		if err != nil {
			return MessagePage{}, err
		}
		beforeVersion = v
	}
	var ok bool
	if err := q.pool.QueryRow(ctx, sqlCanSee, clinicID, userID, conversationID).Scan(&ok); err != nil {
		return MessagePage{}, fmt.Errorf("messages: %w", err)
	}
	if !ok {
		return MessagePage{}, ErrNotFound
	}
	rows, err := q.pool.Query(ctx, sqlMessages, clinicID, conversationID, userID, beforeVersion, limit+1)
	if err != nil {
		return MessagePage{}, fmt.Errorf("messages: %w", err)
	}
	msgs, err := pgx.CollectRows(rows, scanMessage)
	if err != nil {
		return MessagePage{}, fmt.Errorf("messages: %w", err)
	}
	page := MessagePage{}
	if len(msgs) > limit {
		msgs = msgs[:limit]
		page.NextCursor = encodeMessageCursor(msgs[limit-1].Version)
	}
	for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
		msgs[i], msgs[j] = msgs[j], msgs[i]
	}
	if msgs == nil {
		msgs = []Message{}
	}
	page.Messages = msgs
	return page, nil
}

func encodeMessageCursor(version int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("v" + strconv.FormatInt(version, 10)))
}

func decodeMessageCursor(s string) (int64, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(raw) < 2 || raw[0] != 'v' {
		return 0, ErrBadCursor
	}
	v, err := strconv.ParseInt(string(raw[1:]), 10, 64)
	if err != nil || v < 1 {
		return 0, ErrBadCursor
	}
	return v, nil
}

func scanMessage(r pgx.CollectableRow) (Message, error) {
	var m Message
	err := scanMessageInto(r, &m)
	return m, err
}

// scanMessageInto reads messageCols into m, and any further columns into more.
func scanMessageInto(r pgx.CollectableRow, m *Message, more ...any) error {
	var fileID, fileName, fileType, fileSHA, sysEvent, sysActor, sysSubject *string
	var fileSize *int64
	var urgent bool
	var acked, pending []string
	var ackedAt []time.Time
	err := r.Scan(append([]any{&m.Version, &m.ID, &m.SenderID, &m.Kind, &m.Text,
		&fileID, &fileName, &fileSize, &fileType, &fileSHA, &sysEvent, &sysActor, &sysSubject, &m.SentAt,
		&urgent, &m.EditedAt, &m.Recalled, &acked, &ackedAt, &pending}, more...)...)
	if err != nil {
		return err
	}
	m.SentAt = m.SentAt.UTC()
	m.Priority = domain.PriorityNormal
	if urgent {
		m.Priority = domain.PriorityUrgent
		m.Acks = &Acks{Acked: make([]Ack, len(acked)), Pending: pending}
		for i, u := range acked {
			m.Acks.Acked[i] = Ack{UserID: u, At: ackedAt[i].UTC()}
		}
		if m.Acks.Pending == nil {
			m.Acks.Pending = []string{}
		}
	}
	if m.EditedAt != nil {
		t := m.EditedAt.UTC()
		m.EditedAt = &t
	}
	if fileID != nil {
		m.File = &FileRef{ID: *fileID, Name: deref(fileName), ContentType: deref(fileType), SHA256: deref(fileSHA)}
		if fileSize != nil {
			m.File.Size = *fileSize
		}
	}
	if sysEvent != nil {
		m.System = &SystemInfo{Event: *sysEvent, ActorID: deref(sysActor), SubjectID: deref(sysSubject)}
	}
	return nil
}

// MessageVersion returns the conversation stream version of a message the caller can see (the
// unit of read markers), or ErrNotFound.
func (q *Queries) MessageVersion(ctx context.Context, clinicID, userID, conversationID, messageID string) (int64, error) {
	var v int64
	err := q.pool.QueryRow(ctx, sqlMessageVersion, clinicID, conversationID, userID, messageID).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("message version: %w", err)
	}
	return v, nil
}

const sqlUnread = `SELECT i.conversation_id, i.unread_count, coalesce(p.muted, false)
	FROM inbox i
	JOIN conversations c ON c.clinic_id = i.clinic_id AND c.conversation_id = i.conversation_id
	LEFT JOIN member_prefs p ON p.clinic_id = i.clinic_id AND p.user_id = i.user_id AND p.conversation_id = i.conversation_id
	WHERE i.clinic_id = $1 AND i.user_id = $2 AND NOT c.deleted AND i.unread_count > 0
	ORDER BY i.last_activity_at DESC, i.conversation_id DESC`

// Unread returns the caller's unread counts: per conversation with any, the total without
// muted conversations, and the total with them.
func (q *Queries) Unread(ctx context.Context, clinicID, userID string) (Unread, error) {
	rows, err := q.pool.Query(ctx, sqlUnread, clinicID, userID)
	if err != nil {
		return Unread{}, fmt.Errorf("unread: %w", err)
	}
	return unreadFrom(rows)
}

// unreadFrom builds the /v1/unread body from sqlUnread's rows (and closes them).
func unreadFrom(rows pgx.Rows) (Unread, error) {
	convs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (UnreadConversation, error) {
		var u UnreadConversation
		err := r.Scan(&u.ID, &u.UnreadCount, &u.Muted)
		return u, err
	})
	if err != nil {
		return Unread{}, fmt.Errorf("unread: %w", err)
	}
	out := Unread{Conversations: convs}
	if out.Conversations == nil {
		out.Conversations = []UnreadConversation{}
	}
	for _, c := range convs {
		out.TotalIncludingMuted += c.UnreadCount
		if !c.Muted {
			out.Total += c.UnreadCount
		}
	}
	return out, nil
}
