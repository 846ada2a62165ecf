package api_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/huddle-chat/huddle/api"
	"github.com/huddle-chat/huddle/domain"
)

// view is what the API showed a member at one moment, reduced to what an auditor's replay
// must reproduce.
type view struct {
	owner        string
	participants []string // "id:role:state", sorted
	messages     []string // message ids, oldest first
}

func (s *scenario) view(token, conversation string) view {
	s.t.Helper()
	d := s.must(s.do("GET", "/v1/conversations/"+conversation, token, nil), 200, "")
	v := view{owner: d.str("owner_id")}
	for _, p := range d.list("participants") {
		v.participants = append(v.participants, fmt.Sprint(p["id"], ":", p["role"], ":", p["state"]))
	}
	sort.Strings(v.participants)
	v.messages = ids(s.messages(token, conversation))
	return v
}

func (s *scenario) auditState(token, conversation string, at time.Time) (view, bool) {
	s.t.Helper()
	r := s.must(s.do("GET", "/v1/audit/conversations/"+conversation+"/state?at="+url.QueryEscape(at.Format(time.RFC3339Nano)), token, nil), 200, "")
	v := view{owner: r.str("owner_id")}
	for _, p := range r.list("participants") {
		v.participants = append(v.participants, fmt.Sprint(p["id"], ":", p["role"], ":", p["state"]))
	}
	sort.Strings(v.participants)
	v.messages = ids(r.list("messages"))
	deleted, _ := r.json["deleted"].(bool)
	return v, deleted
}

// between returns an instant after everything recorded so far and before anything recorded next.
func between() time.Time {
	time.Sleep(5 * time.Millisecond)
	at := time.Now()
	time.Sleep(5 * time.Millisecond)
	return at
}

// TestAudit_StateAtEachStepEqualsWhatTheAPIShowed replays a scripted conversation (create,
// messages, add, leave, re-add, delete) and checks, for every step, that the auditor's
// state?at= equals what a member saw through the API at that moment; then that verify detects
// a tampered event, and that every audit read is itself on record.
func TestAudit_StateAtEachStepEqualsWhatTheAPIShowed(t *testing.T) {
	s := startScenario(t)
	admin := s.token("root", api.RoleAdmin)
	s.must(s.do("PUT", "/v1/admin/rooms/r1", admin, map[string]any{"name": "Room"}), 200, "")
	for _, u := range []string{"ann", "bob", "cat", "dan"} {
		s.must(s.do("PUT", "/v1/admin/users/"+u, admin, map[string]any{"name": "User " + u, "email": u + "@clinic.test"}), 200, "")
		s.must(s.do("PUT", "/v1/admin/rooms/r1/members/"+u, admin, nil), 204, "")
	}
	ann, bob := s.token("ann", api.RoleStaff), s.token("bob", api.RoleStaff)
	cat := s.token("cat", api.RoleStaff)
	auditor := s.token("aud", api.RoleAuditor)

	type step struct {
		name string
		at   time.Time
		saw  view
	}
	var steps []step
	var group string
	record := func(name string) {
		steps = append(steps, step{name: name, saw: s.view(bob, group), at: between()})
	}

	group = s.must(s.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob", "cat"}, "title": "Ward 3"}), 201, "").str("id")
	record("created")
	s.must(s.do("POST", "/v1/conversations/"+group+"/messages", bob, map[string]any{"text": "Bed 4 needs a chart"}), 201, "")
	s.must(s.do("POST", "/v1/conversations/"+group+"/messages", ann, map[string]any{"text": "On it"}), 201, "")
	record("messages")
	s.must(s.do("POST", "/v1/conversations/"+group+"/participants", ann, map[string]any{"user_id": "dan"}), 204, "")
	record("added")
	s.must(s.do("POST", "/v1/conversations/"+group+"/leave", cat, nil), 204, "")
	record("left")
	s.must(s.do("POST", "/v1/conversations/"+group+"/participants", bob, map[string]any{"user_id": "cat"}), 204, "")
	record("re-added")
	s.must(s.do("DELETE", "/v1/conversations/"+group, ann, nil), 204, "")
	afterDelete := between()
	s.must(s.do("GET", "/v1/conversations/"+group, bob, nil), 404, domain.CodeNotFound)

	for _, st := range steps {
		got, deleted := s.auditState(auditor, group, st.at)
		if deleted {
			t.Errorf("%s: the replay says deleted", st.name)
		}
		if got.owner != st.saw.owner || !slices.Equal(got.participants, st.saw.participants) || !slices.Equal(got.messages, st.saw.messages) {
			t.Errorf("%s: the auditor's replay differs from what the API showed\nreplay: %+v\napi:    %+v", st.name, got, st.saw)
		}
	}
	final, deleted := s.auditState(auditor, group, afterDelete)
	if !deleted || !slices.Equal(final.messages, steps[len(steps)-1].saw.messages) {
		t.Errorf("after delete: deleted=%v messages=%v; the history must stay for auditors", deleted, final.messages)
	}
	before := steps[0].at.Add(-time.Hour)
	s.must(s.do("GET", "/v1/audit/conversations/"+group+"/state?at="+url.QueryEscape(before.Format(time.RFC3339)), auditor, nil), 404, domain.CodeNotFound)

	// Events of the deleted group stay readable, page by page.
	first := s.must(s.do("GET", "/v1/audit/conversations/"+group+"/events?limit=3", auditor, nil), 200, "")
	if len(first.list("events")) != 3 || first.str("next_cursor") == "" {
		t.Fatalf("first page: %s", first.body)
	}
	rest := s.must(s.do("GET", "/v1/audit/conversations/"+group+"/events?limit=100&after="+first.str("next_cursor"), auditor, nil), 200, "")
	all := append(first.list("events"), rest.list("events")...)
	if last := all[len(all)-1]; last["type"] != "GroupDeleted" || int(last["stream_version"].(float64)) != len(all) {
		t.Fatalf("events end with %v after %d events", last["type"], len(all))
	}

	// Verify, then tamper with a stored message and verify again.
	stream := domain.ConversationStream(group)
	ok := s.must(s.do("GET", "/v1/audit/verify?stream_id="+stream, auditor, nil), 200, "")
	if ok.json["ok"] != true || int(ok.json["events"].(float64)) != len(all) {
		t.Fatalf("verify before tampering: %s", ok.body)
	}
	tamper(t, s.app.DatabaseURL(), stream, 2)
	bad := s.must(s.do("GET", "/v1/audit/verify?stream_id="+stream, auditor, nil), 200, "")
	if bad.json["ok"] != false || bad.json["first_bad_version"] != float64(2) {
		t.Fatalf("verify after tampering with version 2: %s", bad.body)
	}

	// Other clinics' auditors see nothing; staff may not audit.
	other, _ := api.MintToken(s.secret, "aud2", "clinic-2", []string{api.RoleAuditor}, time.Hour)
	s.must(s.do("GET", "/v1/audit/conversations/"+group+"/events", other, nil), 404, domain.CodeNotFound)
	s.must(s.do("GET", "/v1/audit/verify?stream_id="+stream, other, nil), 404, domain.CodeNotFound)
	s.must(s.do("GET", "/v1/audit/conversations/"+group+"/events", bob, nil), 403, domain.CodeForbidden)

	// Every audit read above is on record, attributed to its auditor.
	trail := s.must(s.do("GET", "/v1/audit/reads?limit=100", auditor, nil), 200, "")
	actions := map[string]int{}
	for _, e := range trail.list("events") {
		data := e["data"].(map[string]any)
		if data["auditor_id"] != "aud" {
			t.Errorf("clinic-1's trail holds a read by %v", data["auditor_id"])
		}
		actions[data["action"].(string)]++
	}
	if actions["state"] != len(steps)+1 || actions["events"] != 2 || actions["verify"] != 2 {
		t.Errorf("audit trail actions %v, want %d state, 2 events, 2 verify", actions, len(steps)+1)
	}
}

// tamper rewrites one stored event's data behind the application's back (the escape hatch
// the restore repair uses), as an attacker with database access might.
func tamper(t *testing.T, dbURL, stream string, version int64) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SET LOCAL huddle.allow_event_rewrite = 'on'`); err != nil {
		t.Fatal(err)
	}
	tag, err := tx.Exec(ctx, `UPDATE events SET data = jsonb_set(data, '{text}', '"edited"') WHERE stream_id = $1 AND stream_version = $2`, stream, version)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("tamper: %v (%d rows)", err, tag.RowsAffected())
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}
