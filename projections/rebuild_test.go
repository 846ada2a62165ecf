package projections_test

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/internal/projtest"
)

// A rebuild reads the store with its own narrow query, but must still see events as the store
// gives them: upcast to their type's current schema.
func TestRebuild_ReadsEventsUpcast(t *testing.T) {
	t.Parallel()
	e := projtest.New(t)
	e.AppendEvents("c1", "u1", domain.ConversationStream("g1"),
		domain.ConversationStarted{ConversationID: "g1", Kind: domain.KindGroup, Title: "Team", OwnerID: "u1", StartedBy: "u1", ParticipantIDs: []string{"u1", "u2"}},
		domain.MessageSent{MessageID: "m1", SenderID: "u1", Text: "hi"},
		domain.MessageSent{MessageID: "m2", SenderID: "u2", Text: "yo"},
	)
	// Schema version 1 of MessageSent said "text"; the current one shouts.
	e.Store.RegisterUpcaster(domain.MessageSent{}.EventType(), 1, func(data json.RawMessage) (json.RawMessage, error) {
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, err
		}
		m["text"] = strings.ToUpper(m["text"].(string))
		return json.Marshal(m)
	})
	if err := e.Engine.Rebuild(e.Ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	var texts []string
	rows, err := e.Pool.Query(e.Ctx, `SELECT text FROM messages ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		texts = append(texts, s)
	}
	rows.Close()
	if !slices.Equal(texts, []string{"HI", "YO"}) {
		t.Errorf("messages after rebuild: %q, want the upcast [HI YO]", texts)
	}
	var preview string
	if err := e.Pool.QueryRow(e.Ctx, `SELECT last_message_preview FROM inbox WHERE user_id = 'u1'`).Scan(&preview); err != nil {
		t.Fatal(err)
	}
	if preview != "YO" {
		t.Errorf("inbox preview %q, want the upcast YO", preview)
	}
}

// The load drops indexes and constraints and restores them afterwards: the swapped-in tables
// must have the same ones as the tables they replace (plain index names aside, ADR 0003).
func TestRebuild_RestoresIndexesAndConstraints(t *testing.T) {
	t.Parallel()
	e := projtest.New(t)
	faultScenario(e)
	before := schemaOf(e)
	if err := e.Engine.Rebuild(e.Ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	after := schemaOf(e)
	if !slices.Equal(before, after) {
		t.Errorf("indexes and constraints changed by a rebuild:\nbefore: %s\nafter:  %s", strings.Join(before, "\n        "), strings.Join(after, "\n        "))
	}
	if len(before) < 2*len(e.Models) {
		t.Fatalf("found only %v", before)
	}
}

var indexName = regexp.MustCompile(`INDEX \S+ ON`)

// schemaOf lists the read models' constraints and index definitions (without index names).
func schemaOf(e *projtest.Env) []string {
	e.T.Helper()
	var tables []string
	for _, m := range e.Models {
		tables = append(tables, m.Tables...)
	}
	var out []string
	rows, err := e.Pool.Query(e.Ctx, `
		SELECT 'constraint ' || t.relname || ' ' || c.conname || ' ' || pg_get_constraintdef(c.oid)
		FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
		WHERE t.relname = ANY($1) AND t.relnamespace = current_schema()::regnamespace
		UNION ALL
		SELECT 'index ' || tablename || ' ' || indexdef FROM pg_indexes
		WHERE tablename = ANY($1) AND schemaname = current_schema()`, tables)
	if err != nil {
		e.T.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			e.T.Fatal(err)
		}
		out = append(out, indexName.ReplaceAllString(s, "INDEX ON"))
	}
	rows.Close()
	slices.Sort(out)
	return out
}
