package domain

import (
	"reflect"
	"strings"
	"testing"
)

func TestDecideDirectory(t *testing.T) {
	ann := UserProfileSet{UserID: "ann", Name: "Ann", Email: "ann@clinic.test"}
	room := RoomNamed{RoomID: "r1", Name: "Room 1"}
	cases := []struct {
		name  string
		given []Event
		when  DirectoryCommand
		then  []Event
		err   string
	}{
		{"SetUser_CreatesUser", nil, SetUser{UserID: "ann", Name: " Ann ", Email: "ann@clinic.test", Title: "MD"},
			[]Event{UserProfileSet{UserID: "ann", Name: "Ann", Email: "ann@clinic.test", Title: "MD"}}, ""},
		{"SetUser_UpdatesUser", []Event{ann}, SetUser{UserID: "ann", Name: "Ann B", Email: "ann@clinic.test"},
			[]Event{UserProfileSet{UserID: "ann", Name: "Ann B", Email: "ann@clinic.test"}}, ""},
		{"SetUser_SameProfileIsNoOp", []Event{ann}, SetUser{UserID: "ann", Name: "Ann", Email: "ann@clinic.test"}, nil, ""},
		{"SetUser_ReactivatesDeactivatedUser", []Event{ann, UserDeactivated{UserID: "ann"}},
			SetUser{UserID: "ann", Name: "Ann", Email: "ann@clinic.test"}, []Event{ann}, ""},
		{"SetUser_RejectsEmptyName", nil, SetUser{UserID: "ann", Name: "  ", Email: "ann@clinic.test"}, nil, CodeInvalid},
		{"SetUser_RejectsLongName", nil, SetUser{UserID: "ann", Name: strings.Repeat("a", 201), Email: "ann@clinic.test"}, nil, CodeInvalid},
		{"SetUser_AcceptsNameOf200", nil, SetUser{UserID: "ann", Name: strings.Repeat("é", 200), Email: "ann@clinic.test"},
			[]Event{UserProfileSet{UserID: "ann", Name: strings.Repeat("é", 200), Email: "ann@clinic.test"}}, ""},
		{"SetUser_RejectsControlCharsInName", nil, SetUser{UserID: "ann", Name: "A\x00nn", Email: "ann@clinic.test"}, nil, CodeInvalid},
		{"SetUser_RejectsBadEmail", nil, SetUser{UserID: "ann", Name: "Ann", Email: "ann-at-clinic"}, nil, CodeInvalid},
		{"SetUser_RejectsNamedEmail", nil, SetUser{UserID: "ann", Name: "Ann", Email: "Ann <ann@clinic.test>"}, nil, CodeInvalid},
		{"SetUser_RejectsLongTitle", nil, SetUser{UserID: "ann", Name: "Ann", Email: "ann@clinic.test", Title: strings.Repeat("t", 201)}, nil, CodeInvalid},
		{"SetUser_RejectsMalformedID", nil, SetUser{UserID: "a/b", Name: "Ann", Email: "ann@clinic.test"}, nil, CodeInvalid},
		{"DeactivateUser_Deactivates", []Event{ann}, DeactivateUser{UserID: "ann"}, []Event{UserDeactivated{UserID: "ann"}}, ""},
		{"DeactivateUser_TwiceIsNoOp", []Event{ann, UserDeactivated{UserID: "ann"}}, DeactivateUser{UserID: "ann"}, nil, ""},
		{"DeactivateUser_UnknownIsNotFound", nil, DeactivateUser{UserID: "ann"}, nil, CodeNotFound},
		{"NameRoom_CreatesRoom", nil, NameRoom{RoomID: "r1", Name: "Room 1"}, []Event{room}, ""},
		{"NameRoom_Renames", []Event{room}, NameRoom{RoomID: "r1", Name: "Front desk"}, []Event{RoomNamed{RoomID: "r1", Name: "Front desk"}}, ""},
		{"NameRoom_SameNameIsNoOp", []Event{room}, NameRoom{RoomID: "r1", Name: "Room 1"}, nil, ""},
		{"NameRoom_RejectsEmptyName", nil, NameRoom{RoomID: "r1", Name: ""}, nil, CodeInvalid},
		{"AddRoomMember_Adds", []Event{ann, room}, AddRoomMember{RoomID: "r1", UserID: "ann"}, []Event{RoomMemberAdded{RoomID: "r1", UserID: "ann"}}, ""},
		{"AddRoomMember_AlreadyMemberIsNoOp", []Event{ann, room, RoomMemberAdded{RoomID: "r1", UserID: "ann"}}, AddRoomMember{RoomID: "r1", UserID: "ann"}, nil, ""},
		{"AddRoomMember_UnknownRoomIsNotFound", []Event{ann}, AddRoomMember{RoomID: "r1", UserID: "ann"}, nil, CodeNotFound},
		{"AddRoomMember_UnknownUserIsNotFound", []Event{room}, AddRoomMember{RoomID: "r1", UserID: "ann"}, nil, CodeNotFound},
		{"RemoveRoomMember_Removes", []Event{ann, room, RoomMemberAdded{RoomID: "r1", UserID: "ann"}}, RemoveRoomMember{RoomID: "r1", UserID: "ann"}, []Event{RoomMemberRemoved{RoomID: "r1", UserID: "ann"}}, ""},
		{"RemoveRoomMember_NotMemberIsNoOp", []Event{ann, room}, RemoveRoomMember{RoomID: "r1", UserID: "ann"}, nil, ""},
		{"RemoveRoomMember_UnknownRoomIsNotFound", []Event{ann}, RemoveRoomMember{RoomID: "r1", UserID: "ann"}, nil, CodeNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecideDirectory(directoryOf(tc.given...), tc.when)
			expect(t, got, err, tc.then, tc.err)
		})
	}
}

func TestAddressBook(t *testing.T) {
	users := func(ids ...string) []Event {
		var evs []Event
		for _, id := range ids {
			evs = append(evs, UserProfileSet{UserID: id, Name: id, Email: id + "@c.test"})
		}
		return evs
	}
	base := append(users("ann", "bob", "cat", "dan"),
		RoomNamed{RoomID: "r1", Name: "1"}, RoomNamed{RoomID: "r2", Name: "2"},
		RoomMemberAdded{RoomID: "r1", UserID: "ann"}, RoomMemberAdded{RoomID: "r1", UserID: "bob"},
		RoomMemberAdded{RoomID: "r2", UserID: "ann"}, RoomMemberAdded{RoomID: "r2", UserID: "cat"})
	cases := []struct {
		name  string
		extra []Event
		me    string
		want  []string
	}{
		{"SharingARoomPutsYouInEachOthersBook", nil, "bob", []string{"ann"}},
		{"UserInTwoRoomsSeesBothRoomsStaff_NeverThemselves", nil, "ann", []string{"bob", "cat"}},
		{"NoSharedRoomMeansNotInBook", nil, "dan", []string{}},
		{"LeavingARoomLeavesTheBook", []Event{RoomMemberRemoved{RoomID: "r2", UserID: "cat"}}, "ann", []string{"bob"}},
		{"DeactivatedUserLeavesEveryBook", []Event{UserDeactivated{UserID: "bob"}}, "ann", []string{"cat"}},
		{"DeactivatedUserHasNoBook", []Event{UserDeactivated{UserID: "ann"}}, "ann", []string{}},
		{"ReactivatedUserIsBack", []Event{UserDeactivated{UserID: "bob"}, UserProfileSet{UserID: "bob", Name: "bob", Email: "bob@c.test"}}, "ann", []string{"bob", "cat"}},
		{"SharingTwoRoomsCountsOnce", []Event{RoomMemberAdded{RoomID: "r2", UserID: "bob"}}, "ann", []string{"bob", "cat"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := directoryOf(append(append([]Event{}, base...), tc.extra...)...)
			got := d.AddressBook(tc.me)
			if len(got) == 0 && len(tc.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("AddressBook(%s) = %v, want %v", tc.me, got, tc.want)
			}
			for _, other := range tc.want {
				if !d.InAddressBook(tc.me, other) {
					t.Fatalf("InAddressBook(%s, %s) = false", tc.me, other)
				}
			}
			if d.InAddressBook(tc.me, tc.me) {
				t.Fatal("you are never in your own address book")
			}
		})
	}
}
