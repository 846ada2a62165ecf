package domain

import "testing"

func TestDecideMember(t *testing.T) {
	conv := []Event{group(), MessageSent{MessageID: MessageID(groupID, 2), SenderID: "ann", Text: "a"},
		MessageSent{MessageID: MessageID(groupID, 3), SenderID: "bob", Text: "b"}}
	muted := ConversationMuted{ConversationID: groupID}
	archived := ConversationArchived{ConversationID: groupID}
	cases := []struct {
		name   string
		conv   []Event
		member []Event
		when   MemberCommand
		then   []Event
		err    string
	}{
		{"Mute_Mutes", conv, nil, Mute{UserID: "bob"}, []Event{muted}, ""},
		{"Mute_WhenMutedIsNoOp", conv, []Event{muted}, Mute{UserID: "bob"}, nil, ""},
		{"Unmute_Unmutes", conv, []Event{muted}, Unmute{UserID: "bob"}, []Event{ConversationUnmuted{ConversationID: groupID}}, ""},
		{"Unmute_WhenNotMutedIsNoOp", conv, nil, Unmute{UserID: "bob"}, nil, ""},
		{"Archive_Archives", conv, nil, Archive{UserID: "bob"}, []Event{archived}, ""},
		{"Archive_WhenArchivedIsNoOp", conv, []Event{archived}, Archive{UserID: "bob"}, nil, ""},
		{"Unarchive_Unarchives", conv, []Event{archived}, Unarchive{UserID: "bob"}, []Event{ConversationUnarchived{ConversationID: groupID}}, ""},
		{"Unarchive_WhenNotArchivedIsNoOp", conv, nil, Unarchive{UserID: "bob"}, nil, ""},
		{"Archive_LeftMemberMayStillArchive", append(append([]Event{}, conv...), ParticipantLeft{UserID: "cat"}), nil, Archive{UserID: "cat"}, []Event{archived}, ""},
		{"Mute_NeverParticipantNotFound", conv, nil, Mute{UserID: "dan"}, nil, CodeNotFound},
		{"Mute_DeletedGroup", append(append([]Event{}, conv...), GroupDeleted{DeletedBy: "ann"}), nil, Mute{UserID: "bob"}, nil, CodeConversationDeleted},
		{"MarkRead_AllByDefault", conv, nil, MarkRead{UserID: "bob"}, []Event{ReadMarkerMoved{ConversationID: groupID, UpToVersion: 3}}, ""},
		{"MarkRead_UpToAMessage", conv, nil, MarkRead{UserID: "bob", UpToVersion: 2, UpToMessageID: MessageID(groupID, 2)},
			[]Event{ReadMarkerMoved{ConversationID: groupID, UpToVersion: 2, UpToMessageID: MessageID(groupID, 2)}}, ""},
		{"MarkRead_NeverBackwards", conv, []Event{ReadMarkerMoved{ConversationID: groupID, UpToVersion: 3}}, MarkRead{UserID: "bob", UpToVersion: 2}, nil, ""},
		{"MarkRead_AgainIsNoOp", conv, []Event{ReadMarkerMoved{ConversationID: groupID, UpToVersion: 3}}, MarkRead{UserID: "bob"}, nil, ""},
		{"MarkRead_UnknownVersionNotFound", conv, nil, MarkRead{UserID: "bob", UpToVersion: 9}, nil, CodeNotFound},
		{"MarkRead_LeftMemberReadsOnlyUpToLeaving", append(append([]Event{}, conv[:2]...), ParticipantLeft{UserID: "cat"}, conv[2]), nil,
			MarkRead{UserID: "cat"}, []Event{ReadMarkerMoved{ConversationID: groupID, UpToVersion: 3}}, ""},
		{"MarkRead_LeftMemberCannotMarkWhatTheyCannotSee", append(append([]Event{}, conv[:2]...), ParticipantLeft{UserID: "cat"}, MessageSent{MessageID: "x", SenderID: "ann", Text: "c"}), nil,
			MarkRead{UserID: "cat", UpToVersion: 4}, nil, CodeNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecideMember(memberOf(tc.member...), conversationOf(tc.conv...), tc.when)
			expect(t, got, err, tc.then, tc.err)
		})
	}
}

func TestMember_SettingsAreKeptPerConversation(t *testing.T) {
	m := memberOf(ConversationMuted{ConversationID: "a"}, ConversationArchived{ConversationID: "b"},
		ReadMarkerMoved{ConversationID: "a", UpToVersion: 5}, ReadMarkerMoved{ConversationID: "a", UpToVersion: 3})
	if s := m.Settings("a"); !s.Muted || s.Archived || s.ReadUpTo != 5 {
		t.Fatalf("a: %+v", s)
	}
	if s := m.Settings("b"); s.Muted || !s.Archived {
		t.Fatalf("b: %+v", s)
	}
}
