package directory_test

import (
	"testing"

	"github.com/huddle-chat/huddle/directory"
	"github.com/huddle-chat/huddle/internal/projtest"
	"github.com/huddle-chat/huddle/internal/testenv"

	"github.com/huddle-chat/huddle/domain"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestContacts_AddressBookSearchAndDeactivation(t *testing.T) {
	t.Parallel()
	e := projtest.New(t)
	dir := domain.DirectoryStream("c1")
	evs := e.AppendEvents("c1", "admin", dir,
		domain.UserProfileSet{UserID: "me", Name: "Me Myself", Email: "me@clinic.test"},
		domain.UserProfileSet{UserID: "a", Name: "Ana Smith", Email: "ana@clinic.test", Title: "MD"},
		domain.UserProfileSet{UserID: "b", Name: "Ben 100%_Jones", Email: "ben@lab.test"},
		domain.UserProfileSet{UserID: "c", Name: "Cat Other", Email: "cat@clinic.test"},
		domain.UserProfileSet{UserID: "d", Name: "Dan Gone", Email: "dan@clinic.test"},
		domain.RoomMemberAdded{RoomID: "r1", UserID: "me"},
		domain.RoomMemberAdded{RoomID: "r1", UserID: "a"},
		domain.RoomMemberAdded{RoomID: "r2", UserID: "me"},
		domain.RoomMemberAdded{RoomID: "r2", UserID: "b"},
		domain.RoomMemberAdded{RoomID: "r2", UserID: "a"}, // in two shared rooms: listed once
		domain.RoomMemberAdded{RoomID: "r3", UserID: "c"}, // shares no room with me
		domain.RoomMemberAdded{RoomID: "r1", UserID: "d"},
		domain.UserDeactivated{UserID: "d"},
	)
	e.Deliver(evs[len(evs)-1])
	e.Run()
	e.Settle()
	q := directory.New(e.Pool)
	cases := []struct {
		q    string
		want []string
	}{
		{"", []string{"a", "b"}},
		{"SMITH", []string{"a"}},
		{"lab.TEST", []string{"b"}},
		{"%", []string{"b"}}, // LIKE metacharacters match literally
		{"_j", []string{"b"}},
		{"cat", nil},
		{"me", nil}, // never myself
		{"dan", nil},
	}
	for _, tc := range cases {
		got, err := q.Contacts(e.Ctx, "c1", "me", tc.q, 100)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range got {
			ids = append(ids, c.ID)
		}
		if len(ids) != len(tc.want) || (len(ids) > 0 && ids[0] != tc.want[0]) || (len(ids) > 1 && ids[1] != tc.want[1]) {
			t.Errorf("q=%q: %v, want %v", tc.q, ids, tc.want)
		}
	}
	// Another clinic sees nothing of this one.
	if got, _ := q.Contacts(e.Ctx, "c2", "me", "", 100); len(got) != 0 {
		t.Errorf("clinic c2 sees %v", got)
	}
}
