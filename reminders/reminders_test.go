package reminders_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/internal/blobs"
	"github.com/huddle-chat/huddle/internal/commands"
	"github.com/huddle-chat/huddle/internal/projtest"
	"github.com/huddle-chat/huddle/reminders"
)

// owed is one row of the reminders table as the test compares it: who owes an acknowledgement
// of which message.
type owed struct {
	conv    string
	version int64
	user    string
}

// TestReadModel_MirrorsPendingAcksAndEqualsRebuild drives random commands on urgent messages
// (send, acknowledge, recall, leave, remove, add, delete) through the real command handler and
// store, then checks that the live reminders table holds exactly one row per acknowledgement
// domain.PendingAcks says is owed (nothing for a deleted group), and that a rebuild from the
// store, also one that ran while commands kept arriving, gives the same tables.
func TestReadModel_MirrorsPendingAcksAndEqualsRebuild(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			e := projtest.New(t)
			e.Relay()
			e.Run()
			h := commands.New(e.Store, blobs.New(e.Pool), commands.Options{})
			rng := rand.New(rand.NewPCG(seed, seed*7919))
			actor := func(u string) commands.Actor { return commands.Actor{UserID: u, ClinicID: "c1"} }
			refused := map[string]int{}
			applied := 0
			must := func(err error) {
				t.Helper()
				if err != nil && domain.ErrorCode(err) == "" {
					t.Fatalf("command failed: %v", err)
				}
				if err != nil {
					refused[domain.ErrorCode(err)]++
				} else {
					applied++
				}
			}
			admin := actor("admin")
			_, _, err := h.NameRoom(e.Ctx, admin, "r1", "Ward")
			must(err)
			var users []string
			for i := 1; i <= 6; i++ {
				u := "u" + strconv.Itoa(i)
				users = append(users, u)
				_, _, err := h.SetUser(e.Ctx, admin, u, "User "+u, u+"@clinic.test", "")
				must(err)
				_, err = h.AddRoomMember(e.Ctx, admin, "r1", u)
				must(err)
			}
			user := func() string { return users[rng.IntN(len(users))] }
			var convs []string
			msgs := map[string][]string{}
			members := map[string][]string{} // everyone who took part, to pick plausible actors
			step := func() {
				if len(convs) == 0 || rng.IntN(12) == 0 {
					title := "Group"
					me, others := user(), []string{user(), user(), user()}
					c, err := h.StartConversation(e.Ctx, actor(me), others, &title)
					must(err)
					if err == nil && c.Created {
						convs = append(convs, c.ID)
						members[c.ID] = append([]string{me}, others...)
					}
					return
				}
				c := convs[rng.IntN(len(convs))]
				a := actor(user())
				if ms := members[c]; rng.IntN(8) > 0 {
					a = actor(ms[rng.IntN(len(ms))])
				}
				pick := func() string {
					if len(msgs[c]) == 0 {
						return c + ".1"
					}
					return msgs[c][len(msgs[c])-1-rng.IntN(min(len(msgs[c]), 4))] // mostly recent ones
				}
				switch r := rng.IntN(100); {
				case r < 35:
					priority := domain.PriorityUrgent
					if rng.IntN(4) == 0 {
						priority = domain.PriorityNormal
					}
					m, err := h.Send(e.Ctx, a, c, commands.Send{Text: "now", Priority: priority})
					must(err)
					if err == nil {
						msgs[c] = append(msgs[c], m.ID)
					}
				case r < 65:
					_, err := h.AcknowledgeMessage(e.Ctx, a, c, pick())
					must(err)
				case r < 72:
					_, err := h.RecallMessage(e.Ctx, a, c, pick())
					must(err)
				case r < 80:
					_, err := h.LeaveGroup(e.Ctx, a, c)
					must(err)
				case r < 86:
					_, err := h.RemoveParticipant(e.Ctx, a, c, user())
					must(err)
				case r < 99:
					u := user()
					_, err := h.AddParticipant(e.Ctx, a, c, u)
					must(err)
					if err == nil {
						members[c] = append(members[c], u)
					}
				default:
					_, err := h.DeleteGroup(e.Ctx, a, c)
					must(err)
				}
			}
			for range 300 {
				step()
			}
			e.Settle()
			// A rebuild while commands keep arriving: the swap applies what came meanwhile.
			stop, finished := make(chan struct{}), make(chan struct{})
			during := 0
			go func() {
				defer close(finished)
				for {
					select {
					case <-stop:
						return
					default:
						step()
						during++
					}
				}
			}()
			if err := e.Engine.Rebuild(e.Ctx, []string{reminders.Name}, nil); err != nil {
				t.Fatalf("rebuild under traffic: %v", err)
			}
			close(stop)
			<-finished
			if during == 0 {
				t.Fatal("no command ran during the rebuild")
			}
			if applied < 150 {
				t.Fatalf("only %d commands accepted (refused %v): the generator tests too little", applied, refused)
			}
			e.Settle()

			// What the domain says is owed, conversation by conversation.
			var want []owed
			for _, c := range convs {
				evs, err := e.Store.ReadStream(e.Ctx, domain.ConversationStream(c), 1, 0)
				if err != nil {
					t.Fatal(err)
				}
				var state domain.Conversation
				for _, re := range evs {
					ev, err := domain.Decode(re.Type, re.Data)
					if err != nil {
						t.Fatal(err)
					}
					state = domain.EvolveConversation(state, re.StreamVersion, ev)
				}
				if state.Deleted {
					continue
				}
				for _, u := range state.Urgent {
					for _, p := range state.PendingAcks(u.Version) {
						want = append(want, owed{c, u.Version, p})
					}
				}
			}
			got := rows(t, e)
			cmp := func(a, b owed) int {
				if a.conv != b.conv {
					return map[bool]int{true: -1, false: 1}[a.conv < b.conv]
				}
				if a.version != b.version {
					return int(a.version - b.version)
				}
				return map[bool]int{true: -1, false: 1, a.user == b.user: 0}[a.user < b.user]
			}
			slices.SortFunc(want, cmp)
			if !slices.Equal(got, want) {
				t.Fatalf("reminders table:\n got  %v\n want %v (domain.PendingAcks)", got, want)
			}
			if len(want) == 0 {
				t.Fatal("nothing owed at the end: the generator tests too little")
			}
			t.Logf("%d commands (%d during a rebuild; refused %v), %d acknowledgements owed", applied, during, refused, len(want))
			e.RequireSameAsRebuild()
		})
	}
}

func rows(t *testing.T, e *projtest.Env) []owed {
	t.Helper()
	r, err := e.Pool.Query(e.Ctx, `SELECT conversation_id, message_version, user_id FROM reminders
		WHERE clinic_id = 'c1' ORDER BY conversation_id, message_version, user_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []owed
	for r.Next() {
		var o owed
		if err := r.Scan(&o.conv, &o.version, &o.user); err != nil {
			t.Fatal(err)
		}
		out = append(out, o)
	}
	return out
}
