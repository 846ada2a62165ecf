package domain

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func urgentFrom(sender string, version int64) Event {
	return MessageSent{MessageID: MessageID(groupID, version), SenderID: sender, Text: "bed 4 now", Priority: PriorityUrgent}
}

func textFrom(sender string, version int64) Event {
	return MessageSent{MessageID: MessageID(groupID, version), SenderID: sender, Text: "hello"}
}

func fileFrom(sender string, version int64) Event {
	return FileShared{MessageID: MessageID(groupID, version), SenderID: sender, FileID: "f1", Name: "x.pdf", Size: 3,
		ContentType: "application/pdf", SHA256: strings.Repeat("a", 64)}
}

func ack(user string, version int64) Event {
	return MessageAcknowledged{MessageID: MessageID(groupID, version), UserID: user}
}

func recalled(by string, version int64) Event {
	return MessageRecalled{MessageID: MessageID(groupID, version), RecalledBy: by}
}

// lastMessage is what the command handler reads of the newest message event of given (the
// one a test's command names) before deciding.
func lastMessage(t *testing.T, given []Event) SentMessage {
	t.Helper()
	for i := len(given) - 1; i >= 0; i-- {
		if m, ok := SentMessageOf(int64(i+1), given[i]); ok {
			return m
		}
	}
	t.Fatal("no message among the events")
	return SentMessage{}
}

func TestDecideMessageRules(t *testing.T) {
	// The group: ann (owner), bob, cat at version 1; messages follow.
	urgent := []Event{group(), urgentFrom("ann", 2)}
	text := []Event{group(), textFrom("bob", 2)}
	file := []Event{group(), fileFrom("bob", 2)}
	left := func(u string) Event { return ParticipantLeft{UserID: u} }
	withDan := []Event{group(), ParticipantAdded{UserID: "dan", AddedBy: "ann"}, urgentFrom("ann", 3)}
	cases := []struct {
		name  string
		given []Event
		when  func(m SentMessage) ConversationCommand
		then  []Event
		err   string
	}{
		// Acknowledging an urgent message.
		{"Ack_RecipientAcknowledges", urgent, func(m SentMessage) ConversationCommand { return AcknowledgeMessage{ActorID: "bob", Message: m} },
			[]Event{ack("bob", 2)}, ""},
		{"Ack_RepeatChangesNothing", append(urgent, ack("bob", 2)), func(m SentMessage) ConversationCommand { return AcknowledgeMessage{ActorID: "bob", Message: m} },
			nil, ""},
		{"Ack_AfterEveryoneAckedChangesNothing", append(urgent, ack("bob", 2), ack("cat", 2)),
			func(m SentMessage) ConversationCommand { return AcknowledgeMessage{ActorID: "cat", Message: m} }, nil, ""},
		{"Ack_SenderCannotAckOwn", urgent, func(m SentMessage) ConversationCommand { return AcknowledgeMessage{ActorID: "ann", Message: m} },
			nil, CodeCannotAckOwn},
		{"Ack_NormalMessageIsNotUrgent", text, func(m SentMessage) ConversationCommand { return AcknowledgeMessage{ActorID: "ann", Message: m} },
			nil, CodeNotUrgent},
		{"Ack_FileIsNotUrgent", file, func(m SentMessage) ConversationCommand { return AcknowledgeMessage{ActorID: "ann", Message: m} },
			nil, CodeNotUrgent},
		{"Ack_LeftMemberIsNotAParticipant", append(urgent, left("bob")), func(m SentMessage) ConversationCommand { return AcknowledgeMessage{ActorID: "bob", Message: m} },
			nil, CodeNotAParticipant},
		{"Ack_StrangerNotFound", urgent, func(m SentMessage) ConversationCommand { return AcknowledgeMessage{ActorID: "dan", Message: m} },
			nil, CodeNotFound},
		{"Ack_MemberAddedLaterCannotSeeIt", []Event{group(), urgentFrom("ann", 2), ParticipantAdded{UserID: "dan", AddedBy: "ann"}},
			func(m SentMessage) ConversationCommand { return AcknowledgeMessage{ActorID: "dan", Message: m} }, nil, CodeNotFound},
		{"Ack_MemberWhoLeftAndCameBackIsNotWaitedFor", append(urgent, left("bob"), ParticipantAdded{UserID: "bob", AddedBy: "ann"}),
			func(m SentMessage) ConversationCommand { return AcknowledgeMessage{ActorID: "bob", Message: m} }, nil, ""},
		{"Ack_RecalledMessageChangesNothing", append(urgent, recalled("ann", 2)),
			func(m SentMessage) ConversationCommand { return AcknowledgeMessage{ActorID: "bob", Message: m} }, nil, ""},
		{"Ack_AddedMemberAcksLaterUrgent", withDan, func(m SentMessage) ConversationCommand { return AcknowledgeMessage{ActorID: "dan", Message: m} },
			[]Event{ack("dan", 3)}, ""},
		{"Ack_DeletedGroup", append(urgent, GroupDeleted{DeletedBy: "ann"}),
			func(m SentMessage) ConversationCommand { return AcknowledgeMessage{ActorID: "bob", Message: m} }, nil, CodeConversationDeleted},
		{"Ack_NoSuchMessage", urgent, func(SentMessage) ConversationCommand { return AcknowledgeMessage{ActorID: "bob"} }, nil, CodeNotFound},
		{"Ack_VersionBeyondTheStreamNotFound", urgent, func(m SentMessage) ConversationCommand {
			m.Version = 9
			return AcknowledgeMessage{ActorID: "bob", Message: m}
		}, nil, CodeNotFound},

		// Editing.
		{"Edit_SenderEdits", text, func(m SentMessage) ConversationCommand {
			return EditMessage{ActorID: "bob", Text: "hello all", Message: m}
		},
			[]Event{MessageEdited{MessageID: MessageID(groupID, 2), Text: "hello all", EditedBy: "bob"}}, ""},
		{"Edit_AgainRecordsAnotherEdit", append(text, MessageEdited{MessageID: MessageID(groupID, 2), Text: "x", EditedBy: "bob"}),
			func(m SentMessage) ConversationCommand { return EditMessage{ActorID: "bob", Text: "y", Message: m} },
			[]Event{MessageEdited{MessageID: MessageID(groupID, 2), Text: "y", EditedBy: "bob"}}, ""},
		{"Edit_UrgentTextIsEditable", urgent, func(m SentMessage) ConversationCommand { return EditMessage{ActorID: "ann", Text: "bed 5", Message: m} },
			[]Event{MessageEdited{MessageID: MessageID(groupID, 2), Text: "bed 5", EditedBy: "ann"}}, ""},
		{"Edit_OthersAreNotTheSender", text, func(m SentMessage) ConversationCommand { return EditMessage{ActorID: "ann", Text: "x", Message: m} },
			nil, CodeNotMessageSender},
		{"Edit_SenderWhoLeftCannotSend", append(text, left("bob")), func(m SentMessage) ConversationCommand { return EditMessage{ActorID: "bob", Text: "x", Message: m} },
			nil, CodeCannotSend},
		{"Edit_FileIsNotEditable", file, func(m SentMessage) ConversationCommand { return EditMessage{ActorID: "bob", Text: "x", Message: m} },
			nil, CodeNotEditable},
		{"Edit_RecalledIsNotEditable", append(text, recalled("bob", 2)), func(m SentMessage) ConversationCommand { return EditMessage{ActorID: "bob", Text: "x", Message: m} },
			nil, CodeNotEditable},
		{"Edit_EmptyTextInvalid", text, func(m SentMessage) ConversationCommand { return EditMessage{ActorID: "bob", Text: " ", Message: m} },
			nil, CodeInvalid},
		{"Edit_OverTenThousandRunesInvalid", text, func(m SentMessage) ConversationCommand {
			return EditMessage{ActorID: "bob", Text: strings.Repeat("a", MaxTextRunes+1), Message: m}
		}, nil, CodeInvalid},
		{"Edit_StrangerNotFound", text, func(m SentMessage) ConversationCommand { return EditMessage{ActorID: "dan", Text: "x", Message: m} },
			nil, CodeNotFound},

		// Recalling.
		{"Recall_SenderRecalls", text, func(m SentMessage) ConversationCommand { return RecallMessage{ActorID: "bob", Message: m} },
			[]Event{recalled("bob", 2)}, ""},
		{"Recall_OwnerRecallsOthersMessage", text, func(m SentMessage) ConversationCommand { return RecallMessage{ActorID: "ann", Message: m} },
			[]Event{recalled("ann", 2)}, ""},
		{"Recall_FileCanBeRecalled", file, func(m SentMessage) ConversationCommand { return RecallMessage{ActorID: "bob", Message: m} },
			[]Event{recalled("bob", 2)}, ""},
		{"Recall_OtherMemberIsNotTheSender", text, func(m SentMessage) ConversationCommand { return RecallMessage{ActorID: "cat", Message: m} },
			nil, CodeNotMessageSender},
		{"Recall_RepeatChangesNothing", append(text, recalled("bob", 2)), func(m SentMessage) ConversationCommand { return RecallMessage{ActorID: "ann", Message: m} },
			nil, ""},
		{"Recall_RepeatByOtherMemberStillRefused", append(text, recalled("bob", 2)), func(m SentMessage) ConversationCommand { return RecallMessage{ActorID: "cat", Message: m} },
			nil, CodeNotMessageSender},
		{"Recall_SenderWhoLeftIsNotAParticipant", append(text, left("bob")), func(m SentMessage) ConversationCommand { return RecallMessage{ActorID: "bob", Message: m} },
			nil, CodeNotAParticipant},
		{"Recall_FormerOwnerIsNotTheSender", append(text, left("ann"), OwnershipPassed{FromUserID: "ann", ToUserID: "bob"}),
			func(m SentMessage) ConversationCommand { return RecallMessage{ActorID: "ann", Message: m} }, nil, CodeNotMessageSender},
		{"Recall_NewOwnerRecalls", []Event{group(), textFrom("cat", 2), left("ann"), OwnershipPassed{FromUserID: "ann", ToUserID: "bob"}},
			func(m SentMessage) ConversationCommand { return RecallMessage{ActorID: "bob", Message: m} }, []Event{recalled("bob", 2)}, ""},
		{"Recall_DeletedGroup", append(text, GroupDeleted{DeletedBy: "ann"}), func(m SentMessage) ConversationCommand { return RecallMessage{ActorID: "bob", Message: m} },
			nil, CodeConversationDeleted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := lastMessage(t, tc.given)
			got, err := DecideConversation(conversationOf(tc.given...), clinic(), tc.when(m))
			expect(t, got, err, tc.then, tc.err)
		})
	}
}

func TestDecideMessageRules_DirectChat(t *testing.T) {
	given := []Event{direct(), MessageSent{MessageID: MessageID(directID, 2), SenderID: "ann", Text: "x", Priority: PriorityUrgent}}
	c := conversationOf(given...)
	m, _ := SentMessageOf(2, given[1])
	cases := []struct {
		name string
		cmd  ConversationCommand
		then []Event
		err  string
	}{
		{"Ack_OtherPersonAcknowledges", AcknowledgeMessage{ActorID: "bob", Message: m},
			[]Event{MessageAcknowledged{MessageID: MessageID(directID, 2), UserID: "bob"}}, ""},
		{"Recall_NoOwnerInDirectChats", RecallMessage{ActorID: "bob", Message: m}, nil, CodeNotMessageSender},
		{"Recall_SenderRecalls", RecallMessage{ActorID: "ann", Message: m},
			[]Event{MessageRecalled{MessageID: MessageID(directID, 2), RecalledBy: "ann"}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecideConversation(c, clinic(), tc.cmd)
			expect(t, got, err, tc.then, tc.err)
		})
	}
}

func TestPendingAcks(t *testing.T) {
	left := func(u string) Event { return ParticipantLeft{UserID: u} }
	cases := []struct {
		name  string
		given []Event
		want  []string
	}{
		{"OtherActiveMembersWhenSent", []Event{group(), urgentFrom("ann", 2)}, []string{"bob", "cat"}},
		{"AcknowledgementDropsThem", []Event{group(), urgentFrom("ann", 2), ack("cat", 2)}, []string{"bob"}},
		{"LeavingDropsThem", []Event{group(), urgentFrom("ann", 2), left("bob")}, []string{"cat"}},
		{"RemovalDropsThem", []Event{group(), urgentFrom("ann", 2), ParticipantRemoved{UserID: "cat", RemovedBy: "ann"}}, []string{"bob"}},
		{"ComingBackDoesNotBringThemBack", []Event{group(), urgentFrom("ann", 2), left("bob"), ParticipantAdded{UserID: "bob", AddedBy: "ann"}}, []string{"cat"}},
		{"MembersAddedAfterAreNotWaitedFor", []Event{group(), urgentFrom("ann", 2), ParticipantAdded{UserID: "dan", AddedBy: "ann"}}, []string{"bob", "cat"}},
		{"SenderWhoLeavesStillLeavesItPending", []Event{group(), urgentFrom("bob", 2), left("bob")}, []string{"ann", "cat"}},
		{"RecallSettlesIt", []Event{group(), urgentFrom("ann", 2), recalled("ann", 2)}, nil},
		{"EveryoneAckedSettlesIt", []Event{group(), urgentFrom("ann", 2), ack("cat", 2), ack("bob", 2)}, nil},
		{"NormalMessageWaitsForNobody", []Event{group(), textFrom("ann", 2)}, nil},
		{"AloneInTheGroupWaitsForNobody", []Event{group(), left("bob"), left("cat"), urgentFrom("ann", 4)}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := conversationOf(tc.given...)
			if got := c.PendingAcks(lastMessage(t, tc.given).Version); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("pending %v, want %v", got, tc.want)
			}
		})
	}
}

// The state keeps only the acknowledgements still owed: once an urgent message is settled it
// leaves the state, so a long conversation's state does not grow with its history.
func TestEvolveConversation_SettledUrgentMessagesLeaveTheState(t *testing.T) {
	c := conversationOf(group(), urgentFrom("ann", 2), urgentFrom("bob", 3), ack("bob", 2), ack("cat", 2))
	if len(c.Urgent) != 1 || c.Urgent[0].Version != 3 {
		t.Fatalf("urgent %+v, want only the message at 3", c.Urgent)
	}
	c = EvolveConversation(c, 6, ParticipantLeft{UserID: "cat"})
	c = EvolveConversation(c, 7, ack("ann", 3))
	if len(c.Urgent) != 0 {
		t.Fatalf("urgent %+v, want none", c.Urgent)
	}
	c = conversationOf(group())
	for v := int64(2); v < 1000; v++ {
		c = EvolveConversation(c, v, textFrom("ann", v))
	}
	if len(c.Urgent) != 0 || len(c.Recalled) != 0 {
		t.Fatal("normal messages left something in the state")
	}
}

// Evolve never changes the state it was given: the sequencer shares it with readers.
func TestEvolveConversation_MessageEventsCopyRatherThanChange(t *testing.T) {
	base := conversationOf(group(), urgentFrom("ann", 2), urgentFrom("ann", 3), textFrom("bob", 4), recalled("bob", 4))
	before, err := json.Marshal(base)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range []Event{ack("bob", 2), ack("cat", 3), recalled("ann", 2), ParticipantLeft{UserID: "cat"},
		urgentFrom("bob", 6), recalled("bob", 1)} {
		_ = EvolveConversation(base, int64(6+i), e)
	}
	after, _ := json.Marshal(base)
	if string(before) != string(after) {
		t.Fatalf("state changed in place:\n%s\n%s", before, after)
	}
	var back Conversation
	if err := json.Unmarshal(before, &back); err != nil || !reflect.DeepEqual(back, base) {
		t.Fatalf("the state does not survive a JSON round trip: %v\n%+v\n%+v", err, back, base)
	}
}

// Events stored before priorities existed have no priority field: they stay normal messages.
func TestMessageSent_WithoutPriorityIsNormal(t *testing.T) {
	e, err := Decode("MessageSent", []byte(`{"message_id":"g1.2","sender_id":"ann","text":"hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	if e.(MessageSent).Urgent() {
		t.Fatal("an old message decoded as urgent")
	}
	_, data, _ := Encode(MessageSent{MessageID: "g1.2", SenderID: "ann", Text: "hi"})
	if strings.Contains(string(data), "priority") {
		t.Fatalf("a normal message records a priority: %s", data)
	}
}

func TestSentMessageOf_OnlyMessagesAreMessages(t *testing.T) {
	if _, ok := SentMessageOf(3, ParticipantLeft{UserID: "bob"}); ok {
		t.Fatal("a system event counted as a message")
	}
	m, ok := SentMessageOf(3, urgentFrom("ann", 3))
	if !ok || m != (SentMessage{Version: 3, SenderID: "ann", Kind: MessageKindText, Urgent: true}) {
		t.Fatalf("got %+v %v", m, ok)
	}
}

// BenchmarkConversationState_MillionMessages evolves a group of ten through a million
// messages: 1% urgent (nine in ten acknowledged by everyone, one in ten left owed by one
// member), 0.1% recalled. It reports what the sequencer keeps in memory and snapshots: the
// state's JSON size after the million, and the time per evolved message.
func BenchmarkConversationState_MillionMessages(b *testing.B) {
	members := []string{"ann", "bob", "cat", "dan", "eve", "fay", "gus", "hal", "ida", "jon"}
	var size int
	for i := 0; i < b.N; i++ {
		c := conversationOf(ConversationStarted{ConversationID: groupID, Kind: KindGroup, Title: "Ward", OwnerID: "ann",
			StartedBy: "ann", ParticipantIDs: members})
		v := c.Version
		next := func(e Event) { v++; c = EvolveConversation(c, v, e) }
		for n := 0; n < 1_000_000; n++ {
			sender := members[n%len(members)]
			if n%100 == 0 {
				next(urgentFrom(sender, v+1))
				at := v
				for j, m := range members {
					if m != sender && (n%1000 != 0 || j != 9) {
						next(ack(m, at))
					}
				}
				continue
			}
			next(textFrom(sender, v+1))
			if n%1000 == 1 {
				next(recalled(sender, v))
			}
		}
		raw, err := json.Marshal(c)
		if err != nil {
			b.Fatal(err)
		}
		size = len(raw)
	}
	b.ReportMetric(float64(size), "state-bytes")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ns/message")
}
