package api

import (
	"strings"
	"testing"

	"github.com/huddle-chat/huddle/domain"
)

// TestScenario_ProviderToProviderWebChats walks the product brief
// (seed/provider-to-provider-web-chats.txt) section by section, in order, through HTTP, with
// several members of staff. It asserts what the write side decides: status codes, problem
// codes and the events stored. Steps whose outcome a user sees only through the read side
// (contacts search, chat list, archived list, system messages in the history) are marked
// READ-SIDE: they are asserted on the event store here and are for the read-side tests to
// assert again through the GET endpoints.
func TestScenario_ProviderToProviderWebChats(t *testing.T) {
	e := newCmdEnv(t, 1<<20)
	admin := e.token("root", RoleAdmin)

	// "All providers/staff (e.g. CSR, MA) that belong in the same waiting room are
	// automatically added to each other's contact list."
	e.expect(e.do("PUT", "/v1/admin/rooms/waiting-1", admin, map[string]any{"name": "Waiting room 1"}), 200, "")
	e.expect(e.do("PUT", "/v1/admin/rooms/waiting-2", admin, map[string]any{"name": "Waiting room 2"}), 200, "")
	staff := []struct{ id, name, title, room string }{
		{"dr-ann", "Dr Ann Lee", "Provider", "waiting-1"},
		{"bob-csr", "Bob Cruz", "CSR", "waiting-1"},
		{"cat-ma", "Cat Ma", "MA", "waiting-1"},
		{"dan-ma", "Dan Moss", "MA", "waiting-1"},
		{"eve-md", "Dr Eve Stone", "Provider", "waiting-2"},
	}
	for _, s := range staff {
		e.expect(e.do("PUT", "/v1/admin/users/"+s.id, admin, map[string]any{"name": s.name, "email": s.id + "@clinic.test", "title": s.title}), 200, "")
		e.expect(e.do("PUT", "/v1/admin/rooms/"+s.room+"/members/"+s.id, admin, nil), 204, "")
	}
	ann, bob, cat, dan, eve := e.token("dr-ann", RoleStaff), e.token("bob-csr", RoleStaff), e.token("cat-ma", RoleStaff),
		e.token("dan-ma", RoleStaff), e.token("eve-md", RoleStaff)

	// ---- Start or Continue Chat with Provider/Staff ----
	// 3-4. New Chat, type the person's name. READ-SIDE: GET /v1/contacts?q=bob lists Bob for
	// Ann, and ?q=eve is "no result" (Eve is in another waiting room).
	// 5. Start a chat with the person.
	r := e.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob-csr"}})
	e.expect(r, 201, "")
	direct := r.str("id")
	e.expect(e.do("POST", "/v1/conversations/"+direct+"/messages", ann, map[string]any{"text": "Hi Bob, is room 4 free?"}), 201, "")
	e.expect(e.do("POST", "/v1/conversations/"+direct+"/messages", bob, map[string]any{"text": "Yes, Dr Lee."}), 201, "")
	// Someone outside the address book cannot be chatted with.
	e.expect(e.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"eve-md"}}), 422, domain.CodeNotInAddressBook)
	// Nobody outside the chat can post in it, let alone another waiting room's provider.
	e.expect(e.do("POST", "/v1/conversations/"+direct+"/messages", eve, map[string]any{"text": "hello"}), 404, domain.CodeNotFound)
	// "Or you may send a file."
	f := e.upload(direct, ann, "intake-form.pdf", []byte("%PDF-1.4 intake"), "")
	e.expect(f, 201, "")
	fileID := f.JSON["file"].(map[string]any)["id"].(string)
	if dl := e.do("GET", "/v1/files/"+fileID, bob, nil); dl.Status != 200 || string(dl.Body) != "%PDF-1.4 intake" {
		t.Fatalf("Bob downloads the file: %d", dl.Status)
	}
	// Continue the conversation: the same chat, from either side.
	r = e.do("POST", "/v1/conversations", bob, map[string]any{"participant_ids": []string{"dr-ann"}})
	e.expect(r, 200, "")
	if r.str("id") != direct {
		t.Fatal("continuing the chat opened another one")
	}

	// ---- Add and Remove Participants from Group Chat ----
	r = e.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob-csr"}, "title": "Room 4 patient"})
	e.expect(r, 201, "")
	group := r.str("id")
	gpath := "/v1/conversations/" + group
	// Add a participant: searched in the address book, then Add.
	e.expect(e.do("POST", gpath+"/participants", ann, map[string]any{"user_id": "cat-ma"}), 204, "")
	e.expect(e.do("POST", gpath+"/participants", bob, map[string]any{"user_id": "dan-ma"}), 204, "")
	e.expect(e.do("POST", gpath+"/participants", ann, map[string]any{"user_id": "eve-md"}), 422, domain.CodeNotInAddressBook)
	// Remove a participant (any member may; not the owner).
	e.expect(e.do("DELETE", gpath+"/participants/dan-ma", cat, nil), 204, "")
	e.expect(e.do("DELETE", gpath+"/participants/dr-ann", cat, nil), 422, domain.CodeOwnerCannotBeRemoved)
	e.expect(e.do("POST", gpath+"/messages", dan, map[string]any{"text": "still here?"}), 403, domain.CodeCannotSend)
	e.expect(e.do("POST", gpath+"/messages", cat, map[string]any{"text": "Vitals are in."}), 201, "")

	// ---- Manage Chat Options ----
	// Mute/Unmute notifications. READ-SIDE: the muted chat's new messages stream with
	// notify:false and leave /v1/unread's total.
	e.expect(e.do("PUT", gpath+"/mute", bob, nil), 204, "")
	e.expect(e.do("DELETE", gpath+"/mute", bob, nil), 204, "")
	e.expect(e.do("PUT", gpath+"/mute", bob, nil), 204, "")
	// Archive chat; bring it back through New Chat. READ-SIDE: the direct chat leaves Bob's
	// list (archived=false) and appears under archived=true until reopened.
	e.expect(e.do("PUT", "/v1/conversations/"+direct+"/archive", bob, nil), 204, "")
	e.expect(e.do("POST", "/v1/conversations", bob, map[string]any{"participant_ids": []string{"dr-ann"}}), 200, "")
	if got := strings.Join(e.streamTypes(domain.MemberStream("bob-csr")), ","); got !=
		"ConversationMuted,ConversationUnmuted,ConversationMuted,ConversationArchived,ConversationUnarchived" {
		t.Fatalf("Bob's settings: %s", got)
	}

	// Leave group: "You left the group", and "You cannot send chat to this group".
	e.expect(e.do("POST", gpath+"/leave", cat, nil), 204, "")
	r = e.do("POST", gpath+"/messages", cat, map[string]any{"text": "one more thing"})
	e.expect(r, 403, domain.CodeCannotSend)
	if r.str("detail") != "You cannot send chat to this group" {
		t.Fatalf("detail: %s", r.Body)
	}
	// "You will not receive any new messages or updates from this group until someone adds you
	// back in." READ-SIDE: Cat's history stops at "You left the group".
	e.expect(e.do("POST", gpath+"/messages", ann, map[string]any{"text": "Cat has left"}), 201, "")
	e.expect(e.do("POST", gpath+"/participants", bob, map[string]any{"user_id": "cat-ma"}), 204, "")
	e.expect(e.do("POST", gpath+"/messages", cat, map[string]any{"text": "I'm back"}), 201, "")

	// Delete group: only the owner sees the option.
	e.expect(e.do("DELETE", gpath, bob, nil), 403, domain.CodeNotGroupOwner)
	e.expect(e.do("DELETE", gpath, ann, nil), 204, "")
	// "Once the group chat has been deleted, the chat will disappear from all members of the
	// chat list." READ-SIDE: gone from every member's list, archived or not; here: nothing
	// more is accepted, and the history stays in the store for auditors.
	e.expect(e.do("POST", gpath+"/messages", bob, map[string]any{"text": "hello?"}), 404, domain.CodeConversationDeleted)
	e.expect(e.do("PUT", gpath+"/archive", cat, nil), 404, domain.CodeConversationDeleted)
	want := "ConversationStarted,ParticipantAdded,ParticipantAdded,ParticipantRemoved,MessageSent," +
		"ParticipantLeft,MessageSent,ParticipantAdded,MessageSent,GroupDeleted"
	if got := strings.Join(e.streamTypes(domain.ConversationStream(group)), ","); got != want {
		t.Fatalf("group history:\n got %s\nwant %s", got, want)
	}

	// ---- Scope and Limitations ----
	// Only the group owner can delete; when the owner leaves, the longest-standing member
	// becomes owner and can.
	r = e.do("POST", "/v1/conversations", cat, map[string]any{"participant_ids": []string{"dan-ma", "bob-csr"}, "title": "Supplies"})
	e.expect(r, 201, "")
	supplies := "/v1/conversations/" + r.str("id")
	e.expect(e.do("POST", supplies+"/leave", cat, nil), 204, "")
	e.expect(e.do("DELETE", supplies, bob, nil), 403, domain.CodeNotGroupOwner)
	e.expect(e.do("DELETE", supplies, dan, nil), 204, "")

	// A deactivated colleague leaves every address book; the chat's history stays, and nothing
	// new can be sent to them.
	e.expect(e.do("DELETE", "/v1/admin/users/bob-csr", admin, nil), 204, "")
	e.expect(e.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob-csr"}}), 422, domain.CodeNotInAddressBook)
	e.expect(e.do("POST", "/v1/conversations/"+direct+"/messages", ann, map[string]any{"text": "Bob?"}), 403, domain.CodeCannotSend)
	if n := len(e.streamTypes(domain.ConversationStream(direct))); n != 4 {
		t.Fatalf("direct chat history: %d events", n)
	}
}
