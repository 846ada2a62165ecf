package api_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/api"
)

// principal is one kind of caller of the authorization matrix.
type principal struct {
	name  string
	token string
}

// TestAuthorizationMatrix calls every endpoint (GET /v1/stream, which never ends, has its own
// tests) as every kind of caller (no token, bad token,
// expired, staff member, admin, auditor, the same user id in another clinic, a non-member, a
// member who left, a removed member) and checks the status each time, and that nothing of
// clinic-1 ever reaches a caller from another clinic.
func TestAuthorizationMatrix(t *testing.T) {
	s := startScenario(t)
	admin := s.token("root", api.RoleAdmin)
	s.must(s.do("PUT", "/v1/admin/rooms/r1", admin, map[string]any{"name": "Room one"}), 200, "")
	for _, u := range []string{"ann", "bob", "cat", "dan", "eve", "fay"} {
		s.must(s.do("PUT", "/v1/admin/users/"+u, admin, map[string]any{"name": "Secret " + u, "email": u + "@one.test"}), 200, "")
		s.must(s.do("PUT", "/v1/admin/rooms/r1/members/"+u, admin, nil), 204, "")
	}
	staff := func(u string) string { return s.token(u, api.RoleStaff) }
	ann := staff("ann")

	// group: ann owns it; bob is a member; cat left; dan was removed; eve never took part.
	group := func() (id, file string) {
		id = s.must(s.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob", "cat", "dan"}, "title": "Secret ward"}), 201, "").str("id")
		s.must(s.do("POST", "/v1/conversations/"+id+"/messages", ann, map[string]any{"text": "secret text"}), 201, "")
		up := s.upload(id, ann, "secret-file.txt", []byte("secret bytes"))
		file = up.json["file"].(map[string]any)["id"].(string)
		s.must(s.do("POST", "/v1/conversations/"+id+"/leave", staff("cat"), nil), 204, "")
		s.must(s.do("DELETE", "/v1/conversations/"+id+"/participants/dan", ann, nil), 204, "")
		return id, file
	}
	g, file := group()

	expired, _ := api.MintToken(s.secret, "bob", "clinic-1", []string{api.RoleStaff}, -time.Minute)
	other, _ := api.MintToken(s.secret, "bob", "clinic-2", []string{api.RoleStaff, api.RoleAdmin, api.RoleAuditor}, time.Hour)
	// clinic-2's own bob, a real member of its staff. (Its position token is clinic-2's: the
	// reads below keep waiting for clinic-1's last write.)
	pos := s.pos
	s.must(s.do("PUT", "/v1/admin/users/bob", other, map[string]any{"name": "Other Bob", "email": "bob@two.test"}), 200, "")
	s.pos = pos
	// A valid staff token of clinic-1 for someone its directory does not know.
	ghost := s.token("ghost", api.RoleStaff)
	forged, _ := api.MintToken([]byte("not-the-secret-not-the-secret-not"), "bob", "clinic-1", []string{api.RoleStaff}, time.Hour)
	principals := []principal{
		{"none", ""}, {"garbage", "garbage"}, {"forged", forged}, {"expired", expired},
		{"admin", admin}, {"auditor", s.token("aud", api.RoleAuditor)}, {"other-clinic", other},
		{"non-member", staff("eve")}, {"left", staff("cat")}, {"removed", staff("dan")}, {"member", staff("bob")},
		{"unknown-user", ghost},
	}

	type row struct {
		method, path string
		body         any // JSON body, or "file" for an upload
		fresh        bool
		want         map[string]int // by principal; none, garbage, forged and expired are always 401
	}
	staffRead := map[string]int{"admin": 403, "auditor": 403, "other-clinic": 404, "non-member": 404, "left": 200, "removed": 200, "member": 200}
	staffSend := map[string]int{"admin": 403, "auditor": 403, "other-clinic": 404, "non-member": 404, "left": 403, "removed": 403, "member": 201}
	staffAct := map[string]int{"admin": 403, "auditor": 403, "other-clinic": 404, "non-member": 404, "left": 403, "removed": 403, "member": 204}
	ownChoice := map[string]int{"admin": 403, "auditor": 403, "other-clinic": 404, "non-member": 404, "left": 204, "removed": 204, "member": 204}
	list := map[string]int{"admin": 403, "auditor": 403, "other-clinic": 200, "non-member": 200, "left": 200, "removed": 200, "member": 200}
	auditRead := map[string]int{"admin": 403, "auditor": 200, "other-clinic": 404, "non-member": 403, "left": 403, "removed": 403, "member": 403}
	adminOnly := map[string]int{"admin": 200, "auditor": 403, "other-clinic": 200, "non-member": 403, "left": 403, "removed": 403, "member": 403}
	adminNoContent := map[string]int{"admin": 204, "auditor": 403, "other-clinic": 204, "non-member": 403, "left": 403, "removed": 403, "member": 403}
	rows := []row{
		{"GET", "/v1/contacts?q=secret", nil, false, list},
		{"GET", "/v1/conversations", nil, false, list},
		{"GET", "/v1/conversations?archived=true", nil, false, list},
		{"GET", "/v1/unread", nil, false, list},
		// Starting a direct chat with fay: a new pair for each caller; bob of clinic-2 has no fay.
		{"POST", "/v1/conversations", map[string]any{"participant_ids": []string{"fay"}}, false,
			map[string]int{"admin": 403, "auditor": 403, "other-clinic": 422, "non-member": 201, "left": 201, "removed": 201, "member": 201}},
		{"GET", "/v1/conversations/{g}", nil, false, staffRead},
		{"GET", "/v1/conversations/{g}/messages", nil, false, staffRead},
		{"GET", "/v1/files/{file}", nil, false, staffRead},
		{"POST", "/v1/conversations/{g}/messages", map[string]any{"text": "hello"}, false, staffSend},
		{"POST", "/v1/conversations/{g}/files", "file", false, staffSend},
		{"POST", "/v1/conversations/{g}/participants", map[string]any{"user_id": "fay"}, false, staffAct},
		{"DELETE", "/v1/conversations/{g}/participants/fay", nil, false, staffAct},
		{"PATCH", "/v1/conversations/{g}", map[string]any{"title": "Renamed"}, false,
			map[string]int{"admin": 403, "auditor": 403, "other-clinic": 404, "non-member": 404, "left": 403, "removed": 403, "member": 200}},
		{"PUT", "/v1/conversations/{g}/mute", nil, false, ownChoice},
		{"DELETE", "/v1/conversations/{g}/mute", nil, false, ownChoice},
		{"PUT", "/v1/conversations/{g}/archive", nil, false, ownChoice},
		{"DELETE", "/v1/conversations/{g}/archive", nil, false, ownChoice},
		{"POST", "/v1/conversations/{g}/read", map[string]any{}, false, ownChoice},
		// Leaving again is a harmless no-op for those already gone.
		{"POST", "/v1/conversations/{g}/leave", nil, true, map[string]int{"admin": 403, "auditor": 403, "other-clinic": 404, "non-member": 404, "left": 204, "removed": 204, "member": 204}},
		// Only the owner deletes: a member gets not_group_owner.
		{"DELETE", "/v1/conversations/{g}", nil, true, map[string]int{"admin": 403, "auditor": 403, "other-clinic": 404, "non-member": 404, "left": 403, "removed": 403, "member": 403}},
		{"GET", "/v1/audit/conversations/{g}/events", nil, false, auditRead},
		{"GET", "/v1/audit/conversations/{g}/state", nil, false, auditRead},
		{"GET", "/v1/audit/conversations/{g}/export", nil, false, auditRead},
		{"GET", "/v1/audit/verify?stream_id=conversation-{g}", nil, false, auditRead},
		{"GET", "/v1/audit/reads", nil, false, map[string]int{"admin": 403, "auditor": 200, "other-clinic": 200, "non-member": 403, "left": 403, "removed": 403, "member": 403}},
		{"GET", "/v1/admin/users", nil, false, adminOnly},
		{"GET", "/v1/admin/users?q=secret", nil, false, adminOnly},
		{"GET", "/v1/admin/rooms", nil, false, adminOnly},
		{"GET", "/v1/admin/rooms/r1/members", nil, false,
			map[string]int{"admin": 200, "auditor": 403, "other-clinic": 404, "non-member": 403, "left": 403, "removed": 403, "member": 403}},
		{"PUT", "/v1/admin/users/zed", map[string]any{"name": "Zed", "email": "zed@zed.test"}, false, adminOnly},
		{"PUT", "/v1/admin/rooms/r9", map[string]any{"name": "Room nine"}, false, adminOnly},
		{"PUT", "/v1/admin/rooms/r9/members/zed", nil, false, adminNoContent},
		{"DELETE", "/v1/admin/rooms/r9/members/zed", nil, false, adminNoContent},
		{"DELETE", "/v1/admin/users/zed", nil, false, adminNoContent},
	}
	// What must never reach a caller from another clinic.
	secrets := []string{"Secret ", "@one.test", "secret text", "secret-file", "secret bytes", "Secret ward", "Room one"}

	for _, r := range rows {
		for _, p := range principals {
			id, fileID := g, file
			if r.fresh {
				id, fileID = group()
			}
			path := strings.NewReplacer("{g}", id, "{file}", fileID).Replace(r.path)
			want, ok := r.want[p.name]
			if !ok {
				want = http.StatusUnauthorized
			}
			if p.name == "unknown-user" {
				want = http.StatusForbidden // unknown_user on staff routes, forbidden (role) elsewhere
			}
			status, ctype, body := call(t, s, r.method, path, p.token, r.body)
			label := fmt.Sprintf("%s %s as %s", r.method, r.path, p.name)
			if status != want {
				t.Errorf("%s: got %d, want %d: %s", label, status, want, body)
			}
			api.CheckResponse(t, r.method, strings.SplitN(path, "?", 2)[0], status, ctype, body)
			if p.name == "unknown-user" && !strings.Contains(r.path, "/admin/") && !strings.Contains(r.path, "/audit/") &&
				!bytes.Contains(body, []byte(`"code":"unknown_user"`)) {
				t.Errorf("%s: want code unknown_user: %s", label, body)
			}
			if p.name == "other-clinic" {
				for _, secret := range secrets {
					if bytes.Contains(body, []byte(secret)) {
						t.Errorf("%s: the answer holds clinic-1's %q: %s", label, secret, body)
					}
				}
			}
		}
	}
}

// call sends one request without the scenario's read-your-writes header or assertions.
func call(t *testing.T, s *scenario, method, path, token string, body any) (int, string, []byte) {
	t.Helper()
	var rd *bytes.Buffer
	ctype := ""
	switch b := body.(type) {
	case nil:
		rd = &bytes.Buffer{}
	case string: // "file": a multipart upload
		rd = &bytes.Buffer{}
		mw := multipart.NewWriter(rd)
		fw, _ := mw.CreateFormFile("file", "upload.txt")
		fw.Write([]byte("upload"))
		mw.Close()
		ctype = mw.FormDataContentType()
	default:
		raw, _ := jsonMarshal(b)
		rd = bytes.NewBuffer(raw)
		ctype = "application/json"
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// Positions are clinic-1's: a caller of another clinic could not have one (and is refused).
	if method == http.MethodGet && s.pos != "" && token != "" && !strings.Contains(string(tokenClinic(token)), "clinic-2") {
		req.Header.Set("Huddle-Min-Position", s.pos)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out bytes.Buffer
	out.ReadFrom(res.Body)
	return res.StatusCode, res.Header.Get("Content-Type"), out.Bytes()
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// tokenClinic returns the JWT's payload (where the clinic claim is), undecoded fields and all.
func tokenClinic(token string) []byte {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	return payload
}
