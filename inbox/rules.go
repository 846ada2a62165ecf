package inbox

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/huddle-chat/huddle/domain"
)

// The inbox's derived rules, each once: the SQL the live path runs and, beside it, the Go twin
// a rebuild's load computes the same columns with (bulk.Finish). The property test (live equals
// rebuild, table by table) holds each pair to the same answer.

// Visibility: a member sees the versions of a conversation inside their visibility windows
// (from_version up to to_version, or on while to_version is NULL). visibleTo states it for the
// member user and the message version x (SQL expressions); window.span is the Go twin.
func visibleTo(user, x string) string {
	return `EXISTS (SELECT 1 FROM visibility v
	WHERE v.clinic_id = m.clinic_id AND v.conversation_id = m.conversation_id AND v.user_id = ` + user + `
	  AND ` + x + ` >= v.from_version AND (v.to_version IS NULL OR ` + x + ` <= v.to_version))`
}

// visibleToMember: message m is visible to inbox row i's member.
var visibleToMember = visibleTo("i.user_id", "m.version")

// span returns the messages of msgs (in version order) inside w, as msgs[lo:hi].
func (w window) span(msgs []msgMeta) (lo, hi int) {
	at := func(m msgMeta, v int64) int { return cmp.Compare(m.version, v) }
	lo, _ = slices.BinarySearchFunc(msgs, w.from, at)
	hi = len(msgs)
	if w.to >= 0 {
		hi, _ = slices.BinarySearchFunc(msgs, w.to+1, at)
	}
	return lo, hi
}

// Counting: a message counts for a member (unread, unarchive) when it is a text or file
// message from someone else. countsExpr states it for message m and inbox row i (sqlFanOut
// passes the kind as its $7 and compares the sender itself); counts is the Go twin.
const countsExpr = `m.kind <> 'system' AND m.sender_id <> i.user_id`

func counts(m msgMeta, me int32) bool { return !m.system && m.sender != me }

// Unread: a message that counts and was not recalled (a recall takes it out of the unread
// counts; it still unarchived the chat when it came). unreadExpr / countsUnread.
const unreadExpr = countsExpr + ` AND NOT m.recalled`

func countsUnread(m msgMeta, me int32) bool { return counts(m, me) && !m.recalled }

// Unarchive: a message that counts brings an archived chat back unless the member had muted
// it when it came; an urgent one brings it back even then. unarchivesExpr(muted) /
// unarchives.
func unarchivesExpr(muted string) string { return `(m.urgent OR NOT ` + muted + `)` }

func unarchives(m msgMeta, toggles []int64) bool { return m.urgent || !mutedAt(toggles, m.position) }

// Last message: the latest message a member can see that was not recalled is the one their
// chat list shows (lastMessageExpr; derive's backward scan is the Go twin). A recalled message
// still counts as activity (last_activity_at keeps it).
var lastMessageExpr = `(SELECT m.message_id, m.sender_id, ` + previewExpr + `, m.sent_at FROM messages m
	WHERE m.clinic_id = i.clinic_id AND m.conversation_id = i.conversation_id AND NOT m.recalled AND ` + visibleToMember + `
	ORDER BY m.version DESC LIMIT 1)`

// Previews: what the chat list shows of a message: its text or file name, cut at previewRunes
// runes, or for a system line the words of systemPreviews. preview and systemPreview are the Go
// rule (the fan-out's argument, the load), previewExpr its SQL twin for message m (the rows an
// edit or a recall recomputes).
const previewRunes = 120

var systemPreviews = [][2]string{
	{domain.SystemParticipantAdded, "added a participant"},
	{domain.SystemParticipantRemoved, "removed a participant"},
	{domain.SystemParticipantLeft, "left the group"},
	{domain.SystemGroupRenamed, "renamed the group"},
	{domain.SystemOwnershipPassed, "passed on ownership"},
}

func preview(s string) string {
	if utf8.RuneCountInString(s) <= previewRunes {
		return s
	}
	r := []rune(s)
	return string(r[:previewRunes]) + "…"
}

func systemPreview(event string) string {
	for _, p := range systemPreviews {
		if p[0] == event {
			return p[1]
		}
	}
	return event
}

var previewExpr = func() string {
	cut := func(col string) string {
		return `CASE WHEN char_length(` + col + `) <= ` + strconv.Itoa(previewRunes) + ` THEN ` + col +
			` ELSE left(` + col + `, ` + strconv.Itoa(previewRunes) + `) || '…' END`
	}
	var sys strings.Builder
	sys.WriteString(`CASE m.system_event`)
	for _, p := range systemPreviews {
		sys.WriteString(` WHEN '` + p[0] + `' THEN '` + p[1] + `'`)
	}
	sys.WriteString(` ELSE m.system_event END`)
	return `CASE m.kind WHEN 'system' THEN ` + sys.String() + ` WHEN 'file' THEN ` + cut("m.file_name") + ` ELSE ` + cut("m.text") + ` END`
}()

// Pending acknowledgements mirror domain.PendingAcks, the one rule: the participants of an
// urgent message's conversation whose current stint began before it (joined_version is the
// domain's Since) and is still on, other than its sender, less those who acknowledged it;
// nobody once it is recalled. pendingExpr states it for message m and participant p; the
// read model keeps no copy, so there is no rebuild twin: the property test compares it with
// the domain's answer for every urgent message.
const pendingExpr = `m.urgent AND NOT m.recalled AND p.state = 'active' AND p.user_id <> m.sender_id
	AND p.joined_version < m.version
	AND NOT EXISTS (SELECT 1 FROM message_acks a WHERE a.clinic_id = m.clinic_id
		AND a.conversation_id = m.conversation_id AND a.version = m.version AND a.user_id = p.user_id)`

// Muted at that moment: whether the conversation was muted for a member when the event at a
// global position happened. The latest mute (+position) or unmute (-position) toggle before it
// decides (member_prefs.mute_toggles), not the current flag, so a mute applied after a later
// message still counts as later. mutedAtHead + position + mutedAtTail states it for inbox row
// i; mutedAt is the Go twin.
var (
	mutedAtHead = `coalesce((SELECT t > 0 FROM member_prefs p, unnest(p.mute_toggles) AS t
		WHERE p.clinic_id = i.clinic_id AND p.user_id = i.user_id AND p.conversation_id = i.conversation_id
		  AND abs(t) < `
	mutedAtTail    = ` ORDER BY abs(t) DESC LIMIT 1), false)`
	mutedAtFanOut  = mutedAtHead + `$9` + mutedAtTail
	mutedAtMessage = mutedAtHead + `m.position` + mutedAtTail

	// Unread and unarchive, kept live: a new message increments the count of every member whose
	// read marker is before it, and raises unarchive_position (see archivedExpr) when it
	// counts and the member had not muted the chat; moving the marker, or a mute toggle applied
	// late, recounts from the messages.
	//
	// sqlFanOut updates every active member's inbox row for a new message in one statement.
	// $7 says whether the message counts (text or file: unread, unarchive); it counts for
	// everyone but the sender whose read marker is before it. $10: it is urgent (unarchives).
	sqlFanOut = `UPDATE inbox i SET
		last_message_id = $3, last_message_sender_id = $4, last_message_preview = $5,
		last_message_at = $6, last_activity_at = greatest(i.last_activity_at, $6),
		unread_count = i.unread_count + CASE WHEN $7 AND i.user_id <> $4 AND $8 > coalesce(
			(SELECT p.read_version FROM member_prefs p
			 WHERE p.clinic_id = i.clinic_id AND p.user_id = i.user_id AND p.conversation_id = i.conversation_id), 0)
			THEN 1 ELSE 0 END,
		unarchive_position = CASE WHEN $7 AND i.user_id <> $4 AND ($10 OR NOT ` + mutedAtFanOut + `)
			THEN greatest(i.unarchive_position, $9) ELSE i.unarchive_position END
		WHERE i.clinic_id = $1 AND i.conversation_id = $2 AND i.membership = 'active'`

	// sqlRecountUnarchive recomputes unarchive_position after a mute toggle (which may have
	// been applied after messages that came later in the store): the latest visible message
	// from someone else that arrived while not muted.
	sqlRecountUnarchive = `UPDATE inbox i SET unarchive_position = coalesce((
			SELECT max(m.position) FROM messages m
			WHERE m.clinic_id = i.clinic_id AND m.conversation_id = i.conversation_id
			  AND ` + countsExpr + ` AND ` + visibleToMember + `
			  AND ` + unarchivesExpr(mutedAtMessage) + `), 0)
		WHERE i.clinic_id = $1 AND i.user_id = $2 AND i.conversation_id = $3`
	// sqlRecountUnread recomputes one user's unread count after their read marker moved: text
	// and file messages from others after the marker, inside the user's visibility windows.
	sqlRecountUnread = `UPDATE inbox i SET unread_count = (
			SELECT count(*) FROM messages m
			WHERE m.clinic_id = i.clinic_id AND m.conversation_id = i.conversation_id
			  AND m.version > $4 AND ` + unreadExpr + ` AND ` + visibleToMember + `)
		WHERE i.clinic_id = $1 AND i.user_id = $2 AND i.conversation_id = $3`

	// sqlRecountUnreadAfterRecall recounts the unread counts of a conversation's rows that
	// had any, after a recall.
	sqlRecountUnreadAfterRecall = `UPDATE inbox i SET unread_count = (
			SELECT count(*) FROM messages m
			WHERE m.clinic_id = i.clinic_id AND m.conversation_id = i.conversation_id
			  AND m.version > coalesce((SELECT p.read_version FROM member_prefs p
				WHERE p.clinic_id = i.clinic_id AND p.user_id = i.user_id AND p.conversation_id = i.conversation_id), 0)
			  AND ` + unreadExpr + ` AND ` + visibleToMember + `)
		WHERE i.clinic_id = $1 AND i.conversation_id = $2 AND i.unread_count > 0`

	// sqlLastAfterChange recomputes the last message of the rows that show message $3, after
	// it was edited (its preview) or recalled (the latest one before it that was not).
	sqlLastAfterChange = `UPDATE inbox i SET (last_message_id, last_message_sender_id, last_message_preview, last_message_at) =
		` + lastMessageExpr + `
		WHERE i.clinic_id = $1 AND i.conversation_id = $2 AND i.last_message_id = $3`
)

// mutedAt says whether toggles (mute +p, unmute -p) leave the conversation muted at global
// position pos: the latest toggle before it decides, none means not muted.
func mutedAt(toggles []int64, pos int64) bool {
	var latest int64
	for _, t := range toggles {
		if a := abs(t); a < pos && a > abs(latest) {
			latest = t
		}
	}
	return latest > 0
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// derive is the Go twin of the rules above for a rebuild's load: it sets row r's unread count
// and unarchive position and returns the version of its last message; ok is false when the user
// sees no message that was not recalled (the row keeps its defaults).
func (l *inboxLoad) derive(k inboxKey, r *inboxRow) (last int64, ok bool) {
	c := l.convs[convKey{k.clinic, k.conv}]
	ws := l.windows[k]
	if c == nil || len(ws) == 0 {
		return 0, false
	}
	me, known := l.senders[k.user]
	if !known {
		me = -1
	}
	var pref memberPref
	if p := l.prefs[k]; p != nil {
		pref = *p
	}
	// Window by window, as the set-based rule joins them: a message in two overlapping
	// windows counts twice.
	for _, w := range ws {
		lo, hi := w.span(c.msgs)
		if lo >= hi {
			continue
		}
		if at := time.UnixMicro(c.msgs[hi-1].at).UTC(); at.After(r.activityAt) {
			r.activityAt = at // a recalled message was activity too
		}
		for i := hi - 1; i >= lo; i-- {
			if m := c.msgs[i]; !m.recalled {
				if !ok || m.version > last {
					last, ok = m.version, true
				}
				break
			}
		}
		for _, m := range c.msgs[lo:hi] {
			if !counts(m, me) {
				continue
			}
			if countsUnread(m, me) && m.version > pref.read {
				r.unread++
			}
			if m.position > r.unarchive && unarchives(m, pref.toggles) {
				r.unarchive = m.position
			}
		}
	}
	return last, ok
}
