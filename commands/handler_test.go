package commands

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/blobs"
	"github.com/huddle-chat/huddle/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

type fixture struct {
	h     *Handler
	store *eventstore.Store
	ctx   context.Context
}

func actor(user string) Actor {
	return Actor{UserID: user, ClinicID: "c1", CorrelationID: "req-" + user}
}

// setup gives ann, bob, cat and dan a shared waiting room in clinic c1.
func setup(t *testing.T, opts Options) fixture {
	t.Helper()
	pool, _ := testenv.Postgres(t)
	store := eventstore.New(pool)
	f := fixture{h: New(store, blobs.New(pool), opts), store: store, ctx: context.Background()}
	admin := actor("admin")
	if _, _, err := f.h.NameRoom(f.ctx, admin, "r1", "Front desk"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"ann", "bob", "cat", "dan"} {
		if _, _, err := f.h.SetUser(f.ctx, admin, u, strings.ToUpper(u[:1])+u[1:], u+"@clinic.test", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := f.h.AddRoomMember(f.ctx, admin, "r1", u); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f fixture) events(t *testing.T, stream string) []eventstore.RecordedEvent {
	t.Helper()
	evs, err := f.store.ReadStream(f.ctx, stream, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestSetUser_ReturnsSavedUserAndPosition(t *testing.T) {
	f := setup(t, Options{})
	u, pos, err := f.h.SetUser(f.ctx, actor("admin"), "eve", " Eve ", "eve@clinic.test", "RN")
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != "eve" || u.Name != "Eve" || u.Title != "RN" || !u.Active {
		t.Fatalf("user: %+v", u)
	}
	if pos.StreamID != domain.DirectoryStream("c1") || pos.Version < 1 || pos.At.Position < 1 {
		t.Fatalf("position: %+v", pos)
	}
	// A no-op names the stream's end, but no place in the store's order: it wrote nothing.
	again, pos2, err := f.h.SetUser(f.ctx, actor("admin"), "eve", "Eve", "eve@clinic.test", "RN")
	if err != nil || again.Name != u.Name || again.Title != u.Title || !again.Active ||
		pos2.StreamID != pos.StreamID || pos2.Version != pos.Version || pos2.At != (eventstore.Checkpoint{}) {
		t.Fatalf("same profile again must change nothing: %+v %+v %v", again, pos2, err)
	}
}

func TestStartDirect_ContinuingUnarchivesForOpener(t *testing.T) {
	f := setup(t, Options{})
	first, err := f.h.StartConversation(f.ctx, actor("ann"), []string{"bob"}, nil)
	if err != nil || !first.Created || first.Kind != domain.KindDirect || len(first.Participants) != 2 || first.Participants[0].Name != "Ann" {
		t.Fatalf("first: %+v %v", first, err)
	}
	if _, err := f.h.Archive(f.ctx, actor("bob"), first.ID); err != nil {
		t.Fatal(err)
	}
	again, err := f.h.StartConversation(f.ctx, actor("bob"), []string{"ann", "bob"}, nil)
	if err != nil || again.Created || again.ID != first.ID {
		t.Fatalf("again: %+v %v", again, err)
	}
	member := f.events(t, domain.MemberStream("c1", "bob"))
	if last := member[len(member)-1]; last.Type != "ConversationUnarchived" || again.Position.StreamID != domain.MemberStream("c1", "bob") {
		t.Fatalf("want bob's chat unarchived, got %s (position %+v)", last.Type, again.Position)
	}
	if n := len(f.events(t, domain.ConversationStream(first.ID))); n != 1 {
		t.Fatalf("continuing must not write to the conversation, it has %d events", n)
	}
}

func TestStartDirect_SimultaneousStartsMeetInOneStream(t *testing.T) {
	f := setup(t, Options{})
	var wg sync.WaitGroup
	results := make([]Conversation, 8)
	errs := make([]error, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			me, other := "ann", "bob"
			if i%2 == 1 {
				me, other = other, me
			}
			results[i], errs[i] = f.h.StartConversation(f.ctx, actor(me), []string{other}, nil)
		}()
	}
	wg.Wait()
	created := 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("start %d: %v", i, errs[i])
		}
		if r.ID != results[0].ID {
			t.Fatalf("two ids: %s %s", r.ID, results[0].ID)
		}
		if r.Created {
			created++
		}
	}
	if created != 1 || len(f.events(t, domain.ConversationStream(results[0].ID))) != 1 {
		t.Fatalf("want exactly one start, got %d created", created)
	}
}

func TestSendMessage_SameClientMessageIDOnce(t *testing.T) {
	f := setup(t, Options{})
	g, err := f.h.StartConversation(f.ctx, actor("ann"), []string{"bob", "cat"}, ptr("Ward"))
	if err != nil {
		t.Fatal(err)
	}
	m1, err := f.h.SendMessage(f.ctx, actor("bob"), g.ID, "hello", "cm-1")
	if err != nil {
		t.Fatal(err)
	}
	m2, err := f.h.SendMessage(f.ctx, actor("bob"), g.ID, "hello", "cm-1")
	if err != nil || m2.ID != m1.ID || !m2.SentAt.Equal(m1.SentAt) || m2.Text != "hello" {
		t.Fatalf("repeat: %+v vs %+v, %v", m2, m1, err)
	}
	if n := len(f.events(t, domain.ConversationStream(g.ID))); n != 2 {
		t.Fatalf("want start + one message, got %d events", n)
	}
	// Another user's identical client id is another message.
	m3, err := f.h.SendMessage(f.ctx, actor("cat"), g.ID, "hello", "cm-1")
	if err != nil || m3.ID == m1.ID {
		t.Fatalf("cat's message: %+v %v", m3, err)
	}
}

func TestEvents_CarryMetadata(t *testing.T) {
	f := setup(t, Options{})
	g, err := f.h.StartConversation(f.ctx, actor("ann"), []string{"bob"}, ptr("T"))
	if err != nil {
		t.Fatal(err)
	}
	evs := f.events(t, domain.ConversationStream(g.ID))
	md := evs[0].Metadata
	if md.ActorID != "ann" || md.ClinicID != "c1" || md.CorrelationID != "req-ann" || md.CommandID == "" || md.CausationID != md.CommandID {
		t.Fatalf("metadata: %+v", md)
	}
}

func TestConversation_OtherClinicIsNotFound(t *testing.T) {
	f := setup(t, Options{})
	g, err := f.h.StartConversation(f.ctx, actor("ann"), []string{"bob"}, ptr("T"))
	if err != nil {
		t.Fatal(err)
	}
	// Same user id, another clinic.
	intruder := Actor{UserID: "ann", ClinicID: "c2", CorrelationID: "x"}
	checks := map[string]error{}
	_, checks["send"] = f.h.SendMessage(f.ctx, intruder, g.ID, "hi", "")
	_, checks["leave"] = f.h.LeaveGroup(f.ctx, intruder, g.ID)
	_, checks["mute"] = f.h.Mute(f.ctx, intruder, g.ID)
	_, checks["delete"] = f.h.DeleteGroup(f.ctx, intruder, g.ID)
	for name, err := range checks {
		if domain.ErrorCode(err) != domain.CodeNotFound {
			t.Errorf("%s: want not_found, got %v", name, err)
		}
	}
}

// wardWithFile starts group "Ward" of ann, bob and cat; cat leaves; then bob shares a file
// ("hello file"), which ann and bob saw shared and cat did not.
func wardWithFile(t *testing.T, f fixture) (Conversation, Message) {
	t.Helper()
	g, err := f.h.StartConversation(f.ctx, actor("ann"), []string{"bob", "cat"}, ptr("Ward"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.LeaveGroup(f.ctx, actor("cat"), g.ID); err != nil {
		t.Fatal(err)
	}
	m, err := f.h.ShareFile(f.ctx, actor("bob"), g.ID, "scan.txt", "", strings.NewReader("hello file"))
	if err != nil || m.Kind != "file" || m.File.Size != 10 {
		t.Fatalf("share: %+v %v", m, err)
	}
	return g, m
}

func TestOpenFile_OnlyForThoseWhoSawItShared(t *testing.T) {
	f := setup(t, Options{})
	g, m := wardWithFile(t, f)
	info, err := f.h.OpenFile(f.ctx, actor("ann"), m.File.ID)
	if err != nil {
		t.Fatalf("ann saw it shared: %v", err)
	}
	var out bytes.Buffer
	if _, err := f.h.CopyFile(f.ctx, info, &out); err != nil || out.String() != "hello file" {
		t.Fatalf("copy: %q %v", out.String(), err)
	}
	for _, who := range []string{"cat", "dan"} {
		if _, err := f.h.OpenFile(f.ctx, actor(who), m.File.ID); domain.ErrorCode(err) != domain.CodeNotFound {
			t.Fatalf("%s must not see it: %v", who, err)
		}
	}
	if _, err := f.h.OpenFile(f.ctx, Actor{UserID: "ann", ClinicID: "c2"}, m.File.ID); domain.ErrorCode(err) != domain.CodeNotFound {
		t.Fatalf("another clinic must not see it: %v", err)
	}
	if _, err := f.h.DeleteGroup(f.ctx, actor("ann"), g.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.OpenFile(f.ctx, actor("ann"), m.File.ID); domain.ErrorCode(err) != domain.CodeNotFound {
		t.Fatalf("a deleted group's files are gone: %v", err)
	}
}

func TestShareFile_RefusedSenderStoresNothing(t *testing.T) {
	f := setup(t, Options{MaxFileBytes: 1 << 20})
	g, err := f.h.StartConversation(f.ctx, actor("ann"), []string{"bob"}, ptr("T"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.LeaveGroup(f.ctx, actor("bob"), g.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.ShareFile(f.ctx, actor("bob"), g.ID, "x", "", strings.NewReader("data")); domain.ErrorCode(err) != domain.CodeCannotSend {
		t.Fatalf("want cannot_send, got %v", err)
	}
	if _, err := f.h.ShareFile(f.ctx, actor("ann"), g.ID, "x", "", bytes.NewReader(make([]byte, 1<<20+1))); domain.ErrorCode(err) != domain.CodeFileTooLarge {
		t.Fatalf("want file_too_large, got %v", err)
	}
	var n int
	if err := f.store.Pool().QueryRow(f.ctx, `SELECT count(*) FROM blobs`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d blobs left, %v", n, err)
	}
}

func TestShareFile_SameClientMessageIDOnce(t *testing.T) {
	f := setup(t, Options{})
	g, err := f.h.StartConversation(f.ctx, actor("ann"), []string{"bob"}, ptr("T"))
	if err != nil {
		t.Fatal(err)
	}
	m1, err := f.h.ShareFile(f.ctx, actor("ann"), g.ID, "a.txt", "up-1", strings.NewReader("one"))
	if err != nil {
		t.Fatal(err)
	}
	m2, err := f.h.ShareFile(f.ctx, actor("ann"), g.ID, "a.txt", "up-1", strings.NewReader("one"))
	if err != nil || m2.ID != m1.ID || m2.File.ID != m1.File.ID {
		t.Fatalf("repeat: %+v %v", m2, err)
	}
	var n int
	if err := f.store.Pool().QueryRow(f.ctx, `SELECT count(*) FROM blobs`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("want the one blob, got %d, %v", n, err)
	}
}

func TestMarkRead_UpToMessage(t *testing.T) {
	f := setup(t, Options{})
	g, err := f.h.StartConversation(f.ctx, actor("ann"), []string{"bob"}, ptr("T"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.h.SendMessage(f.ctx, actor("ann"), g.ID, "one", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.SendMessage(f.ctx, actor("ann"), g.ID, "two", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.MarkRead(f.ctx, actor("bob"), g.ID, m.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.MarkRead(f.ctx, actor("bob"), g.ID, "other.2"); domain.ErrorCode(err) != domain.CodeNotFound {
		t.Fatalf("a message of another conversation: %v", err)
	}
	if _, err := f.h.MarkRead(f.ctx, actor("bob"), g.ID, ""); err != nil {
		t.Fatal(err)
	}
	evs := f.events(t, domain.MemberStream("c1", "bob"))
	if len(evs) != 2 {
		t.Fatalf("want two marker moves, got %d", len(evs))
	}
	ev, _ := domain.Decode(evs[1].Type, evs[1].Data)
	if rm := ev.(domain.ReadMarkerMoved); rm.UpToVersion != 3 {
		t.Fatalf("read all: %+v", rm)
	}
}

func ptr(s string) *string { return &s }
