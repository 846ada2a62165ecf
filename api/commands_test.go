package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/commands"
	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/blobs"
	"github.com/huddle-chat/huddle/internal/testenv"
)

// TestMain is the api package's only TestMain: it stops the shared Postgres cluster at exit.
func TestMain(m *testing.M) { testenv.Main(m) }

const testClinic = "c1"

// cmdEnv is an API with the real command handler on a fresh Postgres database.
type cmdEnv struct {
	t      *testing.T
	srv    *Server
	store  *eventstore.Store
	secret []byte
}

func newCmdEnv(t *testing.T, maxFile int64) *cmdEnv {
	t.Helper()
	pool, _ := testenv.Postgres(t)
	store := eventstore.New(pool)
	h := commands.New(store, blobs.New(pool), commands.Options{MaxFileBytes: maxFile})
	secret := []byte("test-secret-test-secret-test-secret")
	srv := New(Deps{Logger: testenv.Logger(t), JWTSecret: secret, Commands: h, MaxFileBytes: maxFile})
	return &cmdEnv{t: t, srv: srv, store: store, secret: secret}
}

func (e *cmdEnv) token(user string, roles ...string) string {
	e.t.Helper()
	return e.tokenIn(user, testClinic, roles...)
}

func (e *cmdEnv) tokenIn(user, clinic string, roles ...string) string {
	e.t.Helper()
	tok, err := MintToken(e.secret, user, clinic, roles, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// resp is a recorded response with its JSON body decoded loosely.
type resp struct {
	Status int
	Header http.Header
	Body   []byte
	JSON   map[string]any
}

func (r resp) code() string { s, _ := r.JSON["code"].(string); return s }
func (r resp) str(k string) string {
	s, _ := r.JSON[k].(string)
	return s
}

func (e *cmdEnv) send(req *http.Request, token string) resp {
	e.t.Helper()
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(rec, req)
	out := resp{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
	if strings.Contains(rec.Header().Get("Content-Type"), "json") && rec.Body.Len() > 0 {
		if err := json.Unmarshal(rec.Body.Bytes(), &out.JSON); err != nil {
			e.t.Fatalf("%s %s: body is not a JSON object: %v: %s", req.Method, req.URL, err, rec.Body.String())
		}
	}
	return out
}

// do sends a JSON request (body nil: none) as token.
func (e *cmdEnv) do(method, path, token string, body any) resp {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		r = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, r)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return e.send(req, token)
}

// upload posts a multipart file (and, when given, a client_message_id field first).
func (e *cmdEnv) upload(conversationID, token, name string, data []byte, clientMessageID string) resp {
	e.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if clientMessageID != "" {
		if err := mw.WriteField("client_message_id", clientMessageID); err != nil {
			e.t.Fatal(err)
		}
	}
	fw, err := mw.CreateFormFile("file", name)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := fw.Write(data); err != nil {
		e.t.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		e.t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/v1/conversations/"+conversationID+"/files", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return e.send(req, token)
}

// expect asserts a status (and, for errors, the problem code) and, for success, the
// Huddle-Position header every command answers with.
func (e *cmdEnv) expect(r resp, status int, code string) {
	e.t.Helper()
	if r.Status != status || (code != "" && r.code() != code) {
		e.t.Fatalf("want %d %s, got %d: %s", status, code, r.Status, r.Body)
	}
	if status < 300 && r.Header.Get(headerPosition) == "" {
		e.t.Fatalf("success without %s header", headerPosition)
	}
	if status >= 400 && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/problem+json") {
		e.t.Fatalf("error without problem+json: %s", r.Header.Get("Content-Type"))
	}
}

// streamTypes lists the event types of a stream, in order.
func (e *cmdEnv) streamTypes(stream string) []string {
	e.t.Helper()
	evs, err := e.store.ReadStream(context.Background(), stream, 1, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	out := make([]string, 0, len(evs))
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return out
}

// clinicSetup: ann, bob, cat, dan share room r1; xavier is alone in r2.
func (e *cmdEnv) clinicSetup() {
	e.t.Helper()
	admin := e.token("root", RoleAdmin)
	e.expect(e.do("PUT", "/v1/admin/rooms/r1", admin, map[string]any{"name": "Front desk"}), 200, "")
	e.expect(e.do("PUT", "/v1/admin/rooms/r2", admin, map[string]any{"name": "Lab"}), 200, "")
	for _, u := range []string{"ann", "bob", "cat", "dan", "xavier"} {
		e.expect(e.do("PUT", "/v1/admin/users/"+u, admin, map[string]any{"name": strings.ToUpper(u[:1]) + u[1:], "email": u + "@clinic.test"}), 200, "")
		room := "r1"
		if u == "xavier" {
			room = "r2"
		}
		e.expect(e.do("PUT", "/v1/admin/rooms/"+room+"/members/"+u, admin, nil), 204, "")
	}
	// Clinic c2 has its own ann and bob: the same user ids, other people (tokenIn(…, "c2")).
	other := e.tokenIn("root", "c2", RoleAdmin)
	for _, u := range []string{"ann", "bob"} {
		e.expect(e.do("PUT", "/v1/admin/users/"+u, other, map[string]any{"name": "Other " + u, "email": u + "@other.test"}), 200, "")
	}
}

// group creates a group owned by owner with the others and returns its id.
func (e *cmdEnv) group(owner string, others ...string) string {
	e.t.Helper()
	r := e.do("POST", "/v1/conversations", e.token(owner, RoleStaff), map[string]any{"participant_ids": others, "title": "Ward"})
	e.expect(r, 201, "")
	return r.str("id")
}

func TestAdminEndpoints(t *testing.T) {
	e := newCmdEnv(t, 1<<20)
	admin := e.token("root", RoleAdmin)
	staff := e.token("ann", RoleStaff)

	r := e.do("PUT", "/v1/admin/users/ann", admin, map[string]any{"name": "Ann Lee", "email": "ann@clinic.test", "title": "MD"})
	e.expect(r, 200, "")
	if r.str("id") != "ann" || r.str("name") != "Ann Lee" || r.str("title") != "MD" || r.JSON["active"] != true {
		t.Fatalf("user body: %s", r.Body)
	}
	e.expect(e.do("PUT", "/v1/admin/users/ann", admin, map[string]any{"name": "Ann", "email": "not-an-email"}), 400, domain.CodeInvalid)
	e.expect(e.do("PUT", "/v1/admin/users/ann", admin, map[string]any{"name": "", "email": "ann@clinic.test"}), 400, domain.CodeInvalid)
	e.expect(e.do("PUT", "/v1/admin/users/ann", admin, map[string]any{"name": "Ann", "email": "ann@clinic.test", "role": "x"}), 400, domain.CodeInvalid)
	e.expect(e.do("PUT", "/v1/admin/users/ann", admin, `{"name":`), 400, domain.CodeInvalid)
	e.expect(e.do("PUT", "/v1/admin/users/a%20b", admin, map[string]any{"name": "Ann", "email": "ann@clinic.test"}), 400, domain.CodeInvalid)
	e.expect(e.do("PUT", "/v1/admin/users/ann", staff, map[string]any{"name": "Ann", "email": "ann@clinic.test"}), 403, domain.CodeForbidden)
	e.expect(e.do("PUT", "/v1/admin/users/ann", "", map[string]any{"name": "Ann", "email": "ann@clinic.test"}), 401, "")
	e.expect(e.do("PUT", "/v1/admin/users/ann", admin, `{"name":"`+strings.Repeat("a", 2<<20)+`","email":"a@b.c"}`), 413, "")

	r = e.do("PUT", "/v1/admin/rooms/r1", admin, map[string]any{"name": "Front desk"})
	e.expect(r, 200, "")
	if r.str("id") != "r1" || r.str("name") != "Front desk" {
		t.Fatalf("room body: %s", r.Body)
	}
	e.expect(e.do("PUT", "/v1/admin/rooms/r1", admin, map[string]any{"name": " "}), 400, domain.CodeInvalid)

	e.expect(e.do("PUT", "/v1/admin/rooms/r1/members/ann", admin, nil), 204, "")
	e.expect(e.do("PUT", "/v1/admin/rooms/r1/members/ann", admin, nil), 204, "") // idempotent
	e.expect(e.do("PUT", "/v1/admin/rooms/r9/members/ann", admin, nil), 404, domain.CodeNotFound)
	e.expect(e.do("PUT", "/v1/admin/rooms/r1/members/nobody", admin, nil), 404, domain.CodeNotFound)
	e.expect(e.do("DELETE", "/v1/admin/rooms/r1/members/ann", admin, nil), 204, "")
	e.expect(e.do("DELETE", "/v1/admin/rooms/r9/members/ann", admin, nil), 404, domain.CodeNotFound)

	e.expect(e.do("DELETE", "/v1/admin/users/ann", admin, nil), 204, "")
	e.expect(e.do("DELETE", "/v1/admin/users/nobody", admin, nil), 404, domain.CodeNotFound)

	if got := e.streamTypes(domain.DirectoryStream(testClinic)); strings.Join(got, ",") !=
		"UserProfileSet,RoomNamed,RoomMemberAdded,RoomMemberRemoved,UserDeactivated" {
		t.Fatalf("directory events: %v", got)
	}
	// Another clinic's admin writes another clinic's directory.
	e.expect(e.do("PUT", "/v1/admin/rooms/r1", e.tokenIn("root", "c2", RoleAdmin), map[string]any{"name": "Other"}), 200, "")
	if got := e.streamTypes(domain.DirectoryStream("c2")); len(got) != 1 {
		t.Fatalf("c2 directory: %v", got)
	}
}

func TestStartConversation(t *testing.T) {
	e := newCmdEnv(t, 1<<20)
	e.clinicSetup()
	ann := e.token("ann", RoleStaff)

	r := e.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob"}})
	e.expect(r, 201, "")
	direct := r.str("id")
	if r.str("kind") != "direct" || r.JSON["owner_id"] != nil || len(r.JSON["participants"].([]any)) != 2 {
		t.Fatalf("direct body: %s", r.Body)
	}
	r = e.do("POST", "/v1/conversations", e.token("bob", RoleStaff), map[string]any{"participant_ids": []string{"ann"}})
	e.expect(r, 200, "")
	if r.str("id") != direct {
		t.Fatalf("bob got another chat: %s", r.Body)
	}

	r = e.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"cat", "bob"}, "title": "Ward 3"})
	e.expect(r, 201, "")
	if r.str("kind") != "group" || r.str("owner_id") != "ann" || r.str("title") != "Ward 3" {
		t.Fatalf("group body: %s", r.Body)
	}
	parts := r.JSON["participants"].([]any)
	if len(parts) != 3 || parts[0].(map[string]any)["id"] != "ann" || parts[1].(map[string]any)["id"] != "cat" {
		t.Fatalf("participants (owner first, then in the order given): %v", parts)
	}
	// One participant with a title is a group too.
	e.expect(e.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob"}, "title": "Pair"}), 201, "")

	cases := []struct {
		name   string
		token  string
		body   any
		status int
		code   string
	}{
		{"NotInAddressBook", ann, map[string]any{"participant_ids": []string{"xavier"}}, 422, domain.CodeNotInAddressBook},
		{"GroupMemberNotInAddressBook", ann, map[string]any{"participant_ids": []string{"bob", "xavier"}, "title": "T"}, 422, domain.CodeNotInAddressBook},
		{"UnknownUser", ann, map[string]any{"participant_ids": []string{"ghost"}}, 422, domain.CodeNotInAddressBook},
		{"Empty", ann, map[string]any{"participant_ids": []string{}}, 400, domain.CodeInvalid},
		{"OnlyYourself", ann, map[string]any{"participant_ids": []string{"ann"}}, 400, domain.CodeInvalid},
		{"MalformedID", ann, map[string]any{"participant_ids": []string{"a b"}}, 400, domain.CodeInvalid},
		{"GroupWithoutTitle", ann, map[string]any{"participant_ids": []string{"bob", "cat"}}, 201, ""},
		{"LongTitle", ann, map[string]any{"participant_ids": []string{"bob", "cat"}, "title": strings.Repeat("t", 201)}, 400, domain.CodeInvalid},
		{"UnknownField", ann, map[string]any{"participant_ids": []string{"bob"}, "topic": "x"}, 400, domain.CodeInvalid},
		{"NotStaff", e.token("ann", RoleAdmin), map[string]any{"participant_ids": []string{"bob"}}, 403, domain.CodeForbidden},
		{"OtherClinic", e.tokenIn("ann", "c2", RoleStaff), map[string]any{"participant_ids": []string{"bob"}}, 422, domain.CodeNotInAddressBook},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			e.expect(e.do("POST", "/v1/conversations", tc.token, tc.body), tc.status, tc.code)
		})
	}
}

func TestSendMessage(t *testing.T) {
	e := newCmdEnv(t, 1<<20)
	e.clinicSetup()
	ann, bob, cat := e.token("ann", RoleStaff), e.token("bob", RoleStaff), e.token("cat", RoleStaff)
	g := e.group("ann", "bob", "cat")
	path := "/v1/conversations/" + g + "/messages"

	r := e.do("POST", path, bob, map[string]any{"text": "Room 4 is ready", "client_message_id": "m-1"})
	e.expect(r, 201, "")
	if r.str("sender_id") != "bob" || r.str("kind") != "text" || r.str("text") != "Room 4 is ready" || r.str("id") == "" {
		t.Fatalf("message: %s", r.Body)
	}
	if _, err := time.Parse(time.RFC3339Nano, r.str("sent_at")); err != nil {
		t.Fatalf("sent_at: %v", err)
	}
	again := e.do("POST", path, bob, map[string]any{"text": "Room 4 is ready", "client_message_id": "m-1"})
	e.expect(again, 201, "")
	if again.str("id") != r.str("id") || again.str("sent_at") != r.str("sent_at") {
		t.Fatalf("repeat is another message: %s vs %s", again.Body, r.Body)
	}
	if n := len(e.streamTypes(domain.ConversationStream(g))); n != 2 {
		t.Fatalf("want one message stored, stream has %d events", n)
	}
	e.expect(e.do("POST", path, ann, map[string]any{"text": strings.Repeat("é", 10000)}), 201, "")

	e.expect(e.do("POST", "/v1/conversations/"+g+"/leave", cat, nil), 204, "")
	cases := []struct {
		name   string
		token  string
		path   string
		body   any
		status int
		code   string
	}{
		{"Empty", bob, path, map[string]any{"text": ""}, 400, domain.CodeInvalid},
		{"Whitespace", bob, path, map[string]any{"text": "  \n "}, 400, domain.CodeInvalid},
		{"TooLong", bob, path, map[string]any{"text": strings.Repeat("a", 10001)}, 400, domain.CodeInvalid},
		{"MalformedClientID", bob, path, map[string]any{"text": "x", "client_message_id": "a b"}, 400, domain.CodeInvalid},
		{"UnknownField", bob, path, map[string]any{"text": "x", "urgent": true}, 400, domain.CodeInvalid},
		{"LeftCannotSend", cat, path, map[string]any{"text": "x"}, 403, domain.CodeCannotSend},
		{"StrangerNotFound", e.token("dan", RoleStaff), path, map[string]any{"text": "x"}, 404, domain.CodeNotFound},
		{"UnknownConversation", bob, "/v1/conversations/g-nope/messages", map[string]any{"text": "x"}, 404, domain.CodeNotFound},
		{"OtherClinic", e.tokenIn("bob", "c2", RoleStaff), path, map[string]any{"text": "x"}, 404, domain.CodeNotFound},
		{"MalformedConversationID", bob, "/v1/conversations/a%20b/messages", map[string]any{"text": "x"}, 400, domain.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			e.expect(e.do("POST", tc.path, tc.token, tc.body), tc.status, tc.code)
		})
	}
	t.Run("CannotSendSaysSo", func(t *testing.T) {
		e.t = t
		r := e.do("POST", path, cat, map[string]any{"text": "x"})
		if r.str("detail") != "You cannot send chat to this group" {
			t.Fatalf("detail: %s", r.Body)
		}
	})
	t.Run("DeletedGroup", func(t *testing.T) {
		e.t = t
		e.expect(e.do("DELETE", "/v1/conversations/"+g, ann, nil), 204, "")
		e.expect(e.do("POST", path, bob, map[string]any{"text": "x"}), 404, domain.CodeConversationDeleted)
	})
}

func TestShareAndDownloadFile(t *testing.T) {
	e := newCmdEnv(t, 64<<10)
	e.clinicSetup()
	ann, bob, cat := e.token("ann", RoleStaff), e.token("bob", RoleStaff), e.token("cat", RoleStaff)
	g := e.group("ann", "bob", "cat")
	e.expect(e.do("POST", "/v1/conversations/"+g+"/leave", cat, nil), 204, "")

	pdf := append([]byte("%PDF-1.4\n"), bytes.Repeat([]byte("x"), 1000)...)
	r := e.upload(g, bob, `..\scans/"lab" résumé.pdf`, pdf, "")
	e.expect(r, 201, "")
	file, _ := r.JSON["file"].(map[string]any)
	if r.str("kind") != "file" || file == nil || file["name"] != `"lab" résumé.pdf` || file["content_type"] != "application/pdf" || file["size"] != float64(len(pdf)) {
		t.Fatalf("file message: %s", r.Body)
	}
	fileID := file["id"].(string)

	dl := e.do("GET", "/v1/files/"+fileID, ann, nil)
	if dl.Status != 200 || !bytes.Equal(dl.Body, pdf) || dl.Header.Get("Content-Type") != "application/pdf" ||
		!strings.HasPrefix(dl.Header.Get("Content-Disposition"), "attachment;") {
		t.Fatalf("download: %d %v", dl.Status, dl.Header)
	}
	for name, tok := range map[string]string{"LeftBeforeSharing": cat, "Stranger": e.token("dan", RoleStaff), "OtherClinic": e.tokenIn("ann", "c2", RoleStaff)} {
		if r := e.do("GET", "/v1/files/"+fileID, tok, nil); r.Status != 404 || r.code() != domain.CodeNotFound {
			t.Fatalf("%s: want 404, got %d %s", name, r.Status, r.Body)
		}
	}
	e.expect(e.do("GET", "/v1/files/nope", ann, nil), 404, domain.CodeNotFound)

	// Same client_message_id twice: one message.
	a := e.upload(g, bob, "a.txt", []byte("one"), "up-1")
	b := e.upload(g, bob, "a.txt", []byte("one"), "up-1")
	e.expect(a, 201, "")
	e.expect(b, 201, "")
	if a.str("id") != b.str("id") {
		t.Fatalf("repeat upload made a second message")
	}

	e.expect(e.upload(g, bob, "big.bin", make([]byte, 64<<10+1), ""), 413, domain.CodeFileTooLarge)
	e.expect(e.upload(g, bob, "huge.bin", make([]byte, 200<<10), ""), 413, domain.CodeFileTooLarge)
	e.expect(e.upload(g, cat, "x.txt", []byte("x"), ""), 403, domain.CodeCannotSend)
	e.expect(e.upload("g-nope", bob, "x.txt", []byte("x"), ""), 404, domain.CodeNotFound)
	e.expect(e.do("POST", "/v1/conversations/"+g+"/files", bob, map[string]any{"text": "x"}), 400, domain.CodeInvalid)

	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	_ = mw.WriteField("note", "no file here")
	_ = mw.Close()
	req := httptest.NewRequest("POST", "/v1/conversations/"+g+"/files", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	e.expect(e.send(req, bob), 400, domain.CodeInvalid)
}

func TestParticipants(t *testing.T) {
	e := newCmdEnv(t, 1<<20)
	e.clinicSetup()
	ann, bob, cat := e.token("ann", RoleStaff), e.token("bob", RoleStaff), e.token("cat", RoleStaff)
	g := e.group("ann", "bob")
	direct := e.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob"}}).str("id")
	add := func(conv, tok, user string) resp {
		return e.do("POST", "/v1/conversations/"+conv+"/participants", tok, map[string]any{"user_id": user})
	}
	e.expect(add(g, bob, "cat"), 204, "")
	e.expect(add(g, bob, "cat"), 204, "") // already active: nothing changes
	e.expect(add(g, bob, "xavier"), 422, domain.CodeNotInAddressBook)
	e.expect(add(direct, ann, "cat"), 422, domain.CodeNotAGroup)
	e.expect(add(g, e.token("dan", RoleStaff), "dan"), 404, domain.CodeNotFound)
	e.expect(add(g, bob, "a b"), 400, domain.CodeInvalid)

	e.expect(e.do("DELETE", "/v1/conversations/"+g+"/participants/ann", bob, nil), 422, domain.CodeOwnerCannotBeRemoved)
	e.expect(e.do("DELETE", "/v1/conversations/"+g+"/participants/bob", bob, nil), 400, domain.CodeInvalid)
	e.expect(e.do("DELETE", "/v1/conversations/"+g+"/participants/cat", bob, nil), 204, "")
	e.expect(e.do("DELETE", "/v1/conversations/"+direct+"/participants/bob", ann, nil), 422, domain.CodeNotAGroup)
	// cat was removed: cat can no longer add anyone.
	e.expect(add(g, cat, "dan"), 403, domain.CodeNotAParticipant)
	e.expect(e.do("DELETE", "/v1/conversations/"+g+"/participants/bob", cat, nil), 403, domain.CodeNotAParticipant)
	// Restored.
	e.expect(add(g, ann, "cat"), 204, "")
	e.expect(e.do("POST", "/v1/conversations/"+g+"/messages", cat, map[string]any{"text": "back"}), 201, "")

	want := "ConversationStarted,ParticipantAdded,ParticipantRemoved,ParticipantAdded,MessageSent"
	if got := strings.Join(e.streamTypes(domain.ConversationStream(g)), ","); got != want {
		t.Fatalf("events: %s", got)
	}
}

func TestLeaveRenameAndDelete(t *testing.T) {
	e := newCmdEnv(t, 1<<20)
	e.clinicSetup()
	ann, bob, cat := e.token("ann", RoleStaff), e.token("bob", RoleStaff), e.token("cat", RoleStaff)
	g := e.group("ann", "bob", "cat")
	direct := e.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob"}}).str("id")

	// A rename answers with the read side's Summary: TestGroups_UntitledGroupsAndRename runs it
	// against a whole Huddle. Here, only the refusals.
	e.expect(e.do("PATCH", "/v1/conversations/"+g, bob, map[string]any{"title": ""}), 400, domain.CodeInvalid)
	e.expect(e.do("PATCH", "/v1/conversations/"+direct, bob, map[string]any{"title": "x"}), 422, domain.CodeNotAGroup)

	e.expect(e.do("POST", "/v1/conversations/"+direct+"/leave", ann, nil), 422, domain.CodeNotAGroup)
	e.expect(e.do("DELETE", "/v1/conversations/"+g, bob, nil), 403, domain.CodeNotGroupOwner)
	e.expect(e.do("DELETE", "/v1/conversations/"+direct, ann, nil), 422, domain.CodeNotAGroup)

	// The owner leaves: ownership passes to bob (added before cat), who may then delete.
	e.expect(e.do("POST", "/v1/conversations/"+g+"/leave", ann, nil), 204, "")
	e.expect(e.do("DELETE", "/v1/conversations/"+g, ann, nil), 403, domain.CodeNotGroupOwner)
	e.expect(e.do("DELETE", "/v1/conversations/"+g, bob, nil), 204, "")
	for _, r := range []resp{
		e.do("DELETE", "/v1/conversations/"+g, bob, nil),
		e.do("POST", "/v1/conversations/"+g+"/leave", cat, nil),
		e.do("PUT", "/v1/conversations/"+g+"/mute", cat, nil),
		e.do("POST", "/v1/conversations/"+g+"/participants", bob, map[string]any{"user_id": "dan"}),
	} {
		e.expect(r, 404, domain.CodeConversationDeleted)
	}
	want := "ConversationStarted,ParticipantLeft,OwnershipPassed,GroupDeleted"
	if got := strings.Join(e.streamTypes(domain.ConversationStream(g)), ","); got != want {
		t.Fatalf("events: %s", got)
	}
}

func TestMemberSettings(t *testing.T) {
	e := newCmdEnv(t, 1<<20)
	e.clinicSetup()
	ann, bob := e.token("ann", RoleStaff), e.token("bob", RoleStaff)
	g := e.group("ann", "bob")
	base := "/v1/conversations/" + g
	m := e.do("POST", base+"/messages", ann, map[string]any{"text": "hi"})
	e.expect(m, 201, "")

	for _, step := range []struct{ method, path string }{
		{"PUT", "/mute"}, {"PUT", "/mute"}, {"DELETE", "/mute"}, {"DELETE", "/mute"},
		{"PUT", "/archive"}, {"DELETE", "/archive"},
	} {
		e.expect(e.do(step.method, base+step.path, bob, nil), 204, "")
	}
	e.expect(e.do("POST", base+"/read", bob, map[string]any{"up_to_message_id": m.str("id")}), 204, "")
	e.expect(e.do("POST", base+"/read", bob, nil), 204, "")
	e.expect(e.do("POST", base+"/read", bob, map[string]any{"up_to_message_id": "g-other.2"}), 404, domain.CodeNotFound)
	e.expect(e.do("POST", base+"/read", bob, map[string]any{"up_to_message_id": "a b"}), 400, domain.CodeInvalid)
	e.expect(e.do("POST", base+"/read", bob, map[string]any{"everything": true}), 400, domain.CodeInvalid)
	dan := e.token("dan", RoleStaff)
	for _, p := range []string{"/mute", "/archive"} {
		e.expect(e.do("PUT", base+p, dan, nil), 404, domain.CodeNotFound)
	}
	e.expect(e.do("PUT", "/v1/conversations/g-nope/mute", bob, nil), 404, domain.CodeNotFound)

	want := "ConversationMuted,ConversationUnmuted,ConversationArchived,ConversationUnarchived,ReadMarkerMoved"
	if got := strings.Join(e.streamTypes(domain.MemberStream("c1", "bob")), ","); got != want {
		t.Fatalf("bob's settings: %s", got)
	}
}
