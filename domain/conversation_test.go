package domain

import (
	"reflect"
	"strings"
	"testing"
)

func TestDecideConversation(t *testing.T) {
	sha := strings.Repeat("a", 64)
	file := ShareFile{SenderID: "bob", FileID: "f1", Name: "x.pdf", Size: 3, ContentType: "application/pdf", SHA256: sha}
	left := func(u string) Event { return ParticipantLeft{UserID: u} }
	removed := func(u, by string) Event { return ParticipantRemoved{UserID: u, RemovedBy: by} }
	deleted := GroupDeleted{DeletedBy: "ann"}
	cases := []struct {
		name  string
		given []Event
		when  ConversationCommand
		then  []Event
		err   string
	}{
		// Direct chats.
		{"StartDirect_StartsWithSortedPair", nil, StartDirect{ConversationID: directID, Me: "bob", Other: "ann"},
			[]Event{ConversationStarted{ConversationID: directID, Kind: KindDirect, StartedBy: "bob", ParticipantIDs: []string{"ann", "bob"}}}, ""},
		{"StartDirect_ExistingChatContinuesWithoutEvents", []Event{direct()}, StartDirect{ConversationID: directID, Me: "bob", Other: "ann"}, nil, ""},
		{"StartDirect_OtherNotInAddressBook", nil, StartDirect{ConversationID: "d-x", Me: "ann", Other: "xavier"}, nil, CodeNotInAddressBook},
		{"StartDirect_DeactivatedOtherNotInAddressBook", nil, StartDirect{ConversationID: "d-x", Me: "ann", Other: "zed"}, nil, CodeNotInAddressBook},
		{"StartDirect_UnknownOtherNotInAddressBook", nil, StartDirect{ConversationID: "d-x", Me: "ann", Other: "nobody"}, nil, CodeNotInAddressBook},
		{"StartDirect_WithYourselfIsInvalid", nil, StartDirect{ConversationID: "d-x", Me: "ann", Other: "ann"}, nil, CodeInvalid},

		// Groups.
		{"StartGroup_CreatorOwnsAndParticipantOrderIsKept", nil,
			StartGroup{ConversationID: groupID, Creator: "ann", Title: " Ward ", ParticipantIDs: []string{"cat", "ann", "bob", "cat"}},
			[]Event{ConversationStarted{ConversationID: groupID, Kind: KindGroup, Title: "Ward", OwnerID: "ann", StartedBy: "ann", ParticipantIDs: []string{"ann", "cat", "bob"}}}, ""},
		{"StartGroup_EveryParticipantMustBeInCreatorsBook", nil,
			StartGroup{ConversationID: groupID, Creator: "ann", Title: "Ward", ParticipantIDs: []string{"bob", "xavier"}}, nil, CodeNotInAddressBook},
		{"StartGroup_UntitledGroupIsAllowed", nil, StartGroup{ConversationID: groupID, Creator: "ann", Title: " ", ParticipantIDs: []string{"bob", "cat"}},
			[]Event{ConversationStarted{ConversationID: groupID, Kind: KindGroup, OwnerID: "ann", StartedBy: "ann", ParticipantIDs: []string{"ann", "bob", "cat"}}}, ""},
		{"StartGroup_TitleWithControlCharactersInvalid", nil, StartGroup{ConversationID: groupID, Creator: "ann", Title: "a\x07b", ParticipantIDs: []string{"bob"}}, nil, CodeInvalid},
		{"StartGroup_TitleAtMost200", nil, StartGroup{ConversationID: groupID, Creator: "ann", Title: strings.Repeat("t", 201), ParticipantIDs: []string{"bob"}}, nil, CodeInvalid},
		{"StartGroup_NeedsSomeoneElse", nil, StartGroup{ConversationID: groupID, Creator: "ann", Title: "Me", ParticipantIDs: []string{"ann"}}, nil, CodeInvalid},
		{"StartGroup_MalformedParticipantID", nil, StartGroup{ConversationID: groupID, Creator: "ann", Title: "T", ParticipantIDs: []string{"b b"}}, nil, CodeInvalid},

		// Rename.
		{"RenameGroup_ActiveMemberRenames", []Event{group()}, RenameGroup{ActorID: "bob", Title: "ICU"}, []Event{GroupRenamed{Title: "ICU", RenamedBy: "bob"}}, ""},
		{"RenameGroup_SameTitleIsNoOp", []Event{group()}, RenameGroup{ActorID: "bob", Title: "Ward"}, nil, ""},
		{"RenameGroup_LeftMemberCannot", []Event{group(), left("bob")}, RenameGroup{ActorID: "bob", Title: "ICU"}, nil, CodeNotAParticipant},
		{"RenameGroup_DirectIsNotAGroup", []Event{direct()}, RenameGroup{ActorID: "bob", Title: "ICU"}, nil, CodeNotAGroup},
		{"RenameGroup_EmptyTitleInvalid", []Event{group()}, RenameGroup{ActorID: "bob", Title: ""}, nil, CodeInvalid},

		// Messages.
		{"SendMessage_ActiveParticipantSends", []Event{group()}, SendMessage{SenderID: "bob", Text: "hi", ClientMessageID: "c-1"},
			[]Event{MessageSent{MessageID: MessageID(groupID, 2), SenderID: "bob", Text: "hi", ClientMessageID: "c-1"}}, ""},
		{"SendMessage_UrgentIsRecorded", []Event{group()}, SendMessage{SenderID: "bob", Text: "bed 4 now", Priority: PriorityUrgent},
			[]Event{MessageSent{MessageID: MessageID(groupID, 2), SenderID: "bob", Text: "bed 4 now", Priority: PriorityUrgent}}, ""},
		{"SendMessage_NormalPriorityIsLeftOut", []Event{group()}, SendMessage{SenderID: "bob", Text: "hi", Priority: PriorityNormal},
			[]Event{MessageSent{MessageID: MessageID(groupID, 2), SenderID: "bob", Text: "hi"}}, ""},
		{"SendMessage_UnknownPriorityInvalid", []Event{group()}, SendMessage{SenderID: "bob", Text: "hi", Priority: "high"}, nil, CodeInvalid},
		{"SendMessage_InDirectChat", []Event{direct()}, SendMessage{SenderID: "ann", Text: "hello"},
			[]Event{MessageSent{MessageID: MessageID(directID, 2), SenderID: "ann", Text: "hello"}}, ""},
		{"SendMessage_TenThousandRunesIsFine", []Event{group()}, SendMessage{SenderID: "bob", Text: strings.Repeat("é", 10000)},
			[]Event{MessageSent{MessageID: MessageID(groupID, 2), SenderID: "bob", Text: strings.Repeat("é", 10000)}}, ""},
		{"SendMessage_OverTenThousandRunesInvalid", []Event{group()}, SendMessage{SenderID: "bob", Text: strings.Repeat("a", 10001)}, nil, CodeInvalid},
		{"SendMessage_EmptyInvalid", []Event{group()}, SendMessage{SenderID: "bob", Text: ""}, nil, CodeInvalid},
		{"SendMessage_OnlyWhitespaceInvalid", []Event{group()}, SendMessage{SenderID: "bob", Text: " \n\t "}, nil, CodeInvalid},
		{"SendMessage_NulInvalid", []Event{group()}, SendMessage{SenderID: "bob", Text: "a\x00b"}, nil, CodeInvalid},
		{"SendMessage_LeftMemberCannotSend", []Event{group(), left("bob")}, SendMessage{SenderID: "bob", Text: "hi"}, nil, CodeCannotSend},
		{"SendMessage_RemovedMemberCannotSend", []Event{group(), removed("bob", "ann")}, SendMessage{SenderID: "bob", Text: "hi"}, nil, CodeCannotSend},
		{"SendMessage_NeverParticipantNotFound", []Event{group()}, SendMessage{SenderID: "dan", Text: "hi"}, nil, CodeNotFound},
		{"SendMessage_UnknownConversationNotFound", nil, SendMessage{SenderID: "dan", Text: "hi"}, nil, CodeNotFound},
		{"SendMessage_DeletedGroup", []Event{group(), deleted}, SendMessage{SenderID: "bob", Text: "hi"}, nil, CodeConversationDeleted},
		{"SendMessage_DirectChatWithDeactivatedUserCannotSend",
			[]Event{ConversationStarted{ConversationID: "d-z", Kind: KindDirect, StartedBy: "ann", ParticipantIDs: []string{"ann", "zed"}}},
			SendMessage{SenderID: "ann", Text: "hi"}, nil, CodeCannotSend},
		{"SendMessage_DirectChatOutlivesSharedRoom",
			[]Event{ConversationStarted{ConversationID: "d-x", Kind: KindDirect, StartedBy: "ann", ParticipantIDs: []string{"ann", "xavier"}}},
			SendMessage{SenderID: "ann", Text: "still here"}, []Event{MessageSent{MessageID: MessageID("d-x", 2), SenderID: "ann", Text: "still here"}}, ""},
		{"SendMessage_RestoredMemberSendsAgain", []Event{group(), left("bob"), ParticipantAdded{UserID: "bob", AddedBy: "ann"}},
			SendMessage{SenderID: "bob", Text: "back"}, []Event{MessageSent{MessageID: MessageID(groupID, 4), SenderID: "bob", Text: "back"}}, ""},
		{"ShareFile_ActiveParticipantShares", []Event{group()}, file,
			[]Event{FileShared{MessageID: MessageID(groupID, 2), SenderID: "bob", FileID: "f1", Name: "x.pdf", Size: 3, ContentType: "application/pdf", SHA256: sha}}, ""},
		{"ShareFile_LeftMemberCannotSend", []Event{group(), left("bob")}, file, nil, CodeCannotSend},
		{"ShareFile_DeletedGroup", []Event{group(), deleted}, file, nil, CodeConversationDeleted},

		// Add participant.
		{"AddParticipant_MemberAddsColleague", []Event{group()}, AddParticipant{ActorID: "bob", UserID: "dan"}, []Event{ParticipantAdded{UserID: "dan", AddedBy: "bob"}}, ""},
		{"AddParticipant_RestoresSomeoneWhoLeft", []Event{group(), left("cat")}, AddParticipant{ActorID: "bob", UserID: "cat"}, []Event{ParticipantAdded{UserID: "cat", AddedBy: "bob"}}, ""},
		{"AddParticipant_RestoresSomeoneRemoved", []Event{group(), removed("cat", "bob")}, AddParticipant{ActorID: "ann", UserID: "cat"}, []Event{ParticipantAdded{UserID: "cat", AddedBy: "ann"}}, ""},
		{"AddParticipant_ActiveMemberIsNoOp", []Event{group()}, AddParticipant{ActorID: "ann", UserID: "cat"}, nil, ""},
		{"AddParticipant_MustBeInAddersBook", []Event{group()}, AddParticipant{ActorID: "ann", UserID: "xavier"}, nil, CodeNotInAddressBook},
		{"AddParticipant_DeactivatedUserNotInBook", []Event{group()}, AddParticipant{ActorID: "ann", UserID: "zed"}, nil, CodeNotInAddressBook},
		{"AddParticipant_AdderMustBeActive", []Event{group(), left("bob")}, AddParticipant{ActorID: "bob", UserID: "dan"}, nil, CodeNotAParticipant},
		{"AddParticipant_NotToDirectChats", []Event{direct()}, AddParticipant{ActorID: "ann", UserID: "cat"}, nil, CodeNotAGroup},
		{"AddParticipant_DeletedGroup", []Event{group(), deleted}, AddParticipant{ActorID: "ann", UserID: "dan"}, nil, CodeConversationDeleted},
		{"AddParticipant_StrangerNotFound", []Event{group()}, AddParticipant{ActorID: "dan", UserID: "eve"}, nil, CodeNotFound},

		// Remove participant.
		{"RemoveParticipant_AnyMemberRemovesAnother", []Event{group()}, RemoveParticipant{ActorID: "bob", UserID: "cat"}, []Event{removed("cat", "bob")}, ""},
		{"RemoveParticipant_OwnerCannotBeRemoved", []Event{group()}, RemoveParticipant{ActorID: "bob", UserID: "ann"}, nil, CodeOwnerCannotBeRemoved},
		{"RemoveParticipant_YourselfMeansLeave", []Event{group()}, RemoveParticipant{ActorID: "bob", UserID: "bob"}, nil, CodeInvalid},
		{"RemoveParticipant_AlreadyGoneIsNoOp", []Event{group(), left("cat")}, RemoveParticipant{ActorID: "bob", UserID: "cat"}, nil, ""},
		{"RemoveParticipant_NeverMemberNotFound", []Event{group()}, RemoveParticipant{ActorID: "bob", UserID: "dan"}, nil, CodeNotFound},
		{"RemoveParticipant_RemoverMustBeActive", []Event{group(), left("bob")}, RemoveParticipant{ActorID: "bob", UserID: "cat"}, nil, CodeNotAParticipant},
		{"RemoveParticipant_NotInDirectChats", []Event{direct()}, RemoveParticipant{ActorID: "ann", UserID: "bob"}, nil, CodeNotAGroup},
		{"RemoveParticipant_NewOwnerCannotBeRemoved", []Event{group(), left("ann"), OwnershipPassed{FromUserID: "ann", ToUserID: "bob"}},
			RemoveParticipant{ActorID: "cat", UserID: "bob"}, nil, CodeOwnerCannotBeRemoved},

		// Leave.
		{"LeaveGroup_MemberLeaves", []Event{group()}, LeaveGroup{ActorID: "cat"}, []Event{left("cat")}, ""},
		{"LeaveGroup_OwnerPassesOwnershipInOrderAdded", []Event{group()}, LeaveGroup{ActorID: "ann"},
			[]Event{left("ann"), OwnershipPassed{FromUserID: "ann", ToUserID: "bob"}}, ""},
		{"LeaveGroup_OwnerPassesOwnershipToLongestStanding",
			[]Event{group(), left("bob"), ParticipantAdded{UserID: "bob", AddedBy: "ann"}}, LeaveGroup{ActorID: "ann"},
			[]Event{left("ann"), OwnershipPassed{FromUserID: "ann", ToUserID: "cat"}}, ""},
		{"LeaveGroup_LaterAddedMemberIsNotLongestStanding",
			[]Event{group(), ParticipantAdded{UserID: "dan", AddedBy: "ann"}, removed("bob", "ann"), removed("cat", "ann")}, LeaveGroup{ActorID: "ann"},
			[]Event{left("ann"), OwnershipPassed{FromUserID: "ann", ToUserID: "dan"}}, ""},
		{"LeaveGroup_LastMemberLeavesEmptyGroup", []Event{group(), left("bob"), left("cat")}, LeaveGroup{ActorID: "ann"}, []Event{left("ann")}, ""},
		{"LeaveGroup_AlreadyLeftIsNoOp", []Event{group(), left("cat")}, LeaveGroup{ActorID: "cat"}, nil, ""},
		{"LeaveGroup_NotForDirectChats", []Event{direct()}, LeaveGroup{ActorID: "ann"}, nil, CodeNotAGroup},
		{"LeaveGroup_DeletedGroup", []Event{group(), deleted}, LeaveGroup{ActorID: "bob"}, nil, CodeConversationDeleted},
		{"LeaveGroup_StrangerNotFound", []Event{group()}, LeaveGroup{ActorID: "dan"}, nil, CodeNotFound},

		// Delete.
		{"DeleteGroup_OwnerDeletes", []Event{group()}, DeleteGroup{ActorID: "ann"}, []Event{deleted}, ""},
		{"DeleteGroup_OnlyOwner", []Event{group()}, DeleteGroup{ActorID: "bob"}, nil, CodeNotGroupOwner},
		{"DeleteGroup_NewOwnerMayDelete", []Event{group(), left("ann"), OwnershipPassed{FromUserID: "ann", ToUserID: "bob"}},
			DeleteGroup{ActorID: "bob"}, []Event{GroupDeleted{DeletedBy: "bob"}}, ""},
		{"DeleteGroup_FormerOwnerMayNot", []Event{group(), left("ann"), OwnershipPassed{FromUserID: "ann", ToUserID: "bob"}},
			DeleteGroup{ActorID: "ann"}, nil, CodeNotGroupOwner},
		{"DeleteGroup_NotForDirectChats", []Event{direct()}, DeleteGroup{ActorID: "ann"}, nil, CodeNotAGroup},
		{"DeleteGroup_Twice", []Event{group(), deleted}, DeleteGroup{ActorID: "ann"}, nil, CodeConversationDeleted},
		{"DeletedGroup_RejectsRename", []Event{group(), deleted}, RenameGroup{ActorID: "ann", Title: "x"}, nil, CodeConversationDeleted},
		{"DeletedGroup_RejectsRemove", []Event{group(), deleted}, RemoveParticipant{ActorID: "ann", UserID: "bob"}, nil, CodeConversationDeleted},
		{"DeletedGroup_StrangerStillNotFound", []Event{group(), deleted}, SendMessage{SenderID: "dan", Text: "x"}, nil, CodeNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecideConversation(conversationOf(tc.given...), clinic(), tc.when)
			expect(t, got, err, tc.then, tc.err)
		})
	}
}

func TestDirectConversationID_SamePairSameID(t *testing.T) {
	a, b := DirectConversationID("c1", "ann", "bob"), DirectConversationID("c1", "bob", "ann")
	if a != b {
		t.Fatalf("order matters: %s vs %s", a, b)
	}
	if DirectConversationID("c2", "ann", "bob") == a {
		t.Fatal("another clinic's pair must get another id")
	}
	if DirectConversationID("c1", "ann", "cat") == a {
		t.Fatal("another pair must get another id")
	}
	if !ValidID(a) {
		t.Fatalf("%q is not a valid API id", a)
	}
}

func TestMessageID_RoundTrips(t *testing.T) {
	id := MessageID("d-abc", 42)
	conv, v, ok := ParseMessageID(id)
	if !ok || conv != "d-abc" || v != 42 || !ValidID(id) {
		t.Fatalf("ParseMessageID(%q) = %q %d %v", id, conv, v, ok)
	}
	for _, bad := range []string{"", "abc", ".5", "x.0", "x.-1", "x.y"} {
		if _, _, ok := ParseMessageID(bad); ok {
			t.Fatalf("ParseMessageID(%q) accepted", bad)
		}
	}
}

func TestConversation_MembershipWindows(t *testing.T) {
	c := conversationOf(group(), // 1
		MessageSent{MessageID: "m2", SenderID: "ann", Text: "a"}, // 2
		ParticipantLeft{UserID: "cat"},                           // 3
		MessageSent{MessageID: "m4", SenderID: "ann", Text: "b"}, // 4
		ParticipantAdded{UserID: "cat", AddedBy: "ann"},          // 5
		MessageSent{MessageID: "m6", SenderID: "ann", Text: "c"}, // 6
	)
	cases := []struct {
		name    string
		user    string
		version int64
		want    bool
	}{
		{"MemberSeesMessageBeforeLeaving", "cat", 2, true},
		{"MemberSeesTheirOwnLeaving", "cat", 3, true},
		{"LeftMemberMissesWhatHappenedWhileAway", "cat", 4, false},
		{"RestoredMemberSeesTheirReturn", "cat", 5, true},
		{"RestoredMemberSeesNewMessages", "cat", 6, true},
		{"ActiveMemberSeesEverything", "bob", 4, true},
		{"StrangerSeesNothing", "dan", 2, false},
		{"FutureVersionInvisible", "ann", 7, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.CanSee(tc.user, tc.version); got != tc.want {
				t.Fatalf("CanSee(%s, %d) = %v", tc.user, tc.version, got)
			}
		})
	}
	t.Run("DeletedGroupShowsNothing", func(t *testing.T) {
		d := EvolveConversation(c, 7, GroupDeleted{DeletedBy: "ann"})
		if d.CanSee("ann", 2) {
			t.Fatal("deleted group still visible")
		}
	})
}

// Shared files are the blob store's to remember (ADR 0009): a FileShared event only moves the
// version, so the state (snapshotted, decoded on every command) does not grow with each file.
func TestEvolveConversation_FileSharedOnlyMovesTheVersion(t *testing.T) {
	before := conversationOf(group())
	after := EvolveConversation(before, 2, FileShared{MessageID: "m2", SenderID: "ann", FileID: "f1", Name: "x.pdf",
		Size: 3, ContentType: "application/pdf", SHA256: strings.Repeat("0", 64)})
	if after.Version != 2 {
		t.Fatalf("version %d, want 2", after.Version)
	}
	after.Version = before.Version
	if !reflect.DeepEqual(after, before) {
		t.Fatalf("the state changed beyond its version:\n%+v\n%+v", before, after)
	}
}

func TestLeaveGroup_LastMemberLeavingClosesGroup(t *testing.T) {
	c := conversationOf(group(), ParticipantLeft{UserID: "bob"}, ParticipantLeft{UserID: "cat"}, ParticipantLeft{UserID: "ann"})
	if !c.Closed() || len(c.ActiveMembers()) != 0 {
		t.Fatalf("group not empty and closed: %+v", c.Participants)
	}
	_, err := DecideConversation(c, clinic(), AddParticipant{ActorID: "ann", UserID: "bob"})
	if ErrorCode(err) != CodeNotAParticipant {
		t.Fatalf("nobody may add to a closed group, got %v", err)
	}
	_, err = DecideConversation(c, clinic(), SendMessage{SenderID: "ann", Text: "x"})
	if ErrorCode(err) != CodeCannotSend {
		t.Fatalf("nobody may send to a closed group, got %v", err)
	}
}

func TestIsDirectRequest(t *testing.T) {
	title := "T"
	cases := []struct {
		name   string
		others []string
		title  *string
		want   bool
	}{
		{"OneOtherNoTitleIsDirect", []string{"bob"}, nil, true},
		{"OneOtherWithTitleIsGroup", []string{"bob"}, &title, false},
		{"TwoOthersIsGroup", []string{"bob", "cat"}, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsDirectRequest(tc.others, tc.title); got != tc.want {
				t.Fatalf("got %v", got)
			}
		})
	}
}
