package api_test

import (
	"slices"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/api"
	"github.com/huddle-chat/huddle/domain"
)

// API-v1.1 "Groups" and "Clinical messaging" (part 1: the commands), through HTTP against a
// running Huddle. Every response is checked against openapi.yaml by scenario.send.

// clinicalSetup puts ann, bob, cat and dan in waiting room r1 and eve in r2; it returns staff
// tokens by user, plus an auditor's.
func clinicalSetup(s *scenario) map[string]string {
	admin := s.token("root", api.RoleAdmin)
	s.must(s.do("PUT", "/v1/admin/rooms/r1", admin, map[string]any{"name": "Ward 1"}), 200, "")
	s.must(s.do("PUT", "/v1/admin/rooms/r2", admin, map[string]any{"name": "Ward 2"}), 200, "")
	tokens := map[string]string{"auditor": s.token("aud", api.RoleAuditor)}
	for _, u := range []string{"ann", "bob", "cat", "dan", "eve"} {
		s.must(s.do("PUT", "/v1/admin/users/"+u, admin, map[string]any{"name": "User " + u, "email": u + "@clinic.test"}), 200, "")
		room := "r1"
		if u == "eve" {
			room = "r2"
		}
		s.must(s.do("PUT", "/v1/admin/rooms/"+room+"/members/"+u, admin, nil), 204, "")
		tokens[u] = s.token(u, api.RoleStaff)
	}
	return tokens
}

// otherClinicStaff is a staff token of user in clinic-2's directory.
func (s *scenario) otherClinicStaff(user string) string {
	s.t.Helper()
	mint := func(u string, role string) string {
		tok, err := api.MintToken(s.secret, u, "clinic-2", []string{role}, time.Hour)
		if err != nil {
			s.t.Fatal(err)
		}
		return tok
	}
	s.must(s.do("PUT", "/v1/admin/users/"+user, mint("root", api.RoleAdmin), map[string]any{"name": "Other " + user, "email": user + "@other.test"}), 200, "")
	return mint(user, api.RoleStaff)
}

// eventTypes lists the conversation's stored event types, as an auditor reads them.
func (s *scenario) eventTypes(auditor, conversation string) []string {
	s.t.Helper()
	r := s.must(s.do("GET", "/v1/audit/conversations/"+conversation+"/events?limit=100", auditor, nil), 200, "")
	var out []string
	for _, e := range r.list("events") {
		out = append(out, e["type"].(string))
	}
	return out
}

func count(list []string, v string) int {
	n := 0
	for _, x := range list {
		if x == v {
			n++
		}
	}
	return n
}

func TestGroups_UntitledGroupsAndRename(t *testing.T) {
	s := startScenario(t)
	tok := clinicalSetup(s)
	ann, bob, cat, dan := tok["ann"], tok["bob"], tok["cat"], tok["dan"]

	// A group without a title is created (API.md: title is optional).
	r := s.must(s.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob", "cat"}}), 201, "")
	g := r.str("id")
	if r.str("kind") != domain.KindGroup || r.str("title") != "User bob, User cat" {
		t.Fatalf("untitled group: %s", r.body)
	}
	// One other person and an empty title is an untitled group too, not the direct chat.
	r = s.must(s.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob"}, "title": " "}), 201, "")
	if r.str("kind") != domain.KindGroup {
		t.Fatalf("a title (even blank) makes a group: %s", r.body)
	}
	direct := s.must(s.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob"}}), 201, "").str("id")

	// Any active member renames; the answer is their Summary with the new title.
	r = s.must(s.do("PATCH", "/v1/conversations/"+g, bob, map[string]any{"title": "ICU handover"}), 200, "")
	if r.str("id") != g || r.str("title") != "ICU handover" || r.str("kind") != domain.KindGroup || r.header.Get("Huddle-Position") == "" {
		t.Fatalf("rename answer: %s", r.body)
	}
	// The same title again changes nothing and answers the same.
	s.must(s.do("PATCH", "/v1/conversations/"+g, cat, map[string]any{"title": "ICU handover"}), 200, "")
	// Recorded as a system message.
	msgs := s.messages(ann, g)
	last := msgs[len(msgs)-1]
	if sys, _ := last["system"].(map[string]any); last["kind"] != "system" || sys["event"] != domain.SystemGroupRenamed || sys["actor_id"] != "bob" {
		t.Fatalf("the rename is not a system message: %v", last)
	}
	if n := count(s.eventTypes(tok["auditor"], g), "GroupRenamed"); n != 1 {
		t.Fatalf("%d GroupRenamed events, want 1", n)
	}

	s.must(s.do("PATCH", "/v1/conversations/"+g, bob, map[string]any{"title": ""}), 400, domain.CodeInvalid)
	s.must(s.do("PATCH", "/v1/conversations/"+direct, bob, map[string]any{"title": "x"}), 422, domain.CodeNotAGroup)
	s.must(s.do("PATCH", "/v1/conversations/"+g, dan, map[string]any{"title": "x"}), 404, domain.CodeNotFound)
	s.must(s.do("POST", "/v1/conversations/"+g+"/leave", cat, nil), 204, "")
	s.must(s.do("PATCH", "/v1/conversations/"+g, cat, map[string]any{"title": "x"}), 403, domain.CodeNotAParticipant)
}

func TestClinical_UrgentMessagesAndAcknowledgements(t *testing.T) {
	s := startScenario(t)
	tok := clinicalSetup(s)
	ann, bob, cat, dan := tok["ann"], tok["bob"], tok["cat"], tok["dan"]
	g := s.must(s.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob", "cat"}, "title": "Ward"}), 201, "").str("id")
	messages := "/v1/conversations/" + g + "/messages"

	s.must(s.do("POST", messages, ann, map[string]any{"text": "x", "priority": "high"}), 400, domain.CodeInvalid)
	s.must(s.do("POST", messages, ann, map[string]any{"text": "x", "priority": 1}), 400, domain.CodeInvalid)
	urgent := s.must(s.do("POST", messages, ann, map[string]any{"text": "Bed 4 needs a doctor now", "priority": "urgent", "client_message_id": "u-1"}), 201, "")
	if urgent.str("priority") != domain.PriorityUrgent {
		t.Fatalf("urgent message: %s", urgent.body)
	}
	normal := s.must(s.do("POST", messages, ann, map[string]any{"text": "Coffee's on"}), 201, "")
	if normal.str("priority") != domain.PriorityNormal {
		t.Fatalf("a message without priority is normal: %s", normal.body)
	}
	explicit := s.must(s.do("POST", messages, ann, map[string]any{"text": "Fine", "priority": "normal"}), 201, "")
	if explicit.str("priority") != domain.PriorityNormal {
		t.Fatalf("normal message: %s", explicit.body)
	}
	// The same client_message_id is the same message: with another priority it is a conflict.
	again := s.must(s.do("POST", messages, ann, map[string]any{"text": "Bed 4 needs a doctor now", "priority": "urgent", "client_message_id": "u-1"}), 201, "")
	if again.str("id") != urgent.str("id") {
		t.Fatalf("repeat sent another message: %s", again.body)
	}
	s.must(s.do("POST", messages, ann, map[string]any{"text": "Bed 4 needs a doctor now", "client_message_id": "u-1"}), 409, domain.CodeConflict)

	ack := func(token, id string) reply { return s.do("POST", messages+"/"+id+"/ack", token, nil) }
	s.must(ack(bob, urgent.str("id")), 204, "")
	s.must(ack(bob, urgent.str("id")), 204, "") // again: no change
	s.must(ack(ann, urgent.str("id")), 422, domain.CodeCannotAckOwn)
	s.must(ack(bob, normal.str("id")), 422, domain.CodeNotUrgent)
	s.must(ack(dan, urgent.str("id")), 404, domain.CodeNotFound) // never a member
	s.must(ack(bob, g+".999"), 404, domain.CodeNotFound)         // no such message
	s.must(ack(bob, g+".1"), 404, domain.CodeNotFound)           // the start is not a message
	s.must(ack(bob, "bad!id"), 400, domain.CodeInvalid)
	// A message of another conversation, named under this one, is not one of its messages.
	direct := s.must(s.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob"}}), 201, "").str("id")
	elsewhere := s.must(s.do("POST", "/v1/conversations/"+direct+"/messages", ann, map[string]any{"text": "now", "priority": "urgent"}), 201, "").str("id")
	s.must(ack(bob, elsewhere), 404, domain.CodeNotFound)
	s.must(s.do("POST", "/v1/conversations/"+direct+"/messages/"+elsewhere+"/ack", bob, nil), 204, "")
	s.must(ack(s.otherClinicStaff("bob"), urgent.str("id")), 404, domain.CodeNotFound)
	s.must(s.do("POST", "/v1/conversations/"+g+"/leave", cat, nil), 204, "")
	s.must(ack(cat, urgent.str("id")), 403, domain.CodeNotAParticipant)

	types := s.eventTypes(tok["auditor"], g)
	if n := count(types, "MessageAcknowledged"); n != 1 {
		t.Fatalf("%d acknowledgements stored, want 1: %v", n, types)
	}
}

func TestClinical_EditAndRecall(t *testing.T) {
	s := startScenario(t)
	tok := clinicalSetup(s)
	ann, bob, cat, dan := tok["ann"], tok["bob"], tok["cat"], tok["dan"]
	g := s.must(s.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob", "cat"}, "title": "Ward"}), 201, "").str("id")
	messages := "/v1/conversations/" + g + "/messages"
	sent := s.must(s.do("POST", messages, bob, map[string]any{"text": "Patient in room 3"}), 201, "")
	id := sent.str("id")
	edit := func(token, id string, text any) reply {
		return s.do("PATCH", messages+"/"+id, token, map[string]any{"text": text})
	}

	r := s.must(edit(bob, id, "Patient in room 5"), 200, "")
	if r.str("id") != id || r.str("text") != "Patient in room 5" || r.str("edited_at") == "" ||
		r.str("sent_at") != sent.str("sent_at") || r.str("sender_id") != "bob" || r.header.Get("Huddle-Position") == "" {
		t.Fatalf("edit answer: %s (sent %s)", r.body, sent.body)
	}
	s.must(edit(bob, id, "Patient in room 6"), 200, "")
	s.must(edit(ann, id, "x"), 403, domain.CodeNotMessageSender)
	s.must(edit(dan, id, "x"), 404, domain.CodeNotFound)
	s.must(edit(bob, id, " "), 400, domain.CodeInvalid)
	s.must(edit(bob, id, 7), 400, domain.CodeInvalid)
	s.must(edit(bob, g+".999", "x"), 404, domain.CodeNotFound)
	file := s.must(s.upload(g, bob, "scan.pdf", []byte("%PDF scan")), 201, "")
	s.must(edit(bob, file.str("id"), "x"), 422, domain.CodeNotEditable)

	recall := func(token, id string) reply { return s.do("DELETE", messages+"/"+id, token, nil) }
	s.must(recall(cat, id), 403, domain.CodeNotMessageSender)
	s.must(recall(dan, id), 404, domain.CodeNotFound)
	stranger := s.otherClinicStaff("bob")
	s.must(edit(stranger, id, "x"), 404, domain.CodeNotFound)
	s.must(recall(stranger, id), 404, domain.CodeNotFound)
	s.must(recall(ann, id), 204, "") // the group's owner
	s.must(recall(bob, id), 204, "") // again: no change
	s.must(edit(bob, id, "x"), 422, domain.CodeNotEditable)
	fileID := file.json["file"].(map[string]any)["id"].(string)
	s.must(s.do("GET", "/v1/files/"+fileID, cat, nil), 200, "")
	s.must(recall(bob, file.str("id")), 204, "") // the sender, a file
	s.must(s.do("GET", "/v1/files/"+fileID, cat, nil), 404, domain.CodeNotFound)
	s.must(s.do("GET", "/v1/files/"+fileID, bob, nil), 404, domain.CodeNotFound)

	// bob is removed: he can no longer edit or recall his messages.
	other := s.must(s.do("POST", messages, bob, map[string]any{"text": "One more"}), 201, "").str("id")
	s.must(s.do("DELETE", "/v1/conversations/"+g+"/participants/bob", ann, nil), 204, "")
	s.must(edit(bob, other, "x"), 403, domain.CodeCannotSend)
	s.must(recall(bob, other), 403, domain.CodeNotAParticipant)

	types := s.eventTypes(tok["auditor"], g)
	if count(types, "MessageEdited") != 2 || count(types, "MessageRecalled") != 2 {
		t.Fatalf("events: %v", types)
	}
	// Auditors keep the original text: the MessageSent is still there, before its edits.
	if i, j := slices.Index(types, "MessageSent"), slices.Index(types, "MessageEdited"); i < 0 || j < i {
		t.Fatalf("events: %v", types)
	}
}
