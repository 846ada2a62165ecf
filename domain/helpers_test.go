package domain

import (
	"reflect"
	"testing"
)

// directoryOf replays directory events.
func directoryOf(events ...Event) Directory {
	d := NewDirectory()
	for _, e := range events {
		d = EvolveDirectory(d, e)
	}
	return d
}

// conversationOf replays conversation events as versions 1..n.
func conversationOf(events ...Event) Conversation {
	var c Conversation
	for i, e := range events {
		c = EvolveConversation(c, int64(i+1), e)
	}
	return c
}

func memberOf(events ...Event) Member {
	var m Member
	for _, e := range events {
		m = EvolveMember(m, e)
	}
	return m
}

// clinic is the directory most conversation tests use: ann, bob, cat, dan and eve share room
// r1; xavier is only in r2 (nobody else's colleague); zed is in r1 but deactivated.
func clinic() Directory {
	var evs []Event
	for _, u := range []string{"ann", "bob", "cat", "dan", "eve", "xavier", "zed"} {
		evs = append(evs, UserProfileSet{UserID: u, Name: u, Email: u + "@clinic.test"})
	}
	evs = append(evs, RoomNamed{RoomID: "r1", Name: "Room 1"}, RoomNamed{RoomID: "r2", Name: "Room 2"})
	for _, u := range []string{"ann", "bob", "cat", "dan", "eve", "zed"} {
		evs = append(evs, RoomMemberAdded{RoomID: "r1", UserID: u})
	}
	evs = append(evs, RoomMemberAdded{RoomID: "r2", UserID: "xavier"}, UserDeactivated{UserID: "zed"})
	return directoryOf(evs...)
}

const groupID = "g1"

// group is a started group owned by ann with bob and cat, in that order.
func group() Event {
	return ConversationStarted{ConversationID: groupID, Kind: KindGroup, Title: "Ward", OwnerID: "ann",
		StartedBy: "ann", ParticipantIDs: []string{"ann", "bob", "cat"}}
}

var directID = DirectConversationID("c1", "ann", "bob")

func direct() Event {
	return ConversationStarted{ConversationID: directID, Kind: KindDirect, StartedBy: "ann",
		ParticipantIDs: []string{"ann", "bob"}}
}

// expect checks a decision: either the events or the error code.
func expect(t *testing.T, got []Event, err error, want []Event, wantCode string) {
	t.Helper()
	if wantCode != "" {
		if ErrorCode(err) != wantCode {
			t.Fatalf("want error %q, got events %#v err %v", wantCode, got, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("want events %#v, got error %v", want, err)
	}
	if len(want) == 0 && len(got) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("events:\n got %#v\nwant %#v", got, want)
	}
}
