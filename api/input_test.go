package api

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/commands"
	"github.com/huddle-chat/huddle/directory"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/inbox"
	"github.com/huddle-chat/huddle/internal/blobs"
	"github.com/huddle-chat/huddle/internal/testenv"
)

// NUL and invalid UTF-8 anywhere a client can put text are a 400, never a 500 (Postgres
// refuses NUL) nor a silent U+FFFD; bidi controls are refused in names and titles.
func TestInput_NULInvalidUTF8AndBidiAre400(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t)
	store := eventstore.New(pool)
	secret := []byte("input-secret-input-secret-input-secret")
	s := New(Deps{Logger: testenv.Logger(t), JWTSecret: secret,
		Commands: commands.New(store, blobs.New(pool), commands.Options{}), Queries: inbox.NewQueries(pool), Directory: directory.New(pool)})
	tok, err := MintToken(secret, "ann", "c1", []string{RoleStaff, RoleAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"/v1/contacts?q=%00", "/v1/conversations?q=%00", "/v1/contacts?q=%ff%fe",
		"/v1/conversations?q=a%00b", "/v1/contacts?%00=x",
	} {
		problemOf(t, serve(s, "GET", path, tok, "", ""), http.StatusBadRequest, "invalid_request")
	}
	user := func(name string) string { return `{"name":"` + name + `","email":"ann@clinic.test"}` }
	for name, body := range map[string]string{
		"invalid UTF-8":        user("Ann \xff\xfe"),
		"escaped NUL":          user(`Ann\u0000`),
		"right-to-left mark":   user("Ann\u200f"),
		"RLO override":         user("Ann\u202egnp.exe"),
		"first strong isolate": user("Ann\u2068x"),
		"Arabic letter mark":   user("Ann\u061c"),
	} {
		rec := serve(s, "PUT", "/v1/admin/users/u1", tok, "application/json", body)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%s in a name: %d %s, want 400", name, rec.Code, rec.Body)
		}
	}
	// The same names without the offending characters are fine, and so is a JSON string
	// holding an escaped backslash followed by "u0000".
	for _, body := range []string{user("Ann"), user(`Ann \\u0000`)} {
		if rec := serve(s, "PUT", "/v1/admin/users/u1", tok, "application/json", body); rec.Code >= 300 {
			t.Errorf("%s: %d %s", body, rec.Code, rec.Body)
		}
	}
	// ann must be staff of the clinic for the group to get as far as its title.
	if rec := serve(s, "PUT", "/v1/admin/users/ann", tok, "application/json", user("Ann")); rec.Code >= 300 {
		t.Fatalf("ann: %d %s", rec.Code, rec.Body)
	}
	rec := serve(s, "POST", "/v1/conversations", tok, "application/json",
		`{"participant_ids":["u1","u2"],"title":"Ward \u202e3"}`)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "title") {
		t.Errorf("bidi in a group title: %d %s", rec.Code, rec.Body)
	}
}
