package domain

import (
	"reflect"
	"testing"
)

func TestMemberStream_OnePerClinicAndUserAndTheUserReadBack(t *testing.T) {
	if MemberStream("c1", "u1") == MemberStream("c2", "u1") {
		t.Fatal("two clinics' u1 share a member stream")
	}
	for _, c := range []struct {
		stream, clinic, user string
		legacy               bool
	}{
		{MemberStream("c1", "u1"), "c1", "u1", false},
		{MemberStream("clinic:a-b", "dr@x"), "clinic:a-b", "dr@x", false},
		{LegacyMemberStream("u1"), "c1", "u1", true},
		// A legacy user id with '.' (from before the directory alphabet) is not clinic "dr"'s ann.
		{LegacyMemberStream("dr.ann"), "c1", "dr.ann", true},
		{MemberStream("dr", "ann"), "dr", "ann", false},
	} {
		if got := MemberStreamUser(c.stream, c.clinic); got != c.user {
			t.Errorf("MemberStreamUser(%q, %q) = %q, want %q", c.stream, c.clinic, got, c.user)
		}
		if got := IsLegacyMemberStream(c.stream, c.clinic); got != c.legacy {
			t.Errorf("IsLegacyMemberStream(%q, %q) = %v, want %v", c.stream, c.clinic, got, c.legacy)
		}
	}
	if IsLegacyMemberStream(ConversationStream("g1"), "c1") {
		t.Error("a conversation stream counted as a legacy member stream")
	}
}

func TestEvolveMember_CarriedOverStateSeedsButNeverOverrides(t *testing.T) {
	m := EvolveMember(Member{}, ConversationArchived{ConversationID: "g2"}) // on the new stream first
	m = EvolveMember(m, ReadMarkerMoved{ConversationID: "g2", UpToVersion: 3})
	m = EvolveMember(m, MemberStreamCarriedOver{FromStream: "member-u1", FromVersion: 9, FromHash: "h", Events: 4,
		Conversations: map[string]MemberConversation{
			"g1": {Muted: true, ReadUpTo: 7},
			"g2": {Muted: true, ReadUpTo: 5},
		}})
	want := map[string]MemberConversation{
		"g1": {Muted: true, ReadUpTo: 7},
		"g2": {Archived: true, ReadUpTo: 5}, // the newer choice stands; the read marker never goes back
	}
	if !reflect.DeepEqual(m.Conversations, want) {
		t.Fatalf("state %+v, want %+v", m.Conversations, want)
	}
}
