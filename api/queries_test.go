package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-chat/huddle/commands"
	"github.com/huddle-chat/huddle/directory"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/inbox"
	"github.com/huddle-chat/huddle/internal/blobs"
	"github.com/huddle-chat/huddle/internal/natsbroker"
	"github.com/huddle-chat/huddle/internal/testenv"
	"github.com/huddle-chat/huddle/projections"
)

// queryEnv is the whole read path: commands → store → relay → JetStream → projectors → GETs.
type queryEnv struct {
	t      *testing.T
	srv    *Server
	secret []byte
}

func newQueryEnv(t *testing.T) *queryEnv {
	t.Helper()
	pool, _ := testenv.Postgres(t)
	broker := testenv.NATS(t)
	log := testenv.Logger(t)
	store := eventstore.New(pool)
	ctx, cancel := context.WithCancel(context.Background())

	pub, err := natsbroker.NewPublisher(broker.ClientURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	relay := eventstore.NewRelay(store, pub, eventstore.RelayConfig{PollInterval: 50 * time.Millisecond}, log, prometheus.NewRegistry())
	engine := projections.NewEngine(pool, store, broker.ClientURL(), log, prometheus.NewRegistry(),
		[]*projections.ReadModel{directory.ReadModel(), inbox.ReadModel()})
	done := make(chan struct{}, 2)
	go func() { _ = relay.Run(ctx); done <- struct{}{} }()
	go func() { _ = engine.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
		_ = pub.Close()
	})
	secret := []byte("query-secret-query-secret-query-secret")
	srv := New(Deps{Logger: log, JWTSecret: secret, Commands: commands.New(store, blobs.New(pool), commands.Options{}),
		Queries: inbox.NewQueries(pool), Directory: directory.New(pool), Projections: engine})
	return &queryEnv{t: t, srv: srv, secret: secret}
}

type qresp struct {
	status int
	header http.Header
	body   []byte
}

func (r qresp) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r qresp) code() string {
	var p Problem
	_ = json.Unmarshal(r.body, &p)
	return p.Code
}

// call sends a request as user (roles staff, plus admin for "admin") with an optional
// Huddle-Min-Position.
func (e *queryEnv) call(method, path, user string, body any, minPosition string) qresp {
	e.t.Helper()
	var rd *bytes.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	} else {
		rd = bytes.NewReader(nil)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	roles := []string{RoleStaff}
	if user == "admin" {
		roles = []string{RoleAdmin}
	}
	tok, err := MintToken(e.secret, user, "c1", roles, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if minPosition != "" {
		req.Header.Set(headerMinPosition, minPosition)
	}
	rec := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(rec, req)
	return qresp{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

// must runs a command and returns its Huddle-Position.
func (e *queryEnv) must(method, path, user string, body any) (qresp, string) {
	e.t.Helper()
	r := e.call(method, path, user, body, "")
	if r.status >= 300 {
		e.t.Fatalf("%s %s as %s: %d %s", method, path, user, r.status, r.body)
	}
	return r, r.header.Get(headerPosition)
}

// directory: u1..u4 in room r1; u5 in room r2 only.
func (e *queryEnv) directory() string {
	e.t.Helper()
	var pos string
	e.must(http.MethodPut, "/v1/admin/rooms/r1", "admin", map[string]any{"name": "Front desk"})
	e.must(http.MethodPut, "/v1/admin/rooms/r2", "admin", map[string]any{"name": "Lab"})
	people := map[string][2]string{"u1": {"Ada Lovelace", "ada@clinic.test"}, "u2": {"Bob Builder", "bob@clinic.test"},
		"u3": {"Cy Young", "cy@clinic.test"}, "u4": {"Dee Dee", "dee@other.test"}, "u5": {"Eve Lab", "eve@clinic.test"}}
	for _, u := range []string{"u1", "u2", "u3", "u4", "u5"} {
		e.must(http.MethodPut, "/v1/admin/users/"+u, "admin", map[string]any{"name": people[u][0], "email": people[u][1]})
		room := "r1"
		if u == "u5" {
			room = "r2"
		}
		_, pos = e.must(http.MethodPut, "/v1/admin/rooms/"+room+"/members/"+u, "admin", nil)
	}
	return pos
}

func TestQueries_ReadYourWritesThroughTheWholePipeline(t *testing.T) {
	t.Parallel()
	e := newQueryEnv(t)
	pos := e.directory()

	var contacts struct{ Contacts []directory.Contact }
	r := e.call(http.MethodGet, "/v1/contacts?q=B", "u1", nil, pos)
	if r.status != http.StatusOK {
		t.Fatalf("contacts: %d %s", r.status, r.body)
	}
	r.decode(t, &contacts)
	if len(contacts.Contacts) != 1 || contacts.Contacts[0].ID != "u2" {
		t.Fatalf("contacts q=B: %+v, want only Bob", contacts.Contacts)
	}
	r = e.call(http.MethodGet, "/v1/contacts?q=eve", "u1", nil, "")
	r.decode(t, &contacts)
	if len(contacts.Contacts) != 0 {
		t.Fatalf("u5 shares no room with u1 but is listed: %+v", contacts.Contacts)
	}

	created, _ := e.must(http.MethodPost, "/v1/conversations", "u1", map[string]any{"participant_ids": []string{"u2", "u3"}, "title": "Team"})
	var conv struct{ ID string }
	created.decode(t, &conv)
	_, pos = e.must(http.MethodPost, "/v1/conversations/"+conv.ID+"/messages", "u2", map[string]any{"text": "hello team"})

	// Right after the write, with its position: the message is there for everyone.
	var list inbox.ConversationPage
	r = e.call(http.MethodGet, "/v1/conversations", "u1", nil, pos)
	if r.status != http.StatusOK {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	r.decode(t, &list)
	if len(list.Conversations) != 1 || list.Conversations[0].LastMessage == nil || list.Conversations[0].LastMessage.Preview != "hello team" ||
		list.Conversations[0].UnreadCount != 1 || list.Conversations[0].Title != "Team" || len(list.Conversations[0].Participants) != 3 {
		t.Fatalf("list after send: %s", r.body)
	}
	var unread inbox.Unread
	e.call(http.MethodGet, "/v1/unread", "u3", nil, pos).decode(t, &unread)
	if unread.Total != 1 || unread.TotalIncludingMuted != 1 {
		t.Fatalf("u3 unread: %+v", unread)
	}
	// Muted: still counted, but not in total.
	_, pos = e.must(http.MethodPut, "/v1/conversations/"+conv.ID+"/mute", "u3", nil)
	e.call(http.MethodGet, "/v1/unread", "u3", nil, pos).decode(t, &unread)
	if unread.Total != 0 || unread.TotalIncludingMuted != 1 || len(unread.Conversations) != 1 || !unread.Conversations[0].Muted {
		t.Fatalf("u3 unread after mute: %+v", unread)
	}

	// u3 leaves; u1 writes; u3 sees history up to leaving only, and cannot send.
	_, _ = e.must(http.MethodPost, "/v1/conversations/"+conv.ID+"/leave", "u3", nil)
	_, pos = e.must(http.MethodPost, "/v1/conversations/"+conv.ID+"/messages", "u1", map[string]any{"text": "after u3 left"})
	var msgs inbox.MessagePage
	r = e.call(http.MethodGet, "/v1/conversations/"+conv.ID+"/messages", "u3", nil, pos)
	if r.status != http.StatusOK {
		t.Fatalf("messages: %d %s", r.status, r.body)
	}
	r.decode(t, &msgs)
	if len(msgs.Messages) != 2 || msgs.Messages[0].Text != "hello team" || msgs.Messages[1].Kind != "system" ||
		msgs.Messages[1].System.Event != "participant_left" {
		t.Fatalf("u3 messages after leaving: %s", r.body)
	}
	var details inbox.Conversation
	e.call(http.MethodGet, "/v1/conversations/"+conv.ID, "u3", nil, "").decode(t, &details)
	if details.Membership != "left" || details.CanSend || len(details.Participants) != 3 {
		t.Fatalf("u3 details after leaving: %+v", details)
	}
	// Details list roles and states.
	e.call(http.MethodGet, "/v1/conversations/"+conv.ID, "u1", nil, "").decode(t, &details)
	roles := map[string]string{}
	for _, p := range details.Participants {
		roles[p.ID] = p.Role + "/" + p.State
	}
	if roles["u1"] != "owner/active" || roles["u2"] != "member/active" || roles["u3"] != "member/left" {
		t.Fatalf("participants: %v", roles)
	}
	// Someone who never took part: 404, as for a conversation that does not exist.
	if r := e.call(http.MethodGet, "/v1/conversations/"+conv.ID, "u4", nil, ""); r.status != http.StatusNotFound {
		t.Fatalf("outsider details: %d %s", r.status, r.body)
	}
	if r := e.call(http.MethodGet, "/v1/conversations/"+conv.ID+"/messages", "u4", nil, ""); r.status != http.StatusNotFound {
		t.Fatalf("outsider messages: %d %s", r.status, r.body)
	}

	// Archive, then search: archived=false hides it, q finds it (New Chat search).
	_, pos = e.must(http.MethodPut, "/v1/conversations/"+conv.ID+"/archive", "u2", nil)
	e.call(http.MethodGet, "/v1/conversations", "u2", nil, pos).decode(t, &list)
	if len(list.Conversations) != 0 {
		t.Fatalf("archived conversation still in the chat list: %+v", list)
	}
	e.call(http.MethodGet, "/v1/conversations?archived=true", "u2", nil, "").decode(t, &list)
	if len(list.Conversations) != 1 || !list.Conversations[0].Archived {
		t.Fatalf("archived list: %+v", list)
	}
	e.call(http.MethodGet, "/v1/conversations?q=ada", "u2", nil, "").decode(t, &list)
	if len(list.Conversations) != 1 {
		t.Fatalf("search by participant name should find the archived chat: %+v", list)
	}
	// A message from someone else brings it back.
	_, pos = e.must(http.MethodPost, "/v1/conversations/"+conv.ID+"/messages", "u1", map[string]any{"text": "ping"})
	e.call(http.MethodGet, "/v1/conversations", "u2", nil, pos).decode(t, &list)
	if len(list.Conversations) != 1 || list.Conversations[0].Archived {
		t.Fatalf("a new message should unarchive: %+v", list)
	}
	// Deleted: gone for everyone.
	_, pos = e.must(http.MethodDelete, "/v1/conversations/"+conv.ID, "u1", nil)
	for _, u := range []string{"u1", "u2", "u3"} {
		e.call(http.MethodGet, "/v1/conversations?archived=true", u, nil, pos).decode(t, &list)
		n := len(list.Conversations)
		e.call(http.MethodGet, "/v1/conversations", u, nil, "").decode(t, &list)
		if n+len(list.Conversations) != 0 {
			t.Fatalf("%s still lists the deleted group", u)
		}
		if r := e.call(http.MethodGet, "/v1/conversations/"+conv.ID, u, nil, ""); r.status != http.StatusNotFound {
			t.Fatalf("%s: deleted group details: %d", u, r.status)
		}
	}
}

// Paging the chat list while new messages arrive never shows a conversation twice and never
// skips one that did not move.
func TestQueries_PagingWhileMessagesArrive(t *testing.T) {
	t.Parallel()
	e := newQueryEnv(t)
	e.directory()
	var ids []string
	var pos string
	for i := 0; i < 7; i++ {
		r, _ := e.must(http.MethodPost, "/v1/conversations", "u1", map[string]any{"participant_ids": []string{"u2", "u3"}, "title": "G" + string(rune('a'+i))})
		var c struct{ ID string }
		r.decode(t, &c)
		ids = append(ids, c.ID)
		_, pos = e.must(http.MethodPost, "/v1/conversations/"+c.ID+"/messages", "u2", map[string]any{"text": "m"})
	}
	seen := map[string]int{}
	cursor := ""
	for page := 0; ; page++ {
		path := "/v1/conversations?limit=3"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		var list inbox.ConversationPage
		r := e.call(http.MethodGet, path, "u1", nil, pos)
		if r.status != http.StatusOK {
			t.Fatalf("page %d: %d %s", page, r.status, r.body)
		}
		r.decode(t, &list)
		for _, c := range list.Conversations {
			seen[c.ID]++
		}
		if page == 0 {
			// Activity on a conversation already shown and on one not shown yet.
			_, _ = e.must(http.MethodPost, "/v1/conversations/"+list.Conversations[0].ID+"/messages", "u3", map[string]any{"text": "bump"})
			_, pos = e.must(http.MethodPost, "/v1/conversations/"+ids[0]+"/messages", "u3", map[string]any{"text": "bump"})
		}
		if list.NextCursor == "" {
			break
		}
		cursor = list.NextCursor
	}
	for _, id := range ids[1:] {
		if seen[id] != 1 {
			t.Errorf("conversation %s seen %d times", id, seen[id])
		}
	}
	// ids[0] moved to the top after page one: it is seen at most once.
	if seen[ids[0]] > 1 {
		t.Errorf("moved conversation seen %d times", seen[ids[0]])
	}
}

func TestQueries_RejectsBadParameters(t *testing.T) {
	t.Parallel()
	e := newQueryEnv(t)
	e.directory()
	cases := []struct {
		path, header, code string
		status             int
	}{
		{"/v1/conversations?limit=0", "", "invalid_request", 400},
		{"/v1/conversations?limit=101", "", "invalid_request", 400},
		{"/v1/contacts?limit=ten", "", "invalid_request", 400},
		{"/v1/conversations?archived=maybe", "", "invalid_request", 400},
		{"/v1/conversations?cursor=not-a-cursor", "", "invalid_request", 400},
		{"/v1/conversations/x/messages?before=%21%21", "", "invalid_request", 400},
		{"/v1/conversations/bad%20id", "", "invalid_request", 400},
		{"/v1/unread", "garbage", "invalid_request", 400},
		{"/v1/conversations/nope", "", "not_found", 404},
	}
	for _, tc := range cases {
		r := e.call(http.MethodGet, tc.path, "u1", nil, tc.header)
		if r.status != tc.status || r.code() != tc.code {
			t.Errorf("GET %s: %d %s, want %d %s", tc.path, r.status, r.code(), tc.status, tc.code)
		}
	}
	// A position the projections never reach: 503 projection_lag after the 5 s wait.
	r := e.call(http.MethodGet, "/v1/unread", "u1", nil, signPosition(positionKey(e.secret), Actor{UserID: "u1", ClinicID: "c1"}, commands.Position{StreamID: "member-u1", Version: 99}))
	if r.status != http.StatusServiceUnavailable || r.code() != "projection_lag" {
		t.Errorf("unreachable position: %d %s", r.status, r.body)
	}
	// Admin-only tokens cannot read staff endpoints.
	if r := e.call(http.MethodGet, "/v1/unread", "admin", nil, ""); r.status != http.StatusForbidden {
		t.Errorf("admin on /v1/unread: %d", r.status)
	}
}
