package domain

import (
	"encoding/json"
	"math/rand"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestConversationInvariants_RandomCommands throws random command sequences from random users
// at a group and checks, after every step, what must always hold:
//   - the owner of a live (not deleted, not closed) group is an active member;
//   - a message is only ever decided for an active member;
//   - a deleted group accepts no command at all;
//   - an acknowledgement comes only from someone who owes it, edits and recalls only from
//     active members, and the state keeps no settled urgent message;
//   - the state survives a JSON round trip (the runner snapshots it).
func TestConversationInvariants_RandomCommands(t *testing.T) {
	dir := clinic()
	users := []string{"ann", "bob", "cat", "dan", "eve", "xavier", "zed"}
	for seed := int64(1); seed <= 200; seed++ {
		rng := rand.New(rand.NewSource(seed))
		pick := func() string { return users[rng.Intn(len(users))] }
		c := conversationOf(ConversationStarted{ConversationID: groupID, Kind: KindGroup, Title: "T", OwnerID: "ann",
			StartedBy: "ann", ParticipantIDs: []string{"ann", "bob", "cat"}})
		// sent are the messages so far; someMessage is what the handler would read for one of
		// the last few (or, now and then, for an id that names no message: the zero value).
		var sent []SentMessage
		someMessage := func() SentMessage {
			if len(sent) == 0 || rng.Intn(8) == 0 {
				return SentMessage{}
			}
			return sent[len(sent)-1-rng.Intn(min(len(sent), 3))]
		}
		for step := 0; step < 80; step++ {
			var cmd ConversationCommand
			switch rng.Intn(14) {
			case 9:
				cmd = SendMessage{SenderID: pick(), Text: "now", Priority: PriorityUrgent}
			case 10, 13:
				cmd = AcknowledgeMessage{ActorID: pick(), Message: someMessage()}
			case 11:
				cmd = EditMessage{ActorID: pick(), Text: "fixed", Message: someMessage()}
			case 12:
				cmd = RecallMessage{ActorID: pick(), Message: someMessage()}
			case 0, 1:
				cmd = SendMessage{SenderID: pick(), Text: "hi"}
			case 2:
				cmd = ShareFile{SenderID: pick(), FileID: "f" + pick(), Name: "n", Size: 1, ContentType: "text/plain", SHA256: strings.Repeat("0", 64)}
			case 3:
				cmd = AddParticipant{ActorID: pick(), UserID: pick()}
			case 4:
				cmd = RemoveParticipant{ActorID: pick(), UserID: pick()}
			case 5, 6:
				cmd = LeaveGroup{ActorID: pick()}
			case 7:
				cmd = RenameGroup{ActorID: pick(), Title: "T" + pick()}
			case 8:
				if rng.Intn(4) == 0 {
					cmd = DeleteGroup{ActorID: pick()}
				} else {
					cmd = SendMessage{SenderID: pick(), Text: "x"}
				}
			}
			events, err := DecideConversation(c, dir, cmd)
			if c.Deleted && (err == nil || len(events) > 0) {
				t.Fatalf("seed %d step %d: deleted group accepted %#v", seed, step, cmd)
			}
			if err != nil && ErrorCode(err) == "" {
				t.Fatalf("seed %d step %d: error without a code: %v", seed, step, err)
			}
			for _, e := range events {
				switch ev := e.(type) {
				case MessageSent:
					if !c.IsActive(ev.SenderID) {
						t.Fatalf("seed %d step %d: message from inactive %s", seed, step, ev.SenderID)
					}
				case FileShared:
					if !c.IsActive(ev.SenderID) {
						t.Fatalf("seed %d step %d: file from inactive %s", seed, step, ev.SenderID)
					}
				case MessageAcknowledged:
					_, v, _ := ParseMessageID(ev.MessageID)
					if !slices.Contains(c.PendingAcks(v), ev.UserID) {
						t.Fatalf("seed %d step %d: %s acknowledged %s without owing it (pending %v)", seed, step, ev.UserID, ev.MessageID, c.PendingAcks(v))
					}
				case MessageEdited, MessageRecalled:
					if !c.IsActive(cmdActor(cmd)) {
						t.Fatalf("seed %d step %d: %#v by an inactive member", seed, step, ev)
					}
				}
			}
			for _, e := range events {
				c = EvolveConversation(c, c.Version+1, e)
				if m, ok := SentMessageOf(c.Version, e); ok {
					sent = append(sent, m)
				}
			}
			for _, u := range c.Urgent {
				if len(c.PendingAcks(u.Version)) == 0 || c.IsRecalled(u.Version) {
					t.Fatalf("seed %d step %d: settled urgent message %d kept in the state", seed, step, u.Version)
				}
			}
			if !c.Deleted && !c.Closed() && !c.IsActive(c.OwnerID) {
				t.Fatalf("seed %d step %d: owner %s of a live group is not active: %+v", seed, step, c.OwnerID, c.Participants)
			}
			raw, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			var back Conversation
			if err := json.Unmarshal(raw, &back); err != nil || !reflect.DeepEqual(normalise(back), normalise(c)) {
				t.Fatalf("seed %d step %d: state does not survive JSON: %v\n%+v\n%+v", seed, step, err, back, c)
			}
		}
	}
}

func cmdActor(cmd ConversationCommand) string {
	switch cmd := cmd.(type) {
	case EditMessage:
		return cmd.ActorID
	case RecallMessage:
		return cmd.ActorID
	}
	return ""
}

// normalise makes nil and empty collections compare equal after a JSON round trip.
func normalise(c Conversation) Conversation {
	if len(c.Urgent) == 0 {
		c.Urgent = nil
	}
	if len(c.Recalled) == 0 {
		c.Recalled = nil
	}
	for i := range c.Participants {
		if len(c.Participants[i].Windows) == 0 {
			c.Participants[i].Windows = nil
		}
	}
	return c
}

// TestDirectoryInvariants_RandomCommands: whatever admins do, nobody is in their own address
// book, nobody inactive is in anyone's, and the address book is symmetric.
func TestDirectoryInvariants_RandomCommands(t *testing.T) {
	users := []string{"u1", "u2", "u3", "u4", "u5"}
	rooms := []string{"r1", "r2", "r3"}
	for seed := int64(1); seed <= 100; seed++ {
		rng := rand.New(rand.NewSource(seed))
		d := NewDirectory()
		for step := 0; step < 80; step++ {
			u, r := users[rng.Intn(len(users))], rooms[rng.Intn(len(rooms))]
			var cmd DirectoryCommand
			switch rng.Intn(5) {
			case 0:
				cmd = SetUser{UserID: u, Name: "N" + u, Email: u + "@c.test"}
			case 1:
				cmd = DeactivateUser{UserID: u}
			case 2:
				cmd = NameRoom{RoomID: r, Name: "R" + r}
			case 3:
				cmd = AddRoomMember{RoomID: r, UserID: u}
			case 4:
				cmd = RemoveRoomMember{RoomID: r, UserID: u}
			}
			events, _ := DecideDirectory(d, cmd)
			for _, e := range events {
				d = EvolveDirectory(d, e)
			}
			for _, me := range users {
				for _, other := range d.AddressBook(me) {
					if other == me || !d.IsActive(other) || !d.InAddressBook(other, me) {
						t.Fatalf("seed %d step %d: bad address book entry %s -> %s", seed, step, me, other)
					}
				}
			}
		}
	}
}
