package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/api"
	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/internal/app"
	"github.com/huddle-chat/huddle/internal/testenv"
)

// scenario drives a whole running Huddle (composition root, relay, projectors, HTTP) on a
// fresh database and an embedded NATS server, as a client would.
type scenario struct {
	t      *testing.T
	base   string
	secret []byte
	app    *app.App
	// pos is the Huddle-Position of the last successful command, sent back on every GET so
	// reads see that write (read-your-writes; no sleeping, no timed assertions).
	pos string
}

func startScenario(t *testing.T) *scenario {
	t.Helper()
	_, dbURL := testenv.Postgres(t)
	broker := testenv.NATS(t)
	return startInstance(t, dbURL, broker.ClientURL(), []byte("scenario-secret-scenario-secret-scenario")).scenario
}

func (s *scenario) token(user string, roles ...string) string {
	s.t.Helper()
	tok, err := api.MintToken(s.secret, user, "clinic-1", roles, time.Hour)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

type reply struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

func (r reply) str(k string) string { v, _ := r.json[k].(string); return v }
func (r reply) list(k string) []map[string]any {
	var out []map[string]any
	items, _ := r.json[k].([]any)
	for _, it := range items {
		m, _ := it.(map[string]any)
		out = append(out, m)
	}
	return out
}

func (s *scenario) send(req *http.Request, token string) reply {
	s.t.Helper()
	req.Header.Set("Authorization", "Bearer "+token)
	if req.Method == http.MethodGet && s.pos != "" {
		req.Header.Set("Huddle-Min-Position", s.pos)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	// Every response must be one openapi.yaml documents, body and all.
	api.CheckResponse(s.t, req.Method, req.URL.Path, res.StatusCode, res.Header.Get("Content-Type"), body)
	r := reply{status: res.StatusCode, header: res.Header, body: body}
	if strings.Contains(res.Header.Get("Content-Type"), "json") && len(body) > 0 {
		if err := json.Unmarshal(body, &r.json); err != nil {
			s.t.Fatalf("%s %s: %v: %s", req.Method, req.URL.Path, err, body)
		}
	}
	if p := res.Header.Get("Huddle-Position"); p != "" && res.StatusCode < 300 {
		s.pos = p
	}
	return r
}

func (s *scenario) do(method, path, token string, body any) reply {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return s.send(req, token)
}

// must asserts a status and, for errors, the problem code.
func (s *scenario) must(r reply, status int, code string) reply {
	s.t.Helper()
	if r.status != status || (code != "" && r.str("code") != code) {
		s.t.Fatalf("want %d %s, got %d: %s", status, code, r.status, r.body)
	}
	return r
}

func (s *scenario) upload(conversationID, token, name string, data []byte) reply {
	s.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("file", name)
	if err != nil {
		s.t.Fatal(err)
	}
	fw.Write(data)
	mw.Close()
	req, err := http.NewRequest(http.MethodPost, s.base+"/v1/conversations/"+conversationID+"/files", &buf)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return s.send(req, token)
}

func ids(items []map[string]any) []string {
	var out []string
	for _, it := range items {
		id, _ := it["id"].(string)
		out = append(out, id)
	}
	return out
}

// inList reports whether the user's chat list (archived or not, as asked) holds conversation.
func (s *scenario) inList(token, conversation, query string) bool {
	s.t.Helper()
	r := s.must(s.do("GET", "/v1/conversations"+query, token, nil), 200, "")
	return slices.Contains(ids(r.list("conversations")), conversation)
}

func (s *scenario) summary(token, conversation string) map[string]any {
	s.t.Helper()
	r := s.must(s.do("GET", "/v1/conversations?limit=100", token, nil), 200, "")
	for _, c := range r.list("conversations") {
		if c["id"] == conversation {
			return c
		}
	}
	s.t.Fatalf("conversation %s is not in the chat list: %s", conversation, r.body)
	return nil
}

func (s *scenario) messages(token, conversation string) []map[string]any {
	s.t.Helper()
	return s.must(s.do("GET", "/v1/conversations/"+conversation+"/messages?limit=100", token, nil), 200, "").list("messages")
}

// TestScenario_ProviderToProviderWebChats walks the product brief
// (seed/provider-to-provider-web-chats.txt) section by section, in order, through HTTP against
// a running Huddle, with several members of staff: what each of them is allowed to do, and
// what each of them then sees.
func TestScenario_ProviderToProviderWebChats(t *testing.T) {
	s := startScenario(t)
	admin := s.token("root", api.RoleAdmin)

	// "All providers/staff (e.g. CSR, MA) that belong in the same waiting room are
	// automatically added to each other's contact list."
	s.must(s.do("PUT", "/v1/admin/rooms/waiting-1", admin, map[string]any{"name": "Waiting room 1"}), 200, "")
	s.must(s.do("PUT", "/v1/admin/rooms/waiting-2", admin, map[string]any{"name": "Waiting room 2"}), 200, "")
	for _, u := range []struct{ id, name, title, room string }{
		{"dr-ann", "Ann Lee", "Provider", "waiting-1"},
		{"bob-csr", "Bob Cruz", "CSR", "waiting-1"},
		{"cat-ma", "Cat Ma", "MA", "waiting-1"},
		{"dan-ma", "Dan Moss", "MA", "waiting-1"},
		{"eve-md", "Eve Stone", "Provider", "waiting-2"},
	} {
		s.must(s.do("PUT", "/v1/admin/users/"+u.id, admin, map[string]any{"name": u.name, "email": u.id + "@clinic.test", "title": u.title}), 200, "")
		s.must(s.do("PUT", "/v1/admin/rooms/"+u.room+"/members/"+u.id, admin, nil), 204, "")
	}
	ann, bob, cat := s.token("dr-ann", api.RoleStaff), s.token("bob-csr", api.RoleStaff), s.token("cat-ma", api.RoleStaff)
	dan, eve := s.token("dan-ma", api.RoleStaff), s.token("eve-md", api.RoleStaff)
	var direct, group string // shared by the sections, which run in order

	t.Run("StartOrContinueChat", func(t *testing.T) {
		s.t = t
		// 3-4. New Chat: type the name or email of someone in your address book.
		r := s.must(s.do("GET", "/v1/contacts?q=BOB", ann, nil), 200, "")
		if got := ids(r.list("contacts")); !slices.Equal(got, []string{"bob-csr"}) {
			t.Fatalf("Ann searching bob: %v", got)
		}
		r = s.must(s.do("GET", "/v1/contacts?q=clinic.test", ann, nil), 200, "")
		if got := ids(r.list("contacts")); len(got) != 3 || slices.Contains(got, "dr-ann") || slices.Contains(got, "eve-md") {
			t.Fatalf("Ann's address book: %v (colleagues of her room, never herself)", got)
		}
		// "no result": Eve is in another waiting room.
		if r := s.must(s.do("GET", "/v1/contacts?q=eve", ann, nil), 200, ""); len(r.list("contacts")) != 0 {
			t.Fatalf("Eve must be no result for Ann: %s", r.body)
		}
		s.must(s.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"eve-md"}}), 422, domain.CodeNotInAddressBook)

		// 5. Start a chat, or send a file.
		r = s.must(s.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob-csr"}}), 201, "")
		direct = r.str("id")
		s.must(s.do("POST", "/v1/conversations/"+direct+"/messages", ann, map[string]any{"text": "Hi Bob, is room 4 free?"}), 201, "")
		s.must(s.do("POST", "/v1/conversations/"+direct+"/messages", bob, map[string]any{"text": "Yes, Dr Lee."}), 201, "")
		f := s.must(s.upload(direct, ann, "intake-form.pdf", []byte("%PDF-1.4 intake")), 201, "")
		fileID := f.json["file"].(map[string]any)["id"].(string)
		dl := s.do("GET", "/v1/files/"+fileID, bob, nil)
		if dl.status != 200 || string(dl.body) != "%PDF-1.4 intake" || !strings.HasPrefix(dl.header.Get("Content-Disposition"), "attachment") {
			t.Fatalf("Bob downloads the file: %d %s", dl.status, dl.header)
		}
		if dl := s.do("GET", "/v1/files/"+fileID, eve, nil); dl.status != 404 {
			t.Fatalf("Eve must not get the file: %d", dl.status)
		}
		// 1-2. The chats dropdown: the recent conversation with its last message.
		sum := s.summary(bob, direct)
		if sum["kind"] != "direct" || sum["last_message"] == nil || sum["can_send"] != true {
			t.Fatalf("Bob's summary: %v", sum)
		}
		msgs := s.messages(bob, direct)
		if len(msgs) != 3 || msgs[0]["text"] != "Hi Bob, is room 4 free?" || msgs[2]["kind"] != "file" {
			t.Fatalf("Bob's history: %v", msgs)
		}
		// Continue the conversation: the same chat, from either side.
		r = s.must(s.do("POST", "/v1/conversations", bob, map[string]any{"participant_ids": []string{"dr-ann"}}), 200, "")
		if r.str("id") != direct {
			t.Fatal("continuing the chat opened another one")
		}
	})

	t.Run("AddAndRemoveParticipants", func(t *testing.T) {
		s.t = t
		r := s.must(s.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob-csr"}, "title": "Room 4 patient"}), 201, "")
		group = r.str("id")
		g := "/v1/conversations/" + group
		s.must(s.do("POST", g+"/participants", ann, map[string]any{"user_id": "cat-ma"}), 204, "")
		s.must(s.do("POST", g+"/participants", bob, map[string]any{"user_id": "dan-ma"}), 204, "")
		s.must(s.do("POST", g+"/participants", ann, map[string]any{"user_id": "eve-md"}), 422, domain.CodeNotInAddressBook)
		details := s.must(s.do("GET", g, cat, nil), 200, "")
		roles := map[string]string{}
		for _, p := range details.list("participants") {
			roles[p["id"].(string)], _ = p["role"].(string)
		}
		if roles["dr-ann"] != "owner" || roles["cat-ma"] != "member" || len(roles) != 4 {
			t.Fatalf("participants: %s", details.body)
		}
		// Remove: any member may; never the owner.
		s.must(s.do("DELETE", g+"/participants/dan-ma", cat, nil), 204, "")
		s.must(s.do("DELETE", g+"/participants/dr-ann", cat, nil), 422, domain.CodeOwnerCannotBeRemoved)
		s.must(s.do("POST", g+"/messages", dan, map[string]any{"text": "still here?"}), 403, domain.CodeCannotSend)
		s.must(s.do("POST", g+"/messages", cat, map[string]any{"text": "Vitals are in."}), 201, "")
		// System messages record who was added and removed.
		var events []string
		for _, m := range s.messages(ann, group) {
			if sys, ok := m["system"].(map[string]any); ok {
				events = append(events, sys["event"].(string)+":"+sys["subject_id"].(string))
			}
		}
		if !slices.Contains(events, domain.SystemParticipantAdded+":cat-ma") || !slices.Contains(events, domain.SystemParticipantRemoved+":dan-ma") {
			t.Fatalf("system messages: %v", events)
		}
		// Dan, removed, sees history up to his removal and nothing after.
		danMsgs := s.messages(dan, group)
		if last := danMsgs[len(danMsgs)-1]; last["kind"] != "system" || last["system"].(map[string]any)["event"] != domain.SystemParticipantRemoved {
			t.Fatalf("Dan's history must end at his removal: %v", danMsgs)
		}
	})

	t.Run("MuteNotifications", func(t *testing.T) {
		s.t = t
		g := "/v1/conversations/" + group
		s.must(s.do("PUT", g+"/mute", bob, nil), 204, "")
		if sum := s.summary(bob, group); sum["muted"] != true {
			t.Fatalf("muted: %v", sum)
		}
		s.must(s.do("DELETE", g+"/mute", bob, nil), 204, "")
		if sum := s.summary(bob, group); sum["muted"] != false {
			t.Fatalf("unmuted: %v", sum)
		}
		s.must(s.do("PUT", g+"/mute", bob, nil), 204, "")
		s.must(s.do("POST", "/v1/conversations/"+group+"/read", bob, nil), 204, "")
		s.must(s.do("POST", g+"/messages", ann, map[string]any{"text": "BP 120/80"}), 201, "")
		u := s.must(s.do("GET", "/v1/unread", bob, nil), 200, "")
		if u.json["total_including_muted"].(float64) < 1 || u.json["total"].(float64) >= u.json["total_including_muted"].(float64) {
			t.Fatalf("muted unread counts still grow but leave the total: %s", u.body)
		}
	})

	t.Run("ArchiveChat", func(t *testing.T) {
		s.t = t
		s.must(s.do("PUT", "/v1/conversations/"+direct+"/archive", bob, nil), 204, "")
		if s.inList(bob, direct, "") || !s.inList(bob, direct, "?archived=true") {
			t.Fatal("archived chat must move from the chat list to the archived list")
		}
		// "You can bring the archived chat back to the list by clicking New chat."
		s.must(s.do("POST", "/v1/conversations", bob, map[string]any{"participant_ids": []string{"dr-ann"}}), 200, "")
		if !s.inList(bob, direct, "") {
			t.Fatal("reopening the chat must bring it back")
		}
		// A new message from someone else brings it back too (it is not muted).
		s.must(s.do("PUT", "/v1/conversations/"+direct+"/archive", bob, nil), 204, "")
		s.must(s.do("POST", "/v1/conversations/"+direct+"/messages", ann, map[string]any{"text": "One more thing"}), 201, "")
		if !s.inList(bob, direct, "") {
			t.Fatal("a message from Ann must unarchive the chat for Bob")
		}
	})

	t.Run("LeaveGroup", func(t *testing.T) {
		s.t = t
		g := "/v1/conversations/" + group
		s.must(s.do("POST", g+"/leave", cat, nil), 204, "")
		r := s.must(s.do("POST", g+"/messages", cat, map[string]any{"text": "one more thing"}), 403, domain.CodeCannotSend)
		if r.str("detail") != "You cannot send chat to this group" {
			t.Fatalf("detail: %s", r.body)
		}
		s.must(s.do("POST", g+"/messages", ann, map[string]any{"text": "Cat has left"}), 201, "")
		sum := s.summary(cat, group)
		if sum["membership"] != "left" || sum["can_send"] != false {
			t.Fatalf("Cat's summary: %v", sum)
		}
		// "You left the group", and nothing new until someone adds you back.
		catMsgs := s.messages(cat, group)
		last := catMsgs[len(catMsgs)-1]
		if sys, _ := last["system"].(map[string]any); sys == nil || sys["event"] != domain.SystemParticipantLeft || sys["subject_id"] != "cat-ma" {
			t.Fatalf("Cat's history must end with her leaving: %v", last)
		}
		s.must(s.do("POST", g+"/participants", bob, map[string]any{"user_id": "cat-ma"}), 204, "")
		s.must(s.do("POST", g+"/messages", cat, map[string]any{"text": "I'm back"}), 201, "")
	})

	t.Run("DeleteGroup", func(t *testing.T) {
		s.t = t
		g := "/v1/conversations/" + group
		s.must(s.do("PUT", g+"/archive", cat, nil), 204, "")
		s.must(s.do("DELETE", g, bob, nil), 403, domain.CodeNotGroupOwner)
		s.must(s.do("DELETE", g, ann, nil), 204, "")
		// "Once the group chat has been deleted, the chat will disappear from all members of
		// the chat list", archived or not.
		for name, tok := range map[string]string{"ann": ann, "bob": bob, "cat": cat} {
			if s.inList(tok, group, "") || s.inList(tok, group, "?archived=true") {
				t.Fatalf("%s still lists the deleted group", name)
			}
			s.must(s.do("GET", g, tok, nil), 404, "")
		}
		s.must(s.do("POST", g+"/messages", bob, map[string]any{"text": "hello?"}), 404, domain.CodeConversationDeleted)
	})

	t.Run("ScopeAndLimitations", func(t *testing.T) {
		s.t = t
		// Only the owner deletes; when the owner leaves, the longest-standing member owns it.
		r := s.must(s.do("POST", "/v1/conversations", cat, map[string]any{"participant_ids": []string{"dan-ma", "bob-csr"}, "title": "Supplies"}), 201, "")
		g := "/v1/conversations/" + r.str("id")
		s.must(s.do("POST", g+"/leave", cat, nil), 204, "")
		s.must(s.do("DELETE", g, bob, nil), 403, domain.CodeNotGroupOwner)
		if d := s.must(s.do("GET", g, dan, nil), 200, ""); d.str("owner_id") != "dan-ma" {
			t.Fatalf("owner after Cat left: %s", d.body)
		}
		s.must(s.do("DELETE", g, dan, nil), 204, "")
		// A deactivated colleague leaves every address book; the chat's history stays.
		s.must(s.do("DELETE", "/v1/admin/users/bob-csr", admin, nil), 204, "")
		if r := s.must(s.do("GET", "/v1/contacts?q=bob", ann, nil), 200, ""); len(r.list("contacts")) != 0 {
			t.Fatalf("deactivated Bob still in Ann's contacts: %s", r.body)
		}
		s.must(s.do("POST", "/v1/conversations/"+direct+"/messages", ann, map[string]any{"text": "Bob?"}), 403, domain.CodeCannotSend)
		if len(s.messages(ann, direct)) < 4 {
			t.Fatal("the direct chat's history must stay")
		}
	})
}
