package inbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/projections"
)

// bulk is the inbox's part of a rebuild (projections.BulkLoad): each batch's new messages,
// COPYed on the rebuild's second connection, each batch's conversation starts, COPYed ahead of
// its statements, and inboxLoad.
type bulk struct {
	messages []messageRow // the current batch's, for COPY
	starts   []convStart  // the current batch's, COPYed ahead of its statements
	inbox    inboxLoad
	copyBuf  copyData // reused by the COPYs, which run one after another
}

func newBulk() *bulk { return &bulk{inbox: newInboxLoad()} }

// Apply does what apply does live, through the twins.
func (l *bulk) Apply(b *projections.Batch, e eventstore.RecordedEvent, ev domain.Event) error {
	return apply(&writer{b: b, load: l}, e, ev)
}

// Flush COPYs the batch's conversation starts.
func (l *bulk) Flush(ctx context.Context, tx pgx.Tx) error {
	if len(l.starts) == 0 {
		return nil
	}
	err := copyStarts(ctx, tx, l.starts)
	l.starts = nil
	return err
}

// Copy hands over the batch's messages.
func (l *bulk) Copy() func(ctx context.Context, conn *pgx.Conn) error {
	rows := l.messages
	l.messages = nil
	if len(rows) == 0 {
		return nil
	}
	return func(ctx context.Context, conn *pgx.Conn) error { return copyMessages(ctx, conn, &l.copyBuf, rows) }
}

// Finish writes what the load kept in memory, with the derived inbox columns.
func (l *bulk) Finish(ctx context.Context, tx pgx.Tx) error {
	if err := l.inbox.write(ctx, tx); err != nil {
		return fmt.Errorf("derive inbox: %w", err)
	}
	return nil
}

// inboxLoad is what a rebuild's load keeps in memory of the inbox projection: the tables
// nothing in the load reads (visibility, inbox, member_prefs; see the twins in inbox.go) and,
// of every message it COPYs, what the derived inbox columns need. The load skips the
// statements that maintain those columns live (the fan-out and the recounts); write computes
// them once, by the live rule stated over the final tables: for each of the user's visibility
// windows, the messages inside it; unread counts text and file messages from others beyond the
// read marker; unarchive_position is the latest such message that arrived while not muted
// (mute_toggles); the last message is the latest visible one. The property test holds the
// result to what the live path gives.
//
// A message costs 24 bytes (version, position, sender, kind); of each conversation the full
// row of its latest message is kept, and a member whose window closed before it gets their
// last message read back from the table.
type inboxLoad struct {
	windows map[inboxKey][]window
	rows    map[inboxKey]*inboxRow
	prefs   map[inboxKey]*memberPref
	convs   map[convKey]*convMessages
	senders map[string]int32             // user id → index, so a message keeps 4 bytes for its sender
	edits   map[messageKey]messageChange // the latest edit of each edited message
	recalls map[messageKey]bool
}

// inboxKey is the key of inbox and member_prefs, and of a user's visibility windows.
type inboxKey struct{ clinic, user, conv string }

type convKey struct{ clinic, conv string }

type window struct{ from, to int64 } // to: -1 while open

type convMessages struct {
	msgs []msgMeta  // in version order
	last messageRow // the latest
}

type msgMeta struct {
	version, position int64
	at                int64 // sent_at, Unix microseconds
	sender            int32
	system            bool
	urgent, recalled  bool
}

// inboxRow is one row of inbox (inboxColumns).
type inboxRow struct {
	clinic, user, conv string
	membership         string
	lastID, lastSender *string
	lastPreview        *string
	lastAt             *time.Time
	activityAt         time.Time
	unread             int32
	unarchive          int64
}

var inboxColumns = []string{"clinic_id", "user_id", "conversation_id", "membership", "last_message_id",
	"last_message_sender_id", "last_message_preview", "last_message_at", "last_activity_at", "unread_count", "unarchive_position"}

// memberPref is one row of member_prefs (memberPrefColumns).
type memberPref struct {
	muted      bool
	toggles    []int64
	archived   bool
	archivedAt int64
	read       int64
	readAt     *time.Time
}

var memberPrefColumns = []string{"clinic_id", "user_id", "conversation_id", "muted", "mute_toggles", "archived",
	"archived_position", "read_version", "read_at"}

func newInboxLoad() inboxLoad {
	return inboxLoad{windows: map[inboxKey][]window{}, rows: map[inboxKey]*inboxRow{}, prefs: map[inboxKey]*memberPref{},
		convs: map[convKey]*convMessages{}, senders: map[string]int32{}, edits: map[messageKey]messageChange{},
		recalls: map[messageKey]bool{}}
}

// change keeps an edit or a recall of the message at k, for write.
func (l *inboxLoad) change(k messageKey, c messageChange) {
	if c.recalled {
		l.recalls[k] = true
		return
	}
	l.edits[k] = c
}

// openWindow opens a window at version v unless k has one from v already.
func (l *inboxLoad) openWindow(k inboxKey, v int64) {
	for _, w := range l.windows[k] {
		if w.from == v {
			return
		}
	}
	l.windows[k] = append(l.windows[k], window{from: v, to: -1})
}

// pref returns k's member_prefs row, and whether it was created (with the table's defaults).
func (l *inboxLoad) pref(k inboxKey) (*memberPref, bool) {
	if p := l.prefs[k]; p != nil {
		return p, false
	}
	p := &memberPref{toggles: []int64{}}
	l.prefs[k] = p
	return p, true
}

func (l *inboxLoad) message(m *messageRow) {
	k := convKey{m.clinic, m.conv}
	c := l.convs[k]
	if c == nil {
		c = &convMessages{}
		l.convs[k] = c
	}
	s, ok := l.senders[m.sender]
	if !ok {
		s = int32(len(l.senders))
		l.senders[m.sender] = s
	}
	c.msgs = append(c.msgs, msgMeta{version: m.version, position: m.position, at: m.sentAt.UnixMicro(), sender: s,
		system: m.kind == "system", urgent: m.urgent})
	if len(c.msgs) == 1 || m.version >= c.last.version {
		c.last = *m
	}
}

type convStart struct {
	clinic, id string
	ev         domain.ConversationStarted
	at         time.Time
}

// copyStarts writes the conversations and participants rows conversationStarted's statements
// write for each of starts (all at version 1, of conversations with no rows yet): a
// participant listed twice keeps their first place, as ON CONFLICT DO NOTHING does.
func copyStarts(ctx context.Context, tx pgx.Tx, starts []convStart) error {
	var convs, parts [][]any
	for _, st := range starts {
		x := st.ev
		convs = append(convs, []any{st.clinic, st.id, x.Kind, x.Title, x.OwnerID, x.StartedBy, st.at})
		seen := make(map[string]bool, len(x.ParticipantIDs))
		for i, u := range x.ParticipantIDs {
			if seen[u] {
				continue
			}
			seen[u] = true
			role := "member"
			if u == x.OwnerID {
				role = "owner"
			}
			parts = append(parts, []any{st.clinic, st.id, u, role, "active", int32(i + 1), int64(1)})
		}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"conversations"}, []string{"clinic_id", "conversation_id", "kind", "title", "owner_id",
		"started_by", "started_at"}, pgx.CopyFromRows(convs)); err != nil {
		return fmt.Errorf("copy conversations: %w", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"participants"}, []string{"clinic_id", "conversation_id", "user_id", "role", "state",
		"join_order", "joined_version"}, pgx.CopyFromRows(parts)); err != nil {
		return fmt.Errorf("copy participants: %w", err)
	}
	return nil
}

// sqlLastMessages reads messages by key, for members whose last message is not their
// conversation's latest.
const sqlLastMessages = `SELECT m.clinic_id, m.conversation_id, m.version, m.message_id, m.sender_id, m.kind, m.text,
	m.file_name, m.system_event, m.sent_at
	FROM unnest($1::text[], $2::text[], $3::bigint[]) AS k(clinic_id, conversation_id, version)
	JOIN messages m USING (clinic_id, conversation_id, version)`

// sqlDerivedWritten says whether a statement wrote a table the load keeps in memory: its rows
// would be lost or doubled by write (see the twins in inbox.go).
const sqlDerivedWritten = `SELECT EXISTS (SELECT FROM visibility) OR EXISTS (SELECT FROM inbox) OR EXISTS (SELECT FROM member_prefs)`

func (l *inboxLoad) write(ctx context.Context, tx pgx.Tx) error {
	var written bool
	if err := tx.QueryRow(ctx, sqlDerivedWritten).Scan(&written); err != nil {
		return err
	}
	if written {
		return errors.New("visibility, inbox or member_prefs written during the load other than through their twins")
	}
	for _, c := range l.convs {
		byVersion := func(a, b msgMeta) int { return cmp.Compare(a.version, b.version) }
		if !slices.IsSortedFunc(c.msgs, byVersion) {
			slices.SortStableFunc(c.msgs, byVersion)
		}
	}
	if err := l.applyChanges(ctx, tx); err != nil {
		return err
	}
	rows := make([]*inboxRow, 0, len(l.rows))
	var older []*inboxRow // rows whose last message is not their conversation's latest
	var olderKeys []messageKey
	for k, r := range l.rows {
		rows = append(rows, r)
		last, ok := l.derive(k, r)
		if ok {
			if c := l.convs[convKey{k.clinic, k.conv}]; last == c.last.version {
				setLast(r, &c.last)
			} else {
				older = append(older, r)
				olderKeys = append(olderKeys, messageKey{k.clinic, k.conv, last})
			}
		}
	}
	if len(older) > 0 {
		if err := l.readLast(ctx, tx, older, olderKeys); err != nil {
			return err
		}
	}
	slices.SortFunc(rows, func(a, b *inboxRow) int {
		return cmp.Or(cmp.Compare(a.clinic, b.clinic), cmp.Compare(a.user, b.user), cmp.Compare(a.conv, b.conv))
	})
	var vis, prefs [][]any
	for k, ws := range l.windows {
		for _, w := range ws {
			var to *int64
			if w.to >= 0 {
				to = &w.to
			}
			vis = append(vis, []any{k.clinic, k.conv, k.user, w.from, to})
		}
	}
	for k, p := range l.prefs {
		prefs = append(prefs, []any{k.clinic, k.user, k.conv, p.muted, p.toggles, p.archived, p.archivedAt, p.read, p.readAt})
	}
	for _, c := range []struct {
		table   string
		columns []string
		src     pgx.CopyFromSource
	}{
		{"visibility", []string{"clinic_id", "conversation_id", "user_id", "from_version", "to_version"}, pgx.CopyFromRows(vis)},
		{"member_prefs", memberPrefColumns, pgx.CopyFromRows(prefs)},
		{"inbox", inboxColumns, pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			r := rows[i]
			return []any{r.clinic, r.user, r.conv, r.membership, r.lastID, r.lastSender, r.lastPreview, r.lastAt,
				r.activityAt, r.unread, r.unarchive}, nil
		})},
	} {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{c.table}, c.columns, c.src); err != nil {
			return fmt.Errorf("copy %s: %w", c.table, err)
		}
	}
	return nil
}

type messageKey struct {
	clinic, conv string
	version      int64
}

// The edits and recalls of a load, applied to the copied messages at the end (sqlEdited and
// sqlRecalled for many at once: every edit before every recall, as the store has them; a
// recalled message cannot be edited).
const (
	sqlEditAll = `UPDATE messages m SET text = u.text, edited_at = u.at
		FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::timestamptz[]) AS u(clinic_id, conversation_id, version, text, at)
		WHERE m.clinic_id = u.clinic_id AND m.conversation_id = u.conversation_id AND m.version = u.version`
	sqlRecallAll = `UPDATE messages m SET recalled = true, text = '', file_id = NULL, file_name = NULL, file_size = NULL,
		file_content_type = NULL, file_sha256 = NULL
		FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(clinic_id, conversation_id, version)
		WHERE m.clinic_id = u.clinic_id AND m.conversation_id = u.conversation_id AND m.version = u.version`
)

// applyChanges writes the load's edits and recalls to the messages table and to what write
// derives from (the recalled flags, each conversation's latest row).
func (l *inboxLoad) applyChanges(ctx context.Context, tx pgx.Tx) error {
	if len(l.edits) > 0 {
		var clinics, convs, texts []string
		var versions []int64
		var ats []time.Time
		for k, e := range l.edits {
			clinics, convs, versions, texts, ats = append(clinics, k.clinic), append(convs, k.conv), append(versions, k.version),
				append(texts, e.text), append(ats, e.editedAt)
			if c := l.convs[convKey{k.clinic, k.conv}]; c != nil && c.last.version == k.version {
				at := e.editedAt
				c.last.text, c.last.editedAt = e.text, &at
			}
		}
		if _, err := tx.Exec(ctx, sqlEditAll, clinics, convs, versions, texts, ats); err != nil {
			return fmt.Errorf("edits: %w", err)
		}
	}
	if len(l.recalls) > 0 {
		var clinics, convs []string
		var versions []int64
		for k := range l.recalls {
			clinics, convs, versions = append(clinics, k.clinic), append(convs, k.conv), append(versions, k.version)
			c := l.convs[convKey{k.clinic, k.conv}]
			if c == nil {
				continue
			}
			if i, found := slices.BinarySearchFunc(c.msgs, k.version, func(m msgMeta, v int64) int { return cmp.Compare(m.version, v) }); found {
				c.msgs[i].recalled = true
			}
			if c.last.version == k.version {
				c.last.recalled, c.last.text, c.last.file = true, "", nil
			}
		}
		if _, err := tx.Exec(ctx, sqlRecallAll, clinics, convs, versions); err != nil {
			return fmt.Errorf("recalls: %w", err)
		}
	}
	return nil
}

// readLast reads the last messages of rows (keys: theirs) from the messages table.
func (l *inboxLoad) readLast(ctx context.Context, tx pgx.Tx, rows []*inboxRow, keys []messageKey) error {
	byKey := map[messageKey][]*inboxRow{}
	clinics, convs, versions := make([]string, len(keys)), make([]string, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		byKey[k] = append(byKey[k], rows[i])
		clinics[i], convs[i], versions[i] = k.clinic, k.conv, k.version
	}
	var m messageRow
	var fileName, sysEvent *string
	res, err := tx.Query(ctx, sqlLastMessages, clinics, convs, versions)
	if err != nil {
		return fmt.Errorf("last messages: %w", err)
	}
	_, err = pgx.ForEachRow(res, []any{&m.clinic, &m.conv, &m.version, &m.id, &m.sender, &m.kind, &m.text, &fileName, &sysEvent, &m.sentAt},
		func() error {
			m.file, m.system = nil, nil
			switch m.kind {
			case "file":
				m.file = &fileRef{name: deref(fileName)}
			case "system":
				m.system = &domain.SystemMessage{Event: deref(sysEvent)}
			}
			for _, r := range byKey[messageKey{m.clinic, m.conv, m.version}] {
				setLast(r, &m)
			}
			return nil
		})
	if err != nil {
		return fmt.Errorf("last messages: %w", err)
	}
	return nil
}

// setLast makes m row r's last message (sqlFanOut's columns).
func setLast(r *inboxRow, m *messageRow) {
	id, sender, pv, at := m.id, m.sender, m.preview(), m.sentAt
	r.lastID, r.lastSender, r.lastPreview, r.lastAt = &id, &sender, &pv, &at
	if at.After(r.activityAt) {
		r.activityAt = at
	}
}
