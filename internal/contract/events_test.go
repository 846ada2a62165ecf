package contract_test

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"

	"github.com/huddle-chat/huddle/commands"
	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/audit"
	"github.com/huddle-chat/huddle/internal/blobs"
	"github.com/huddle-chat/huddle/internal/memberstreams"
	"github.com/huddle-chat/huddle/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const schemaDir = "../../docs/schemas"

// produceEveryEvent runs commands that, between them, store every event type there is.
func produceEveryEvent(t *testing.T, store *eventstore.Store, bs *blobs.Store) {
	t.Helper()
	ctx := context.Background()
	h := commands.New(store, bs, commands.Options{})
	admin := commands.Actor{UserID: "admin", ClinicID: "c1", CorrelationID: "r-admin"}
	as := func(u string) commands.Actor {
		return commands.Actor{UserID: u, ClinicID: "c1", CorrelationID: "r-" + u}
	}
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	_, _, err := h.NameRoom(ctx, admin, "room1", "Front desk")
	check("name room", err)
	for _, u := range []string{"ann", "bob", "cat", "dan"} {
		_, _, err := h.SetUser(ctx, admin, u, "User "+u, u+"@clinic.test", "MA")
		check("set user", err)
		_, err = h.AddRoomMember(ctx, admin, "room1", u)
		check("add room member", err)
	}
	title := "Night shift"
	g, err := h.StartConversation(ctx, as("ann"), []string{"bob", "cat"}, &title)
	check("start group", err)
	d, err := h.StartConversation(ctx, as("ann"), []string{"dan"}, nil)
	check("start direct", err)
	m, err := h.SendMessage(ctx, as("bob"), g.ID, "hello", "client-1")
	check("send", err)
	u, err := h.Send(ctx, as("bob"), g.ID, commands.Send{Text: "bed 4, now", Priority: domain.PriorityUrgent})
	check("send urgent", err)
	_, err = h.AcknowledgeMessage(ctx, as("cat"), g.ID, u.ID)
	check("acknowledge", err)
	_, err = h.EditMessage(ctx, as("bob"), g.ID, m.ID, "hello, all")
	check("edit", err)
	_, err = h.RecallMessage(ctx, as("bob"), g.ID, u.ID)
	check("recall", err)
	_, err = h.ShareFile(ctx, as("ann"), d.ID, "notes.txt", "", strings.NewReader("some notes"))
	check("share file", err)
	_, err = h.RenameGroup(ctx, as("cat"), g.ID, "Day shift")
	check("rename", err)
	_, err = h.AddParticipant(ctx, as("bob"), g.ID, "dan")
	check("add", err)
	_, err = h.RemoveParticipant(ctx, as("bob"), g.ID, "cat")
	check("remove", err)
	_, err = h.LeaveGroup(ctx, as("ann"), g.ID) // the owner: ownership passes on
	check("leave", err)
	for _, step := range []func(context.Context, commands.Actor, string) (commands.Position, error){h.Mute, h.Unmute, h.Archive, h.Unarchive} {
		_, err := step(ctx, as("bob"), g.ID)
		check("member choice", err)
	}
	_, err = h.MarkRead(ctx, as("bob"), g.ID, m.ID)
	check("mark read", err)
	_, err = h.DeleteGroup(ctx, as("bob"), g.ID)
	check("delete group", err)
	_, err = h.RemoveRoomMember(ctx, admin, "room1", "dan")
	check("remove room member", err)
	_, err = h.DeactivateUser(ctx, admin, "dan")
	check("deactivate", err)
	_, _, err = audit.New(store).Events(ctx, audit.Auditor{UserID: "aud", ClinicID: "c1"}, g.ID, 0, 10)
	check("audit read", err)
	// A member event as stores before ADR 0013 wrote it, carried over to member-c1.cat.
	_, err = store.Append(ctx, domain.LegacyMemberStream("cat"), eventstore.ExpectAny, []eventstore.EventData{{
		Type: "ConversationMuted", Data: []byte(`{"conversation_id":"` + d.ID + `"}`),
		Metadata: eventstore.Metadata{ActorID: "cat", ClinicID: "c1"}}}, "")
	check("legacy member event", err)
	_, err = memberstreams.CarryOver(ctx, store)
	check("carry over", err)
}

func compileSchemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(schemaDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no schemas in %s: %v", schemaDir, err)
	}
	c := jsonschema.NewCompiler()
	out := map[string]*jsonschema.Schema{}
	for _, f := range files {
		abs, _ := filepath.Abs(f)
		s, err := c.Compile(abs)
		if err != nil {
			t.Fatalf("schema %s: %v", f, err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = s
	}
	return out
}

func TestEventSchemas_EveryTypeHasOneAndNoOther(t *testing.T) {
	schemas := compileSchemas(t)
	types := domain.EventTypes()
	sort.Strings(types)
	for _, typ := range types {
		if schemas[typ] == nil {
			t.Errorf("event type %s has no docs/schemas/%s.json", typ, typ)
		}
	}
	for name := range schemas {
		if _, err := domain.Decode(name, []byte("{}")); err != nil {
			t.Errorf("docs/schemas/%s.json describes no event type", name)
		}
	}
}

func TestEventSchemas_ValidateEveryRealEvent(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t)
	store := eventstore.New(pool)
	produceEveryEvent(t, store, blobs.New(pool))
	schemas := compileSchemas(t)

	seen := map[string]int{}
	var cp eventstore.Checkpoint
	for {
		batch, err := store.ReadAll(context.Background(), cp, 500)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range batch {
			seen[e.Type]++
			s := schemas[e.Type]
			if s == nil {
				t.Errorf("stored event type %s has no schema", e.Type)
				continue
			}
			doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(e.Data)))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Validate(doc); err != nil {
				t.Errorf("%s %s@%d does not match its schema: %v\n%s", e.Type, e.StreamID, e.StreamVersion, err, e.Data)
			}
		}
		if len(batch) < 500 {
			break
		}
		cp = eventstore.CheckpointOf(batch[len(batch)-1])
	}
	for _, typ := range domain.EventTypes() {
		if seen[typ] == 0 {
			t.Errorf("the scenario stored no %s event, so its schema went unchecked", typ)
		}
	}
}

func TestAsyncAPI_NamesEveryEventTypeOnItsSubject(t *testing.T) {
	raw, err := os.ReadFile("../../docs/asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Channels map[string]struct {
			Address string `yaml:"address"`
		} `yaml:"channels"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	categories := map[string]string{}
	for _, typ := range domain.EventTypes() {
		ch, ok := doc.Channels[typ]
		if !ok {
			t.Errorf("asyncapi.yaml has no channel for %s", typ)
			continue
		}
		parts := strings.Split(ch.Address, ".")
		if len(parts) != 5 || parts[0] != "huddle" || parts[1] != "events" || parts[2] != "{clinic}" || parts[4] != typ {
			t.Errorf("%s: address %q is not huddle.events.{clinic}.<category>.%s", typ, ch.Address, typ)
			continue
		}
		categories[typ] = parts[3]
	}
	// The category must be the one the relay really uses: the stream the event lives in.
	want := map[string]string{"MessageSent": domain.CategoryConversation, "ConversationMuted": domain.CategoryMember,
		"RoomNamed": domain.CategoryDirectory, "AuditRead": domain.CategoryAudit}
	for typ, cat := range want {
		if categories[typ] != cat {
			t.Errorf("%s is on category %q, want %q", typ, categories[typ], cat)
		}
	}
	if len(doc.Channels) != len(domain.EventTypes()) {
		t.Errorf("asyncapi.yaml has %d channels for %d event types", len(doc.Channels), len(domain.EventTypes()))
	}
}
