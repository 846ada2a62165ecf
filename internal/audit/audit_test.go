package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/commands"
	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/audit"
	"github.com/huddle-chat/huddle/internal/blobs"
	"github.com/huddle-chat/huddle/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// world is a store with the real command handler on it. recorded_at is stamped at append time,
// so the tests separate steps by real instants captured between them.
type world struct {
	store *eventstore.Store
	cmds  *commands.Handler
	svc   *audit.Service
}

func newWorld(t *testing.T) world {
	t.Helper()
	pool, _ := testenv.Postgres(t)
	store := eventstore.New(pool)
	return world{store: store, cmds: commands.New(store, blobs.New(pool), commands.Options{}), svc: audit.New(store)}
}

func actor(user string) commands.Actor {
	return commands.Actor{UserID: user, ClinicID: "c1", CorrelationID: "req-" + user}
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func (w world) seedDirectory(t *testing.T, users ...string) {
	t.Helper()
	ctx := context.Background()
	admin := actor("admin")
	if _, _, err := w.cmds.NameRoom(ctx, admin, "room1", "Room 1"); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if _, _, err := w.cmds.SetUser(ctx, admin, u, "User "+u, u+"@clinic.test", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := w.cmds.AddRoomMember(ctx, admin, "room1", u); err != nil {
			t.Fatal(err)
		}
	}
}

// instant returns a time strictly after everything recorded so far and strictly before
// anything recorded next.
func instant() time.Time {
	time.Sleep(5 * time.Millisecond)
	at := time.Now()
	time.Sleep(5 * time.Millisecond)
	return at
}

func TestStateAt_ReplaysEachStepOfAScriptedConversation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)
	w.seedDirectory(t, "ann", "bob", "cat")
	auditor := audit.Auditor{UserID: "aud", ClinicID: "c1"}

	before := instant()
	title := "Night shift"
	conv := must[commands.Conversation](t)(w.cmds.StartConversation(ctx, actor("ann"), []string{"bob", "cat"}, &title))
	afterCreate := instant()
	msg := must[commands.Message](t)(w.cmds.SendMessage(ctx, actor("bob"), conv.ID, "hello", ""))
	afterMessage := instant()
	must[commands.Position](t)(w.cmds.LeaveGroup(ctx, actor("ann"), conv.ID))
	afterLeave := instant()
	must[commands.Position](t)(w.cmds.AddParticipant(ctx, actor("bob"), conv.ID, "ann"))
	afterReAdd := instant()
	must[commands.Position](t)(w.cmds.DeleteGroup(ctx, actor("bob"), conv.ID))
	afterDelete := instant()

	if _, err := w.svc.StateAt(ctx, auditor, conv.ID, before); !errors.Is(err, audit.ErrNotYet) {
		t.Fatalf("state before creation: want ErrNotYet, got %v", err)
	}
	type want struct {
		owner    string
		states   map[string]string
		deleted  bool
		messages int
	}
	steps := []struct {
		name string
		at   time.Time
		want want
	}{
		{"created", afterCreate, want{"ann", map[string]string{"ann": "active", "bob": "active", "cat": "active"}, false, 0}},
		{"message", afterMessage, want{"ann", map[string]string{"ann": "active", "bob": "active", "cat": "active"}, false, 1}},
		// ann (owner) left: ownership passes to bob, the longest-standing active member.
		{"left", afterLeave, want{"bob", map[string]string{"ann": "left", "bob": "active", "cat": "active"}, false, 3}},
		{"re-added", afterReAdd, want{"bob", map[string]string{"ann": "active", "bob": "active", "cat": "active"}, false, 4}},
		{"deleted", afterDelete, want{"bob", map[string]string{"ann": "active", "bob": "active", "cat": "active"}, true, 4}},
	}
	for _, step := range steps {
		st, err := w.svc.StateAt(ctx, auditor, conv.ID, step.at)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if st.OwnerID == nil || *st.OwnerID != step.want.owner {
			t.Errorf("%s: owner = %v, want %s", step.name, st.OwnerID, step.want.owner)
		}
		got := map[string]string{}
		for _, p := range st.Participants {
			got[p.ID] = p.State
			if (p.Role == "owner") != (p.ID == step.want.owner) {
				t.Errorf("%s: %s has role %s", step.name, p.ID, p.Role)
			}
		}
		if len(got) != len(step.want.states) {
			t.Errorf("%s: participants %v, want %v", step.name, got, step.want.states)
		}
		for id, s := range step.want.states {
			if got[id] != s {
				t.Errorf("%s: %s is %q, want %q", step.name, id, got[id], s)
			}
		}
		if st.Deleted != step.want.deleted {
			t.Errorf("%s: deleted = %v", step.name, st.Deleted)
		}
		if len(st.Messages) != step.want.messages {
			t.Errorf("%s: %d messages, want %d: %+v", step.name, len(st.Messages), step.want.messages, st.Messages)
		}
		if step.want.messages > 0 && st.Messages[0].ID != msg.ID {
			t.Errorf("%s: first message %s, want %s", step.name, st.Messages[0].ID, msg.ID)
		}
	}
	st, _ := w.svc.StateAt(ctx, auditor, conv.ID, afterLeave)
	kinds := []string{st.Messages[1].System.Event, st.Messages[2].System.Event}
	if kinds[0] != domain.SystemParticipantLeft || kinds[1] != domain.SystemOwnershipPassed {
		t.Errorf("system lines after leave = %v", kinds)
	}
}

func TestAudit_OtherClinicSeesNothingAndEveryReadIsRecorded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)
	w.seedDirectory(t, "ann", "bob")
	conv := must[commands.Conversation](t)(w.cmds.StartConversation(ctx, actor("ann"), []string{"bob"}, nil))
	must[commands.Message](t)(w.cmds.SendMessage(ctx, actor("ann"), conv.ID, "hi", ""))

	stranger := audit.Auditor{UserID: "aud2", ClinicID: "c2"}
	if _, _, err := w.svc.Events(ctx, stranger, conv.ID, 0, 10); !errors.Is(err, audit.ErrNotFound) {
		t.Errorf("other clinic's events: want ErrNotFound, got %v", err)
	}
	if _, err := w.svc.StateAt(ctx, stranger, conv.ID, time.Now()); !errors.Is(err, audit.ErrNotFound) {
		t.Errorf("other clinic's state: want ErrNotFound, got %v", err)
	}
	if _, err := w.svc.Verify(ctx, stranger, domain.ConversationStream(conv.ID)); !errors.Is(err, audit.ErrNotFound) {
		t.Errorf("other clinic's verify: want ErrNotFound, got %v", err)
	}

	aud := audit.Auditor{UserID: "aud", ClinicID: "c1", CorrelationID: "r1"}
	events, more, err := w.svc.Events(ctx, aud, conv.ID, 0, 1)
	if err != nil || len(events) != 1 || !more || events[0].Type != "ConversationStarted" {
		t.Fatalf("first page: %v %v %v", events, more, err)
	}
	events, more, err = w.svc.Events(ctx, aud, conv.ID, events[0].StreamVersion, 10)
	if err != nil || len(events) != 1 || more || events[0].Type != "MessageSent" {
		t.Fatalf("second page: %v %v %v", events, more, err)
	}
	r, err := w.svc.Verify(ctx, aud, domain.ConversationStream(conv.ID))
	if err != nil || !r.OK || r.Events != 2 {
		t.Fatalf("verify: %+v %v", r, err)
	}

	trail, err := w.store.ReadStream(ctx, domain.AuditStream("c1"), 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range trail {
		var read domain.AuditRead
		if err := json.Unmarshal(e.Data, &read); err != nil {
			t.Fatal(err)
		}
		if read.AuditorID != "aud" || e.Metadata.ClinicID != "c1" {
			t.Errorf("audit read by %s in %s", read.AuditorID, e.Metadata.ClinicID)
		}
		actions = append(actions, read.Action)
	}
	if want := []string{"events", "events", "verify"}; len(actions) != 3 || actions[0] != want[0] || actions[2] != want[2] {
		t.Errorf("recorded actions %v, want %v (the stranger's failed reads record nothing)", actions, want)
	}
}

func TestExport_StreamsEveryEventAsJSONLinesAndCSV(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)
	w.seedDirectory(t, "ann", "bob")
	conv := must[commands.Conversation](t)(w.cmds.StartConversation(ctx, actor("ann"), []string{"bob"}, nil))
	// More than one export batch, so batching is exercised.
	for i := 0; i < 1100; i++ {
		must[commands.Message](t)(w.cmds.SendMessage(ctx, actor("ann"), conv.ID, "line", ""))
	}
	aud := audit.Auditor{UserID: "aud", ClinicID: "c1"}
	stored, err := w.store.ReadStream(ctx, domain.ConversationStream(conv.ID), 1, 0)
	if err != nil {
		t.Fatal(err)
	}

	var jsonl bytes.Buffer
	if err := w.svc.Export(ctx, aud, conv.ID, audit.FormatJSONL, &jsonl); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&jsonl)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		var e audit.EventJSON
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		if e.EventID != stored[n].EventID || e.StreamVersion != int64(n+1) || e.Hash != stored[n].Hash {
			t.Fatalf("line %d: %+v differs from stored %+v", n, e, stored[n])
		}
		n++
	}
	if n != len(stored) {
		t.Fatalf("jsonl has %d lines, store %d events", n, len(stored))
	}

	var csvOut bytes.Buffer
	if err := w.svc.Export(ctx, aud, conv.ID, audit.FormatCSV, &csvOut); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&csvOut).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(stored)+1 || rows[0][0] != "position" || rows[len(rows)-1][3] != stored[len(stored)-1].EventID {
		t.Fatalf("csv: %d rows; header %v", len(rows), rows[0])
	}
}
