package api_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/huddle-chat/huddle/api"
	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
)

// A message to a 100-member group with every member connected reaches every member's stream,
// once, with notify set for everyone but the sender (one NATS subscription per instance wakes
// them all, live.Hub).
func TestStream_MessageToA100MemberGroupReachesEveryStream(t *testing.T) {
	t.Parallel()
	s := startScenario(t)
	admin := s.token("root", api.RoleAdmin)
	s.must(s.do("PUT", "/v1/admin/rooms/r1", admin, map[string]any{"name": "Ward"}), 200, "")
	users := make([]string, 100)
	for i := range users {
		users[i] = fmt.Sprintf("u%03d", i)
	}
	// The directory in one append (100 PUTs of each kind would dominate the test's time).
	var dir []eventstore.EventData
	for _, u := range users {
		for _, ev := range []domain.Event{
			domain.UserProfileSet{UserID: u, Name: "User " + u, Email: u + "@clinic.test"},
			domain.RoomMemberAdded{RoomID: "r1", UserID: u},
		} {
			typ, raw, err := domain.Encode(ev)
			if err != nil {
				t.Fatal(err)
			}
			dir = append(dir, eventstore.EventData{Type: typ, Data: raw, Metadata: eventstore.Metadata{ActorID: "root", ClinicID: "clinic-1"}})
		}
	}
	if _, err := s.app.Store.Append(context.Background(), domain.DirectoryStream("clinic-1"), eventstore.ExpectAny, dir, ""); err != nil {
		t.Fatal(err)
	}
	sender := s.token(users[0], api.RoleStaff)
	group := s.must(s.do("POST", "/v1/conversations", sender, map[string]any{"participant_ids": users[1:], "title": "Everyone"}), 201, "").str("id")

	streams := make([]*sseClient, len(users))
	for i, u := range users {
		streams[i] = s.stream(s.token(u, api.RoleStaff), "")
	}
	s.must(s.do("POST", "/v1/conversations/"+group+"/messages", sender, map[string]any{"text": "handover at 7"}), 201, "")

	for i, c := range streams {
		m := c.next(t, "message", nil)
		if m.data["text"] != "handover at 7" || m.data["conversation_id"] != group || m.data["notify"] != (i != 0) {
			t.Errorf("%s got %+v", users[i], m.data)
		}
	}
}
