package api_test

import (
	"slices"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/api"
	"github.com/huddle-chat/huddle/domain"
)

// API-v1.1 "Groups" and "Clinical messaging" (part 2: what members read and what their
// streams carry), through HTTP against a running Huddle. Every response is checked against
// openapi.yaml by scenario.send, every stream body by api.CheckSchema.

// message returns the message with id from the user's view of the conversation.
func (s *scenario) message(token, conversation, id string) map[string]any {
	s.t.Helper()
	for _, m := range s.messages(token, conversation) {
		if m["id"] == id {
			return m
		}
	}
	s.t.Fatalf("message %s is not in %s", id, conversation)
	return nil
}

// acks returns a message's acks as (acknowledged user ids, pending user ids).
func acksOf(t *testing.T, m map[string]any) (acked, pending []string) {
	t.Helper()
	a, ok := m["acks"].(map[string]any)
	if !ok {
		t.Fatalf("no acks on %v", m)
	}
	for _, x := range a["acked"].([]any) {
		acked = append(acked, x.(map[string]any)["user_id"].(string))
	}
	for _, x := range a["pending"].([]any) {
		pending = append(pending, x.(string))
	}
	return acked, pending
}

// urgentIDs lists the ids of the user's urgent list, in its order.
func (s *scenario) urgentIDs(token string) []string {
	s.t.Helper()
	r := s.must(s.do("GET", "/v1/urgent", token, nil), 200, "")
	return ids(r.list("messages"))
}

func TestGroups_UntitledGroupsShowTheOtherMembersNames(t *testing.T) {
	s := startScenario(t)
	tok := clinicalSetup(s)
	admin := s.token("root", api.RoleAdmin)
	for _, u := range []string{"fay", "gus"} {
		s.must(s.do("PUT", "/v1/admin/users/"+u, admin, map[string]any{"name": "User " + u, "email": u + "@clinic.test"}), 200, "")
		s.must(s.do("PUT", "/v1/admin/rooms/r1/members/"+u, admin, nil), 204, "")
	}
	ann, bob, cat := tok["ann"], tok["bob"], tok["cat"]

	// "the other participants' names (as the caller sees them, comma-separated ...)"
	r := s.must(s.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob", "cat"}}), 201, "")
	g := r.str("id")
	if r.str("title") != "User bob, User cat" {
		t.Fatalf("the creator's answer: %s", r.body)
	}
	if got := s.summary(ann, g)["title"]; got != "User bob, User cat" {
		t.Errorf("ann's list: title %q", got)
	}
	if got := s.summary(bob, g)["title"]; got != "User ann, User cat" {
		t.Errorf("bob's list: title %q", got)
	}
	if got := s.must(s.do("GET", "/v1/conversations/"+g, cat, nil), 200, "").str("title"); got != "User ann, User bob" {
		t.Errorf("cat's details: title %q", got)
	}
	// A directory rename shows at once: names are read, not stored.
	s.must(s.do("PUT", "/v1/admin/users/bob", admin, map[string]any{"name": "Bob Cruz", "email": "bob@clinic.test"}), 200, "")
	if got := s.summary(ann, g)["title"]; got != "Bob Cruz, User cat" {
		t.Errorf("after bob's rename: title %q", got)
	}
	// "... at most three and "+N""
	big := s.must(s.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob", "cat", "dan", "fay", "gus"}}), 201, "").str("id")
	if got := s.summary(ann, big)["title"]; got != "Bob Cruz, User cat, User dan +2" {
		t.Errorf("five others: title %q", got)
	}
	if got := s.summary(tok["dan"], big)["title"]; got != "User ann, Bob Cruz, User cat +2" {
		t.Errorf("dan's view: title %q", got)
	}
	// Only active members: cat leaves.
	s.must(s.do("POST", "/v1/conversations/"+g+"/leave", cat, nil), 204, "")
	if got := s.summary(ann, g)["title"]; got != "Bob Cruz" {
		t.Errorf("after cat left: title %q", got)
	}
	// "... until someone gives it one."
	s.must(s.do("PATCH", "/v1/conversations/"+g, bob, map[string]any{"title": "Night shift"}), 200, "")
	for _, who := range []string{ann, bob} {
		if got := s.summary(who, g)["title"]; got != "Night shift" {
			t.Errorf("after the rename: title %q", got)
		}
	}
	// The chat list search finds an untitled group by a member's name, as before.
	if !s.inList(ann, big, "?q=fay") {
		t.Error("search by a member's name misses the untitled group")
	}
}

func TestClinical_UrgentReachesThroughMuteAndArchiveAndWaitsForEachAck(t *testing.T) {
	s := startScenario(t)
	tok := clinicalSetup(s)
	ann, bob, cat, dan := tok["ann"], tok["bob"], tok["cat"], tok["dan"]
	g := s.must(s.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob", "cat"}, "title": "Ward"}), 201, "").str("id")
	messages := "/v1/conversations/" + g + "/messages"
	// bob muted and archived the chat.
	s.must(s.do("PUT", "/v1/conversations/"+g+"/mute", bob, nil), 204, "")
	s.must(s.do("PUT", "/v1/conversations/"+g+"/archive", bob, nil), 204, "")
	annLive, bobLive := s.stream(ann, "0"), s.stream(bob, "0")

	// A normal message in the muted chat: no pop-up, and the chat stays archived.
	normal := s.must(s.do("POST", messages, ann, map[string]any{"text": "Coffee's on"}), 201, "").str("id")
	if m := bobLive.next(t, "message", nil); m.data["id"] != normal || m.data["notify"] != false || m.data["priority"] != "normal" {
		t.Fatalf("normal message in a muted chat: %s", m.raw)
	}
	if s.inList(bob, g, "") {
		t.Fatal("a normal message in a muted chat brought it back from the archive")
	}
	// "An urgent message reaches every other active member even in a chat they muted
	// (notify:true on the stream), brings an archived chat back to their list ..."
	urgent := s.must(s.do("POST", messages, ann, map[string]any{"text": "Bed 4 needs a doctor now", "priority": "urgent"}), 201, "").str("id")
	m := bobLive.next(t, "message", nil)
	if m.data["id"] != urgent || m.data["notify"] != true || m.data["priority"] != "urgent" {
		t.Fatalf("urgent message in a muted chat: %s", m.raw)
	}
	api.CheckSchema(t, "Message", m.raw)
	if _, pending := acksOf(t, m.data); !slices.Equal(pending, []string{"bob", "cat"}) {
		t.Errorf("stream message pending %v", pending)
	}
	if !s.inList(bob, g, "") || s.summary(bob, g)["archived"] != false || s.summary(bob, g)["muted"] != true {
		t.Fatal("the urgent message did not bring the archived chat back (still muted)")
	}

	// Message fields: priority always present; acks on urgent messages only.
	if n := s.message(bob, g, normal); n["priority"] != "normal" || n["acks"] != nil {
		t.Errorf("normal message: %v", n)
	}
	if sys := s.messages(bob, g)[0]; sys["kind"] == "system" && sys["priority"] != "normal" {
		t.Errorf("system line without priority: %v", sys)
	}
	acked, pending := acksOf(t, s.message(ann, g, urgent))
	if len(acked) != 0 || !slices.Equal(pending, []string{"bob", "cat"}) {
		t.Fatalf("before any ack: acked %v pending %v", acked, pending)
	}
	// GET /v1/urgent: "the caller's urgent messages still waiting for their acknowledgement".
	if got := s.urgentIDs(bob); !slices.Equal(got, []string{urgent}) {
		t.Fatalf("bob's urgent list %v", got)
	}
	r := s.must(s.do("GET", "/v1/urgent", cat, nil), 200, "")
	if l := r.list("messages"); len(l) != 1 || l[0]["conversation_id"] != g || l[0]["text"] != "Bed 4 needs a doctor now" {
		t.Fatalf("cat's urgent list: %s", r.body)
	}
	if got := s.urgentIDs(ann); len(got) != 0 {
		t.Errorf("the sender owes nothing: %v", got)
	}
	// Someone added after it was sent owes nothing.
	s.must(s.do("POST", "/v1/conversations/"+g+"/participants", ann, map[string]any{"user_id": "dan"}), 204, "")
	if got := s.urgentIDs(dan); len(got) != 0 {
		t.Errorf("dan joined after it: %v", got)
	}

	// bob acknowledges: the sender's stream gets `ack`, acks move, bob's list empties.
	s.must(s.do("POST", messages+"/"+urgent+"/ack", bob, nil), 204, "")
	a := annLive.next(t, "ack", nil)
	if a.data["conversation_id"] != g || a.data["message_id"] != urgent || a.data["user_id"] != "bob" || a.data["at"] == nil {
		t.Fatalf("ack event: %s", a.raw)
	}
	acked, pending = acksOf(t, s.message(cat, g, urgent))
	if !slices.Equal(acked, []string{"bob"}) || !slices.Equal(pending, []string{"cat"}) {
		t.Fatalf("after bob's ack: acked %v pending %v", acked, pending)
	}
	if at := s.message(cat, g, urgent)["acks"].(map[string]any)["acked"].([]any)[0].(map[string]any)["at"]; at != a.data["at"] {
		t.Errorf("acked at %v, the ack event says %v", at, a.data["at"])
	}
	if got := s.urgentIDs(bob); len(got) != 0 {
		t.Errorf("bob acknowledged: %v", got)
	}
	// "... whatever mute and archive say": cat archives and mutes; it stays on cat's list,
	// oldest first with an urgent message of another conversation.
	s.must(s.do("PUT", "/v1/conversations/"+g+"/archive", cat, nil), 204, "")
	s.must(s.do("PUT", "/v1/conversations/"+g+"/mute", cat, nil), 204, "")
	direct := s.must(s.do("POST", "/v1/conversations", dan, map[string]any{"participant_ids": []string{"cat"}}), 201, "").str("id")
	later := s.must(s.do("POST", "/v1/conversations/"+direct+"/messages", dan, map[string]any{"text": "Later, urgent", "priority": "urgent"}), 201, "").str("id")
	if got := s.urgentIDs(cat); !slices.Equal(got, []string{urgent, later}) {
		t.Fatalf("cat's urgent list %v, want oldest first %v", got, []string{urgent, later})
	}
	// Another clinic sees none of it.
	if got := s.urgentIDs(s.otherClinicStaff("cat")); len(got) != 0 {
		t.Errorf("another clinic's cat: %v", got)
	}
	// "leaving or removal drops someone from pending".
	s.must(s.do("POST", "/v1/conversations/"+g+"/leave", cat, nil), 204, "")
	acked, pending = acksOf(t, s.message(ann, g, urgent))
	if !slices.Equal(acked, []string{"bob"}) || len(pending) != 0 {
		t.Fatalf("after cat left: acked %v pending %v", acked, pending)
	}
	if got := s.urgentIDs(cat); !slices.Equal(got, []string{later}) {
		t.Errorf("cat left the group: %v", got)
	}
	// A recalled urgent message waits for nobody.
	again := s.must(s.do("POST", messages, ann, map[string]any{"text": "Bed 5 too", "priority": "urgent"}), 201, "").str("id")
	if got := s.urgentIDs(dan); !slices.Equal(got, []string{later, again}) && !slices.Equal(got, []string{again}) {
		t.Fatalf("dan's urgent list %v", got)
	}
	s.must(s.do("DELETE", messages+"/"+again, ann, nil), 204, "")
	if _, pending := acksOf(t, s.message(bob, g, again)); len(pending) != 0 {
		t.Errorf("recalled: pending %v", pending)
	}
	if got := s.urgentIDs(bob); len(got) != 0 {
		t.Errorf("bob's list after the recall: %v", got)
	}
	// dan sent `later` himself; his list is empty once `again` is recalled.
	if got := s.urgentIDs(dan); len(got) != 0 {
		t.Errorf("dan's list after the recall: %v", got)
	}
	// Removal drops someone from pending too.
	third := s.must(s.do("POST", messages, ann, map[string]any{"text": "Bed 6", "priority": "urgent"}), 201, "").str("id")
	if _, pending := acksOf(t, s.message(ann, g, third)); !slices.Equal(pending, []string{"bob", "dan"}) {
		t.Fatalf("pending %v", pending)
	}
	s.must(s.do("DELETE", "/v1/conversations/"+g+"/participants/dan", ann, nil), 204, "")
	if _, pending := acksOf(t, s.message(ann, g, third)); !slices.Equal(pending, []string{"bob"}) {
		t.Errorf("after dan's removal: pending %v", pending)
	}
	if got := s.urgentIDs(dan); len(got) != 0 {
		t.Errorf("dan was removed: %v", got)
	}
}

func TestClinical_EditsAndRecallsAsMembersReadThem(t *testing.T) {
	s := startScenario(t)
	tok := clinicalSetup(s)
	ann, bob, cat := tok["ann"], tok["bob"], tok["cat"]
	g := s.must(s.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob", "cat"}, "title": "Ward"}), 201, "").str("id")
	messages := "/v1/conversations/" + g + "/messages"
	annLive, catLive := s.stream(ann, "0"), s.stream(cat, "0")

	first := s.must(s.do("POST", messages, bob, map[string]any{"text": "Patient in room 3"}), 201, "").str("id")
	// PATCH answers with the read side's message: edited_at, the new text, the priority.
	r := s.must(s.do("PATCH", messages+"/"+first, bob, map[string]any{"text": "Patient in room 5"}), 200, "")
	if r.str("text") != "Patient in room 5" || r.str("edited_at") == "" || r.str("priority") != "normal" {
		t.Fatalf("edit answer: %s", r.body)
	}
	m := s.message(cat, g, first)
	if m["text"] != "Patient in room 5" || m["edited_at"] != r.str("edited_at") {
		t.Fatalf("cat reads %v", m)
	}
	if p := s.summary(ann, g)["last_message"].(map[string]any)["preview"]; p != "Patient in room 5" {
		t.Errorf("preview after the edit: %v", p)
	}
	// "Edits and recalls reach every member who can see the message as a message_updated".
	for _, live := range []*sseClient{annLive, catLive} {
		u := live.next(t, "message_updated", nil)
		if u.data["id"] != first || u.data["text"] != "Patient in room 5" || u.data["conversation_id"] != g || u.data["edited_at"] == nil {
			t.Fatalf("message_updated on edit: %s", u.raw)
		}
		api.CheckSchema(t, "ConversationMessage", u.raw)
	}

	// Two more; ann has three unread, the last is the preview.
	second := s.must(s.do("POST", messages, bob, map[string]any{"text": "Wrong chat, sorry"}), 201, "").str("id")
	file := s.must(s.upload(g, bob, "scan.pdf", []byte("%PDF scan")), 201, "").str("id")
	if n := s.summary(ann, g)["unread_count"]; n != float64(3) {
		t.Fatalf("ann's unread %v, want 3", n)
	}
	// "The message keeps its place with recalled:true, an empty text and no file; chat list
	// previews and unread counts no longer count it."
	s.must(s.do("DELETE", messages+"/"+file, bob, nil), 204, "")
	sum := s.summary(ann, g)
	if sum["unread_count"] != float64(2) || sum["last_message"].(map[string]any)["id"] != second ||
		sum["last_message"].(map[string]any)["preview"] != "Wrong chat, sorry" {
		t.Fatalf("after recalling the file: %v", sum)
	}
	s.must(s.do("DELETE", messages+"/"+second, ann, nil), 204, "") // the owner
	msgs := s.messages(cat, g)
	var got []string
	for _, x := range msgs {
		got = append(got, x["id"].(string))
	}
	if i := slices.Index(got, second); i < 0 || got[i+1] != file {
		t.Fatalf("recalled messages keep their place: %v", got)
	}
	for _, id := range []string{second, file} {
		x := s.message(cat, g, id)
		if x["recalled"] != true || x["text"] != "" || x["file"] != nil {
			t.Errorf("recalled message reads %v", x)
		}
	}
	if x := s.message(cat, g, first); x["recalled"] != nil {
		t.Errorf("a message not recalled: %v", x)
	}
	sum = s.summary(ann, g)
	if sum["unread_count"] != float64(1) || sum["last_message"].(map[string]any)["id"] != first {
		t.Fatalf("after recalling both: %v", sum)
	}
	u := s.must(s.do("GET", "/v1/unread", ann, nil), 200, "")
	if u.json["total"] != float64(1) {
		t.Errorf("ann's unread total %s", u.body)
	}
	var upd sseEvent
	for upd.data["id"] != second {
		upd = catLive.next(t, "message_updated", nil)
	}
	if upd.data["recalled"] != true || upd.data["text"] != "" {
		t.Fatalf("message_updated on recall: %s", upd.raw)
	}
	// A recall of a message already read changes no count.
	s.must(s.do("POST", "/v1/conversations/"+g+"/read", cat, map[string]any{}), 204, "")
	s.must(s.do("DELETE", messages+"/"+first, bob, nil), 204, "")
	if n := s.summary(cat, g)["unread_count"]; n != float64(0) {
		t.Errorf("cat's unread after a recall of a read message: %v", n)
	}
	// With every message recalled, the chat list shows none (the chat started with no system line).
	if lm := s.summary(ann, g)["last_message"]; lm != nil {
		t.Errorf("preview after recalling everything: %v", lm)
	}
}

func TestClinical_ReceiptsAndTheirStreamEvents(t *testing.T) {
	s := startScenario(t)
	tok := clinicalSetup(s)
	ann, bob, cat, dan := tok["ann"], tok["bob"], tok["cat"], tok["dan"]
	g := s.must(s.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob", "cat"}, "title": "Ward"}), 201, "").str("id")
	receipts := func(token string) []map[string]any {
		return s.must(s.do("GET", "/v1/conversations/"+g+"/receipts", token, nil), 200, "").list("receipts")
	}
	// "every active member's read marker (nulls for one who has read nothing)"
	rs := receipts(bob)
	if len(rs) != 3 || ids2(rs, "user_id")[0] != "ann" {
		t.Fatalf("receipts %v", rs)
	}
	for _, r := range rs {
		if r["last_read_message_id"] != nil || r["read_at"] != nil {
			t.Errorf("nobody has read anything: %v", r)
		}
	}
	annLive, bobLive, catLive := s.stream(ann, "0"), s.stream(bob, "0"), s.stream(cat, "0")
	m1 := s.must(s.do("POST", "/v1/conversations/"+g+"/messages", ann, map[string]any{"text": "Rounds at 9"}), 201, "").str("id")
	s.must(s.do("POST", "/v1/conversations/"+g+"/read", bob, map[string]any{"up_to_message_id": m1}), 204, "")
	// "When a marker moves, the other active members' streams get a receipt event".
	for _, live := range []*sseClient{annLive, catLive} {
		e := live.next(t, "receipt", nil)
		if e.data["user_id"] != "bob" || e.data["last_read_message_id"] != m1 || e.data["read_at"] == nil || e.data["conversation_id"] != g {
			t.Fatalf("receipt event: %s", e.raw)
		}
		api.CheckSchema(t, "Receipt", e.raw)
	}
	for _, e := range bobLive.drain(300 * time.Millisecond) {
		if e.event == "receipt" {
			t.Errorf("bob got his own receipt: %s", e.raw)
		}
	}
	byUser := map[string]map[string]any{}
	for _, r := range receipts(cat) {
		byUser[r["user_id"].(string)] = r
	}
	if byUser["bob"]["last_read_message_id"] != m1 || byUser["bob"]["read_at"] == nil || byUser["cat"]["read_at"] != nil {
		t.Fatalf("receipts after bob read: %v", byUser)
	}
	// "every active member": cat leaves, and is no longer listed.
	s.must(s.do("POST", "/v1/conversations/"+g+"/leave", cat, nil), 204, "")
	if got := ids2(receipts(ann), "user_id"); !slices.Equal(got, []string{"ann", "bob"}) {
		t.Errorf("after cat left: %v", got)
	}
	// Membership and clinic scoped: 404 for a colleague who never took part, another clinic,
	// a deleted group.
	s.must(s.do("GET", "/v1/conversations/"+g+"/receipts", dan, nil), 404, domain.CodeNotFound)
	s.must(s.do("GET", "/v1/conversations/"+g+"/receipts", s.otherClinicStaff("ann"), nil), 404, domain.CodeNotFound)
	s.must(s.do("DELETE", "/v1/conversations/"+g, ann, nil), 204, "")
	s.must(s.do("GET", "/v1/conversations/"+g+"/receipts", bob, nil), 404, domain.CodeNotFound)
}

// ids2 lists the key's values of items.
func ids2(items []map[string]any, key string) []string {
	var out []string
	for _, it := range items {
		v, _ := it[key].(string)
		out = append(out, v)
	}
	return out
}
