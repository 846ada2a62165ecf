package inbox

import (
	"cmp"
	"slices"
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
	// everyone but the sender whose read marker is before it.
	sqlFanOut = `UPDATE inbox i SET
		last_message_id = $3, last_message_sender_id = $4, last_message_preview = $5,
		last_message_at = $6, last_activity_at = greatest(i.last_activity_at, $6),
		unread_count = i.unread_count + CASE WHEN $7 AND i.user_id <> $4 AND $8 > coalesce(
			(SELECT p.read_version FROM member_prefs p
			 WHERE p.clinic_id = i.clinic_id AND p.user_id = i.user_id AND p.conversation_id = i.conversation_id), 0)
			THEN 1 ELSE 0 END,
		unarchive_position = CASE WHEN $7 AND i.user_id <> $4 AND NOT ` + mutedAtFanOut + `
			THEN greatest(i.unarchive_position, $9) ELSE i.unarchive_position END
		WHERE i.clinic_id = $1 AND i.conversation_id = $2 AND i.membership = 'active'`

	// sqlRecountUnarchive recomputes unarchive_position after a mute toggle (which may have
	// been applied after messages that came later in the store): the latest visible message
	// from someone else that arrived while not muted.
	sqlRecountUnarchive = `UPDATE inbox i SET unarchive_position = coalesce((
			SELECT max(m.position) FROM messages m
			WHERE m.clinic_id = i.clinic_id AND m.conversation_id = i.conversation_id
			  AND ` + countsExpr + ` AND ` + visibleToMember + `
			  AND NOT ` + mutedAtMessage + `), 0)
		WHERE i.clinic_id = $1 AND i.user_id = $2 AND i.conversation_id = $3`
	// sqlRecountUnread recomputes one user's unread count after their read marker moved: text
	// and file messages from others after the marker, inside the user's visibility windows.
	sqlRecountUnread = `UPDATE inbox i SET unread_count = (
			SELECT count(*) FROM messages m
			WHERE m.clinic_id = i.clinic_id AND m.conversation_id = i.conversation_id
			  AND m.version > $4 AND ` + countsExpr + ` AND ` + visibleToMember + `)
		WHERE i.clinic_id = $1 AND i.user_id = $2 AND i.conversation_id = $3`
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
// sees no message (the row keeps its defaults).
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
		if v := c.msgs[hi-1].version; !ok || v > last {
			last, ok = v, true
		}
		for _, m := range c.msgs[lo:hi] {
			if !counts(m, me) {
				continue
			}
			if m.version > pref.read {
				r.unread++
			}
			if m.position > r.unarchive && !mutedAt(pref.toggles, m.position) {
				r.unarchive = m.position
			}
		}
	}
	return last, ok
}
