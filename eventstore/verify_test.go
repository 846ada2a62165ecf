package eventstore_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/huddle-chat/huddle/eventstore"
)

func TestEvents_CannotBeChangedOrDeleted(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	mustAppend(t, s, "conversation-a", eventstore.ExpectNoStream, "", msg(1))
	for _, sql := range []string{
		`UPDATE events SET data = '{"text":"forged"}'`,
		`DELETE FROM events`,
		`TRUNCATE events`,
	} {
		if _, err := s.Pool().Exec(ctx, sql); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Fatalf("%s: err = %v, want the append-only refusal", sql, err)
		}
	}
}

func TestVerify_ReportsFirstTamperedVersion(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	// Data Postgres normalises (number forms, key order, escapes) must still verify.
	odd := eventstore.EventData{Type: "MessageSent", Data: json.RawMessage(`{"z":1.50,"a":1e2,"s":"\u00e9 <&> \n","n":[-0,0.0]}`)}
	mustAppend(t, s, "conversation-t", eventstore.ExpectNoStream, "", odd, msg(2), msg(3))
	mustAppend(t, s, "conversation-ok", eventstore.ExpectNoStream, "", msg(1))
	if r, err := s.Verify(ctx, "conversation-t"); err != nil || !r.OK || r.Events != 3 {
		t.Fatalf("untouched stream: %+v, %v", r, err)
	}

	// Tamper through the escape hatch, as someone with the table owner's rights could.
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SET LOCAL huddle.allow_event_rewrite = 'on'`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE events SET data = '{"n":2,"text":"forged"}' WHERE stream_id = 'conversation-t' AND stream_version = 2`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	r, err := s.Verify(ctx, "conversation-t")
	if err != nil {
		t.Fatal(err)
	}
	if r.OK || r.FirstBadVersion != 2 || r.Events != 3 {
		t.Fatalf("tampered stream: %+v, want first bad version 2", r)
	}
	sum, err := s.VerifyAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.OK() || sum.Streams != 2 || sum.Events != 4 || len(sum.Bad) != 1 || sum.Bad[0].StreamID != "conversation-t" || sum.Bad[0].FirstBadVersion != 2 {
		t.Fatalf("verify all: %+v", sum)
	}
}

func TestUpcasters_EveryReadPathReturnsLatestShape(t *testing.T) {
	t.Parallel()
	up := eventstore.NewUpcasters()
	s := newStore(t, eventstore.WithUpcasters(up))
	ctx := context.Background()
	// v1 {"name"} -> v2 {"title"} -> v3 {"title","lang"}
	old := eventstore.EventData{Type: "FakeRenamed", SchemaVersion: 1, Data: json.RawMessage(`{"name":"Front desk"}`)}
	first := mustAppend(t, s, "conversation-u", eventstore.ExpectNoStream, "cmd-u", old)
	if first.Events[0].SchemaVersion != 1 {
		t.Fatalf("before registering: %+v", first.Events[0])
	}
	up.Register("FakeRenamed", 1, func(d json.RawMessage) (json.RawMessage, error) {
		var v struct{ Name string }
		if err := json.Unmarshal(d, &v); err != nil {
			return nil, err
		}
		return json.Marshal(map[string]string{"title": v.Name})
	})
	s.RegisterUpcaster("FakeRenamed", 2, func(d json.RawMessage) (json.RawMessage, error) {
		var v map[string]any
		if err := json.Unmarshal(d, &v); err != nil {
			return nil, err
		}
		v["lang"] = "en"
		return json.Marshal(v)
	})
	check := func(path string, e eventstore.RecordedEvent) {
		t.Helper()
		if e.SchemaVersion != 3 || string(e.Data) != `{"lang":"en","title":"Front desk"}` {
			t.Fatalf("%s: schema %d data %s", path, e.SchemaVersion, e.Data)
		}
	}
	byStream, err := s.ReadStream(ctx, "conversation-u", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	check("ReadStream", byStream[0])
	check("ReadAll", readAllEvents(t, s, 1)[0])
	dup := mustAppend(t, s, "conversation-u", eventstore.ExpectAny, "cmd-u", old)
	check("duplicate Append", dup.Events[0])
	state, _, err := eventstore.Load(ctx, s, "conversation-u", eventstore.Aggregate[[]string]{
		Initial: func() []string { return nil },
		Evolve: func(st []string, e eventstore.RecordedEvent) ([]string, error) {
			check("Load", e)
			return append(st, e.Type), nil
		},
	})
	if err != nil || len(state) != 1 {
		t.Fatalf("load: %v %v", state, err)
	}
	// The stored row is untouched, so its hash still verifies.
	if r, err := s.Verify(ctx, "conversation-u"); err != nil || !r.OK {
		t.Fatalf("verify after upcasting: %+v %v", r, err)
	}
}

func TestMessage_RoundTripsARecordedEvent(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	e := mustAppend(t, s, "conversation-m", eventstore.ExpectNoStream, "cmd-m", msg(1), msg(2)).Events[1]
	e.Metadata.CorrelationID, e.Metadata.CausationID = "corr", "cause"
	m := eventstore.ToMessage(e)
	if m.UUID != e.EventID || m.Metadata.Get("ce-id") != e.EventID || m.Metadata.Get("ce-specversion") != "1.0" ||
		m.Metadata.Get("ce-source") != "huddle/c1" || m.Metadata.Get("ce-subject") != "conversation-m" {
		t.Fatalf("message: %s %v", m.UUID, m.Metadata)
	}
	if got := eventstore.Subject(e); got != "huddle.events.c1.conversation.MessageSent" {
		t.Fatalf("subject %q", got)
	}
	back, err := eventstore.FromMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	if !back.RecordedAt.Equal(e.RecordedAt) {
		t.Fatalf("time %v != %v", back.RecordedAt, e.RecordedAt)
	}
	back.RecordedAt = e.RecordedAt
	if b, w := mustJSON(back), mustJSON(e); b != w {
		t.Fatalf("round trip:\n got %s\nwant %s", b, w)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
