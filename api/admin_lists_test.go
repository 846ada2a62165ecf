package api_test

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/huddle-chat/huddle/api"
)

// pages follows next_cursor from path until the last page, returning every item of list.
func (s *scenario) pages(path, token, list string) (items []map[string]any, pages int) {
	s.t.Helper()
	next := path
	for pages = 1; ; pages++ {
		r := s.must(s.do("GET", next, token, nil), http.StatusOK, "")
		items = append(items, r.list(list)...)
		cursor := r.str("next_cursor")
		if cursor == "" {
			return items, pages
		}
		if pages > 20 {
			s.t.Fatalf("%s: more than 20 pages", path)
		}
		sep := "?"
		if u, _ := url.Parse(path); u.RawQuery != "" {
			sep = "&"
		}
		next = path + sep + "cursor=" + url.QueryEscape(cursor)
	}
}

// API v1.1 "Directory lists": an admin lists what was created, paged by name; every answer is
// checked against openapi.yaml by the scenario.
func TestAdminLists_UsersRoomsAndMembersPagedByName(t *testing.T) {
	s := startScenario(t)
	admin := s.token("root", api.RoleAdmin)
	for id, name := range map[string]string{"u1": "Dana", "u2": "ari", "u3": "Bea", "u4": "Cy", "u5": "Eli"} {
		s.must(s.do("PUT", "/v1/admin/users/"+id, admin, map[string]any{"name": name, "email": id + "@clinic.test", "title": "RN"}), 200, "")
	}
	s.must(s.do("DELETE", "/v1/admin/users/u5", admin, nil), 204, "")
	s.must(s.do("PUT", "/v1/admin/rooms/r2", admin, map[string]any{"name": "Ward"}), 200, "")
	s.must(s.do("PUT", "/v1/admin/rooms/r1", admin, map[string]any{"name": "Front desk"}), 200, "")
	s.must(s.do("PUT", "/v1/admin/rooms/r3", admin, map[string]any{"name": "Empty"}), 200, "")
	for _, u := range []string{"u1", "u2", "u3"} {
		s.must(s.do("PUT", "/v1/admin/rooms/r1/members/"+u, admin, nil), 204, "")
	}
	s.must(s.do("PUT", "/v1/admin/rooms/r2/members/u4", admin, nil), 204, "")

	users, pages := s.pages("/v1/admin/users?limit=2", admin, "users")
	if got := ids(users); pages != 3 || len(got) != 5 || got[0] != "u2" || got[1] != "u3" || got[2] != "u4" || got[3] != "u1" || got[4] != "u5" {
		t.Fatalf("users in %d pages: %v, want u2 u3 u4 u1 u5 (by name, case-insensitive) in 3", pages, got)
	}
	if last := users[4]; last["active"] != false || last["title"] != "RN" || last["email"] != "u5@clinic.test" {
		t.Errorf("deactivated user: %v", last)
	}
	if got := ids(s.must(s.do("GET", "/v1/admin/users?q=BE", admin, nil), 200, "").list("users")); len(got) != 1 || got[0] != "u3" {
		t.Errorf("q=BE: %v, want u3", got)
	}

	rooms, _ := s.pages("/v1/admin/rooms?limit=1", admin, "rooms")
	counts := map[string]any{}
	for _, r := range rooms {
		counts[r["id"].(string)] = r["member_count"]
	}
	if got := ids(rooms); len(got) != 3 || got[0] != "r3" || got[1] != "r1" || got[2] != "r2" ||
		counts["r1"] != 3.0 || counts["r2"] != 1.0 || counts["r3"] != 0.0 {
		t.Fatalf("rooms %v with counts %v", got, counts)
	}

	members, _ := s.pages("/v1/admin/rooms/r1/members?limit=2", admin, "members")
	if got := ids(members); len(got) != 3 || got[0] != "u2" || members[0]["name"] != "ari" || members[0]["email"] != "u2@clinic.test" {
		t.Fatalf("members of r1: %v", members)
	}
	s.must(s.do("GET", "/v1/admin/rooms/nowhere/members", admin, nil), 404, "not_found")
	s.must(s.do("GET", "/v1/admin/users?cursor=garbage", admin, nil), 400, "invalid_request")
	s.must(s.do("GET", "/v1/admin/rooms?limit=0", admin, nil), 400, "invalid_request")
	s.must(s.do("GET", "/v1/admin/users", s.token("u1", api.RoleStaff), nil), 403, "forbidden")
}
