package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/huddle-chat/huddle/domain"
)

// post sends a JSON command without failing the test (safe from any goroutine) and returns
// the status and problem code.
func (e *cmdEnv) post(method, path, token string, body any) (int, string, http.Header) {
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
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	e.srv.Handler().ServeHTTP(rec, req)
	var p struct{ Code string }
	_ = json.Unmarshal(rec.Body.Bytes(), &p)
	return rec.Code, p.Code, rec.Header()
}

// sendConcurrently has senders goroutines post each messages into conversation id, as the
// members in turn, and returns how many answers each status+code got.
func (e *cmdEnv) sendConcurrently(id string, members []string, senders, each int) map[string]int {
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := e.token(members[i%len(members)], RoleStaff)
			for n := range each {
				status, code, _ := e.post("POST", "/v1/conversations/"+id+"/messages", tok, map[string]any{"text": fmt.Sprintf("from %d: %d", i, n)})
				mu.Lock()
				got[fmt.Sprintf("%d %s", status, code)]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return got
}

// messagesOnce checks that the conversation's stream holds want messages, each one once.
func (e *cmdEnv) messagesOnce(id string, want int) {
	e.t.Helper()
	evs, err := e.store.ReadStream(context.Background(), domain.ConversationStream(id), 1, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	texts := map[string]int{}
	n := 0
	for i, ev := range evs {
		if ev.StreamVersion != int64(i+1) {
			e.t.Fatalf("version %d at place %d", ev.StreamVersion, i+1)
		}
		if ev.Type != "MessageSent" {
			continue
		}
		var m struct{ Text string }
		_ = json.Unmarshal(ev.Data, &m)
		texts[m.Text]++
		n++
	}
	if n != want {
		e.t.Fatalf("%d messages stored, want %d", n, want)
	}
	for text, c := range texts {
		if c != 1 {
			e.t.Fatalf("%q stored %d times", text, c)
		}
	}
}

func TestHotGroup_ConcurrentSendersAreNeverRefusedForConcurrency(t *testing.T) {
	t.Parallel()
	e := newCmdEnv(t, 1<<20)
	e.clinicSetup()
	members := []string{"ann", "bob", "cat", "dan"}
	for _, tc := range []struct{ senders, each int }{{32, 25}, {200, 5}} {
		id := e.group("ann", "bob", "cat", "dan")
		got := e.sendConcurrently(id, members, tc.senders, tc.each)
		if got["201 "] != tc.senders*tc.each || len(got) != 1 {
			t.Fatalf("%d senders × %d: answers %v, want only 201", tc.senders, tc.each, got)
		}
		e.messagesOnce(id, tc.senders*tc.each)
	}
	if st := e.srv.Commands.Stats(); st.Appends >= st.Commands {
		t.Fatalf("stats %+v: queued sends must share appends", st)
	}
}

func TestHotGroup_SendsRacingMembershipChangesAnswerOnlyWhatTheRulesSay(t *testing.T) {
	t.Parallel()
	e := newCmdEnv(t, 1<<20)
	e.clinicSetup()
	id := e.group("ann", "bob", "cat", "dan")
	owner := e.token("ann", RoleStaff)
	var churn sync.WaitGroup
	churnAnswers := map[string]int{}
	churn.Add(1)
	go func() {
		defer churn.Done()
		for range 20 {
			for _, step := range []struct{ method, path string }{
				{"DELETE", "/v1/conversations/" + id + "/participants/dan"},
				{"POST", "/v1/conversations/" + id + "/participants"},
			} {
				var body any
				if step.method == "POST" {
					body = map[string]any{"user_id": "dan"}
				}
				status, code, _ := e.post(step.method, step.path, owner, body)
				churnAnswers[fmt.Sprintf("%d %s", status, code)]++
			}
		}
	}()
	got := e.sendConcurrently(id, []string{"bob", "cat", "dan"}, 24, 10)
	churn.Wait()
	for answer := range got {
		if answer != "201 " && answer != "403 "+domain.CodeCannotSend {
			t.Fatalf("sends answered %v: only 201 and 403 cannot_send are allowed", got)
		}
	}
	if churnAnswers["204 "] != 40 || len(churnAnswers) != 1 {
		t.Fatalf("add/remove answered %v, want 40 × 204", churnAnswers)
	}
	e.messagesOnce(id, got["201 "])
}

func TestDeactivatedUsersTokenIsRefusedAtOnce(t *testing.T) {
	t.Parallel()
	e := newCmdEnv(t, 1<<20)
	e.clinicSetup()
	id := e.group("ann", "bob", "cat")
	bob := e.token("bob", RoleStaff)
	e.expect(e.do("POST", "/v1/conversations/"+id+"/messages", bob, map[string]any{"text": "still here"}), 201, "")
	e.expect(e.do("DELETE", "/v1/admin/users/bob", e.token("root", RoleAdmin), nil), 204, "")
	e.expect(e.do("POST", "/v1/conversations/"+id+"/messages", bob, map[string]any{"text": "gone"}), 403, domain.CodeUnknownUser)
	e.expect(e.do("GET", "/v1/conversations", bob, nil), 403, domain.CodeUnknownUser)
	// Someone the directory never knew, with a valid token.
	e.expect(e.do("GET", "/v1/conversations", e.token("nobody", RoleStaff), nil), 403, domain.CodeUnknownUser)
	// Reactivated, bob is back.
	e.expect(e.do("PUT", "/v1/admin/users/bob", e.token("root", RoleAdmin), map[string]any{"name": "Bob", "email": "bob@clinic.test"}), 200, "")
	e.expect(e.do("POST", "/v1/conversations/"+id+"/messages", bob, map[string]any{"text": "back"}), 201, "")
}

func TestReusedClientMessageIDWithOtherContentIsAConflict(t *testing.T) {
	t.Parallel()
	e := newCmdEnv(t, 1<<20)
	e.clinicSetup()
	id := e.group("ann", "bob")
	ann := e.token("ann", RoleStaff)
	path := "/v1/conversations/" + id + "/messages"
	first := e.do("POST", path, ann, map[string]any{"text": "dose 5 mg", "client_message_id": "k-1"})
	e.expect(first, 201, "")
	again := e.do("POST", path, ann, map[string]any{"text": "dose 5 mg", "client_message_id": "k-1"})
	e.expect(again, 201, "")
	if again.str("id") != first.str("id") {
		t.Fatalf("a true repeat must answer with the first message: %s vs %s", again.Body, first.Body)
	}
	e.expect(e.do("POST", path, ann, map[string]any{"text": "dose 50 mg", "client_message_id": "k-1"}), 409, domain.CodeConflict)
	e.expect(e.upload(id, ann, "a.txt", []byte("one"), "k-2"), 201, "")
	e.expect(e.upload(id, ann, "a.txt", []byte("one"), "k-2"), 201, "")
	e.expect(e.upload(id, ann, "a.txt", []byte("two"), "k-2"), 409, domain.CodeConflict)
	e.expect(e.upload(id, ann, "b.txt", []byte("x"), "k-1"), 409, domain.CodeConflict)
	e.messagesOnce(id, 1)
}

func TestConcurrentDirectoryChangesAreNeverRefusedForConcurrency(t *testing.T) {
	t.Parallel()
	e := newCmdEnv(t, 1<<20)
	admin := e.token("root", RoleAdmin)
	var wg sync.WaitGroup
	answers := make([]int, 16)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i], _, _ = e.post("PUT", fmt.Sprintf("/v1/admin/users/user-%d", i), admin,
				map[string]any{"name": fmt.Sprintf("User %d", i), "email": fmt.Sprintf("u%d@clinic.test", i)})
		}()
	}
	wg.Wait()
	for i, status := range answers {
		if status != http.StatusOK {
			t.Fatalf("PUT user-%d answered %d (all: %v): a conflict must be retried, never a 500", i, status, answers)
		}
	}
}
