package projections_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/inbox"
	"github.com/huddle-chat/huddle/internal/blobs"
	"github.com/huddle-chat/huddle/internal/commands"
	"github.com/huddle-chat/huddle/internal/projtest"
)

// world drives random commands through the real command handler (domain deciders, event
// store), remembering just enough to pick plausible next commands. Commands the domain refuses
// are part of the game: they append nothing.
type world struct {
	e       *projtest.Env
	h       *commands.Handler
	rng     *rand.Rand
	clinic  string
	users   []string
	convs   []string
	msgs    map[string][]string // conversation → message ids
	urgent  map[string][]string // conversation → urgent message ids
	sender  map[string]string   // message id → sender
	members map[string][]string // conversation → everyone who took part (to pick plausible actors)
	applied int
	refused map[string]int
}

func newWorld(e *projtest.Env, seed uint64) *world {
	return &world{
		e: e, h: commands.New(e.Store, blobs.New(e.Pool), commands.Options{}),
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), clinic: "c1",
		msgs: map[string][]string{}, refused: map[string]int{}, members: map[string][]string{},
		urgent: map[string][]string{}, sender: map[string]string{},
	}
}

func (w *world) actor(u string) commands.Actor {
	return commands.Actor{UserID: u, ClinicID: w.clinic, CorrelationID: fmt.Sprintf("t-%d", w.applied)}
}

func (w *world) must(err error) {
	w.e.T.Helper()
	if err != nil && domain.ErrorCode(err) == "" {
		w.e.T.Fatalf("command failed: %v", err)
	}
	if err != nil {
		w.refused[domain.ErrorCode(err)]++
	}
	if err == nil {
		w.applied++
	}
}

// setup creates users in two overlapping waiting rooms.
func (w *world) setup(users int) {
	admin := w.actor("admin")
	for _, r := range []string{"r1", "r2"} {
		_, _, err := w.h.NameRoom(w.e.Ctx, admin, r, "Room "+r)
		w.must(err)
	}
	for i := 1; i <= users; i++ {
		u := "u" + strconv.Itoa(i)
		w.users = append(w.users, u)
		_, _, err := w.h.SetUser(w.e.Ctx, admin, u, "User "+strings.Repeat("x", i%3)+strconv.Itoa(i), u+"@clinic.test", "MD")
		w.must(err)
		rooms := []string{"r1"}
		if i%2 == 0 {
			rooms = []string{"r2"}
		}
		if i%3 == 0 {
			rooms = []string{"r1", "r2"}
		}
		for _, r := range rooms {
			_, err := w.h.AddRoomMember(w.e.Ctx, admin, r, u)
			w.must(err)
		}
	}
}

func (w *world) user() string { return w.users[w.rng.IntN(len(w.users))] }

func (w *world) conv() (string, bool) {
	if len(w.convs) == 0 {
		return "", false
	}
	return w.convs[w.rng.IntN(len(w.convs))], true
}

// step runs one random command.
func (w *world) step() {
	ctx := w.e.Ctx
	me := w.user()
	c, haveConv := w.conv()
	if ms := w.members[c]; haveConv && len(ms) > 0 && w.rng.IntN(10) > 0 {
		me = ms[w.rng.IntN(len(ms))]
	}
	a := w.actor(me)
	switch r := w.rng.IntN(118); {
	case r < 8 || !haveConv:
		other := w.user()
		var title *string
		ids := []string{other}
		if w.rng.IntN(2) == 0 {
			t := "Group " + strconv.Itoa(w.rng.IntN(1000))
			title = &t
			ids = append(ids, w.user())
		}
		conv, err := w.h.StartConversation(ctx, a, ids, title)
		w.must(err)
		if err == nil && conv.Created {
			w.convs = append(w.convs, conv.ID)
			w.members[conv.ID] = append([]string{me}, ids...)
		}
	case r < 45:
		priority := ""
		if w.rng.IntN(4) == 0 {
			priority = domain.PriorityUrgent
		}
		m, err := w.h.Send(ctx, a, c, commands.Send{Text: "hello " + strconv.Itoa(w.rng.IntN(1e6)), Priority: priority})
		w.must(err)
		if err == nil {
			w.msgs[c] = append(w.msgs[c], m.ID)
			w.sender[m.ID] = me
			if priority != "" {
				w.urgent[c] = append(w.urgent[c], m.ID)
			}
		}
	case r < 50:
		m, err := w.h.ShareFile(ctx, a, c, "notes.txt", "", strings.NewReader("some bytes "+strconv.Itoa(r)))
		w.must(err)
		if err == nil {
			w.msgs[c] = append(w.msgs[c], m.ID)
			w.sender[m.ID] = me
		}
	case r < 56:
		u := w.user()
		_, err := w.h.AddParticipant(ctx, a, c, u)
		w.must(err)
		if err == nil {
			w.members[c] = append(w.members[c], u)
		}
	case r < 60:
		_, err := w.h.RemoveParticipant(ctx, a, c, w.user())
		w.must(err)
	case r < 64:
		_, err := w.h.LeaveGroup(ctx, a, c)
		w.must(err)
	case r < 67:
		_, err := w.h.RenameGroup(ctx, a, c, "Renamed "+strconv.Itoa(r))
		w.must(err)
	case r < 68:
		_, err := w.h.DeleteGroup(ctx, a, c)
		w.must(err)
	case r < 73:
		_, err := w.h.Mute(ctx, a, c)
		w.must(err)
	case r < 76:
		_, err := w.h.Unmute(ctx, a, c)
		w.must(err)
	case r < 82:
		_, err := w.h.Archive(ctx, a, c)
		w.must(err)
	case r < 85:
		_, err := w.h.Unarchive(ctx, a, c)
		w.must(err)
	case r < 96:
		up := ""
		if ms := w.msgs[c]; len(ms) > 0 && w.rng.IntN(3) > 0 {
			up = ms[w.rng.IntN(len(ms))]
		}
		_, err := w.h.MarkRead(ctx, a, c, up)
		w.must(err)
	case r < 98:
		_, _, err := w.h.SetUser(ctx, w.actor("admin"), me, "Renamed "+me, me+"@clinic.test", "")
		w.must(err)
	case r < 100:
		_, err := w.h.RemoveRoomMember(ctx, w.actor("admin"), "r1", me)
		w.must(err)
	// Clinical messaging: acknowledgements of urgent messages, edits (mostly by the sender),
	// recalls, and members leaving while urgent messages wait for them.
	case r < 106:
		if ms := w.urgent[c]; len(ms) > 0 {
			_, err := w.h.AcknowledgeMessage(ctx, a, c, ms[w.rng.IntN(len(ms))])
			w.must(err)
		}
	case r < 110:
		if ms := w.msgs[c]; len(ms) > 0 {
			m := ms[w.rng.IntN(len(ms))]
			if w.rng.IntN(4) > 0 {
				a = w.actor(w.sender[m])
			}
			_, err := w.h.EditMessage(ctx, a, c, m, "edited "+strconv.Itoa(w.rng.IntN(1e6)))
			w.must(err)
		}
	case r < 113:
		if ms := w.msgs[c]; len(ms) > 0 {
			m := ms[w.rng.IntN(len(ms))]
			if w.rng.IntN(2) > 0 {
				a = w.actor(w.sender[m])
			}
			_, err := w.h.RecallMessage(ctx, a, c, m)
			w.must(err)
		}
	default:
		if len(w.urgent[c]) > 0 {
			_, err := w.h.LeaveGroup(ctx, a, c)
			w.must(err)
		}
	}
}

// requirePendingAsDomain checks that the read model's pending acknowledgements (each user's
// urgent list) are domain.PendingAcks of every urgent message, replayed from the store.
func (w *world) requirePendingAsDomain() {
	t := w.e.T
	t.Helper()
	want := map[string]bool{} // "user message"
	q := inbox.NewQueries(w.e.Pool)
	for _, c := range w.convs {
		evs, err := w.e.Store.ReadStream(w.e.Ctx, domain.ConversationStream(c), 1, 100000)
		if err != nil {
			t.Fatal(err)
		}
		var state domain.Conversation
		type urgent struct {
			version int64
			sender  string
			acked   []string
		}
		var urgents []*urgent
		recalled := map[int64]bool{}
		for _, e := range evs {
			ev, err := domain.Decode(e.Type, e.Data)
			if err != nil {
				t.Fatal(err)
			}
			state = domain.EvolveConversation(state, e.StreamVersion, ev)
			switch x := ev.(type) {
			case domain.MessageSent:
				if x.Urgent() {
					urgents = append(urgents, &urgent{version: e.StreamVersion, sender: x.SenderID})
				}
			case domain.MessageAcknowledged:
				_, v, _ := domain.ParseMessageID(x.MessageID)
				for _, u := range urgents {
					if u.version == v {
						u.acked = append(u.acked, x.UserID)
					}
				}
			case domain.MessageRecalled:
				_, v, _ := domain.ParseMessageID(x.MessageID)
				recalled[v] = true
			}
		}
		if state.Deleted {
			continue
		}
		for _, u := range urgents {
			id := domain.MessageID(c, u.version)
			var pending []string
			if !recalled[u.version] {
				pending = domain.PendingAcks(state.Participants, u.version, u.sender, u.acked)
			}
			for _, p := range pending {
				want[p+" "+id] = true
			}
			// The message's acks, as its sender (who always sees it) reads it.
			m, err := q.Message(w.e.Ctx, w.clinic, u.sender, c, id)
			if err != nil {
				t.Fatalf("%s as its sender reads it: %v", id, err)
			}
			if m.Acks == nil || !slices.Equal(m.Acks.Pending, append([]string{}, pending...)) || len(m.Acks.Acked) != len(u.acked) {
				t.Errorf("%s: acks %+v; the domain says pending %v, acked %v", id, m.Acks, pending, u.acked)
			}
		}
	}
	got := map[string]bool{}
	for _, u := range w.users {
		list, err := q.Urgent(w.e.Ctx, w.clinic, u)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range list.Messages {
			got[u+" "+m.ID] = true
			if m.Acks == nil || !slices.Contains(m.Acks.Pending, u) {
				t.Errorf("%s is on %s's urgent list but not in its acks.pending %+v", m.ID, u, m.Acks)
			}
		}
	}
	for k := range want {
		if !got[k] {
			t.Errorf("domain: %s still owes an acknowledgement; the read model's urgent list lacks it", k)
		}
	}
	for k := range got {
		if !want[k] {
			t.Errorf("read model: %s is on the urgent list; the domain says nothing is owed", k)
		}
	}
	t.Logf("%d acknowledgements owed", len(want))
}

func propertySteps() int {
	if s, err := strconv.Atoi(os.Getenv("HUDDLE_PROPERTY_STEPS")); err == nil && s > 0 {
		return s
	}
	return 400
}

// The key property: whatever random commands ran, the read models built live (relay →
// JetStream → projectors) equal the ones rebuilt from the store, table by table.
func TestProperty_LiveEqualsRebuild(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		seed    uint64
		workers int
	}{{1, 1}, {2, 1}, {3, 4}} {
		seed := c.seed
		t.Run(fmt.Sprintf("seed%d/workers=%d", seed, c.workers), func(t *testing.T) {
			e := projtest.New(t)
			e.Engine.Workers = c.workers
			e.Relay()
			e.Run()
			w := newWorld(e, seed)
			w.setup(8)
			for i := 0; i < propertySteps(); i++ {
				w.step()
			}
			if w.applied < propertySteps()/3 {
				t.Fatalf("only %d of %d commands were accepted; the generator is too naive to test much (refused: %v)", w.applied, propertySteps(), w.refused)
			}
			e.Settle()
			if n := e.Count(`SELECT count(*) FROM messages`); n == 0 {
				t.Fatal("no messages projected")
			}
			w.requirePendingAsDomain()
			snap := e.Snapshot()
			t.Logf("accepted %d commands (refused %v); rows: messages %d, inbox %d, participants %d, member_prefs %d, visibility %d, message_acks %d",
				w.applied, w.refused, len(snap["messages"]), len(snap["inbox"]), len(snap["participants"]), len(snap["member_prefs"]), len(snap["visibility"]), len(snap["message_acks"]))
			for _, q := range []string{`SELECT count(*) FROM messages WHERE urgent`, `SELECT count(*) FROM messages WHERE recalled`,
				`SELECT count(*) FROM messages WHERE edited_at IS NOT NULL`, `SELECT count(*) FROM message_acks`} {
				if e.Count(q) == 0 {
					t.Errorf("%s: none; the generator does not reach clinical messaging", q)
				}
			}
			e.RequireSameAsRebuild()
		})
	}
}

// A rebuild while commands keep arriving and the live projectors keep applying them: after
// the swap, live projection continues and nothing is lost or doubled.
func TestRebuild_WhileLiveTrafficFlows(t *testing.T) {
	t.Parallel()
	e := projtest.New(t)
	e.Relay()
	e.Run()
	w := newWorld(e, 7)
	w.setup(8)
	for i := 0; i < 200; i++ {
		w.step()
	}
	e.Settle()
	stop := make(chan struct{})
	finished := make(chan struct{})
	// A second world on the same store, so the goroutine owns its own bookkeeping.
	w2 := newWorld(e, 8)
	w2.users = w.users
	go func() {
		defer close(finished)
		for {
			select {
			case <-stop:
				return
			default:
				w2.step()
			}
		}
	}()
	for i := 0; i < 3; i++ {
		if err := e.Engine.Rebuild(e.Ctx, nil, nil); err != nil {
			t.Fatalf("rebuild under traffic: %v", err)
		}
	}
	close(stop)
	<-finished
	if w2.applied == 0 {
		t.Fatal("no command ran during the rebuilds")
	}
	t.Logf("%d commands ran during three rebuilds", w2.applied)
	e.Settle()
	e.RequireSameAsRebuild()
}
