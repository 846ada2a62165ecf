package api_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/huddle-chat/huddle/api"
	"github.com/huddle-chat/huddle/commands"
	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/app"
	"github.com/huddle-chat/huddle/internal/blobs"
	"github.com/huddle-chat/huddle/internal/memberstreams"
	"github.com/huddle-chat/huddle/internal/testenv"
	"github.com/huddle-chat/huddle/projections"
)

// TestMemberStreams_ScopedByClinic: clinics clinic-1 and clinic-2 each have a user u1 (other
// people with the same id). Each u1's mute, archive and read marker stay their own, and each
// clinic's auditor verifying its u1's member stream (member-<clinic>.u1, ADR 0013) counts only
// that clinic's events; the other clinic's stream is not found for them. Before ADR 0013 both
// wrote member-u1, which the second clinic's auditor could not verify and the first's counted
// both clinics' events in.
func TestMemberStreams_ScopedByClinic(t *testing.T) {
	s := startScenario(t)
	mint := func(user, clinic, role string) string {
		tok, err := api.MintToken(s.secret, user, clinic, []string{role}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// Positions are per clinic: each clinic's reads wait for its own last write.
	pos := map[string]string{}
	in := func(clinic string, f func()) {
		s.pos = pos[clinic]
		f()
		pos[clinic] = s.pos
	}
	chat := map[string]string{}
	for _, clinic := range []string{"clinic-1", "clinic-2"} {
		in(clinic, func() {
			admin := mint("root", clinic, api.RoleAdmin)
			s.must(s.do("PUT", "/v1/admin/rooms/r1", admin, map[string]any{"name": "Ward"}), 200, "")
			for _, u := range []string{"u1", "u2"} {
				s.must(s.do("PUT", "/v1/admin/users/"+u, admin, map[string]any{"name": u + " of " + clinic, "email": u + "@" + clinic + ".test"}), 200, "")
				s.must(s.do("PUT", "/v1/admin/rooms/r1/members/"+u, admin, nil), 204, "")
			}
			u2 := mint("u2", clinic, api.RoleStaff)
			chat[clinic] = s.must(s.do("POST", "/v1/conversations", u2, map[string]any{"participant_ids": []string{"u1"}}), 201, "").str("id")
			for _, text := range []string{"one", "two"} {
				s.must(s.do("POST", "/v1/conversations/"+chat[clinic]+"/messages", u2, map[string]any{"text": text}), 201, "")
			}
		})
	}
	c1, c2 := mint("u1", "clinic-1", api.RoleStaff), mint("u1", "clinic-2", api.RoleStaff)
	in("clinic-1", func() {
		s.must(s.do("PUT", "/v1/conversations/"+chat["clinic-1"]+"/mute", c1, nil), 204, "")
		s.must(s.do("PUT", "/v1/conversations/"+chat["clinic-1"]+"/archive", c1, nil), 204, "")
	})
	in("clinic-2", func() {
		s.must(s.do("POST", "/v1/conversations/"+chat["clinic-2"]+"/read", c2, map[string]any{}), 204, "")
		s.must(s.do("PUT", "/v1/conversations/"+chat["clinic-2"]+"/mute", c2, nil), 204, "")
		s.must(s.do("DELETE", "/v1/conversations/"+chat["clinic-2"]+"/mute", c2, nil), 204, "")
	})

	// Each u1 sees their own choices.
	in("clinic-1", func() {
		got := s.must(s.do("GET", "/v1/conversations?archived=true", c1, nil), 200, "").list("conversations")
		if len(got) != 1 || got[0]["id"] != chat["clinic-1"] || got[0]["muted"] != true || got[0]["archived"] != true || got[0]["unread_count"] != float64(2) {
			t.Errorf("clinic-1's u1: archived chats %v, want their chat muted, archived, 2 unread", got)
		}
	})
	in("clinic-2", func() {
		c := s.summary(c2, chat["clinic-2"])
		if c["muted"] != false || c["archived"] != false || c["unread_count"] != float64(0) {
			t.Errorf("clinic-2's u1: %v, want their chat unmuted, not archived, read", c)
		}
	})

	// Each clinic's auditor verifies its own u1's stream and counts only its events.
	for clinic, events := range map[string]float64{"clinic-1": 2, "clinic-2": 3} {
		in(clinic, func() {
			stream := "member-" + clinic + ".u1" // domain.MemberStream
			r := s.must(s.do("GET", "/v1/audit/verify?stream_id="+stream, mint("aud", clinic, api.RoleAuditor), nil), 200, "")
			if r.json["ok"] != true || r.json["events"] != events {
				t.Errorf("%s's auditor verifying %s: %s, want ok with %v events", clinic, stream, r.body, events)
			}
		})
	}
	in("clinic-2", func() {
		s.must(s.do("GET", "/v1/audit/verify?stream_id=member-clinic-1.u1", mint("aud", "clinic-2", api.RoleAuditor), nil), 404, domain.CodeNotFound)
	})
}

// TestMemberStreams_CarryOverOfALegacyStore writes a store the way Huddle did before ADR 0013
// (both clinics' u1 in one stream member-u1, written with the store API), starts Huddle on it
// (which carries the legacy stream over, internal/memberstreams) and checks that every hash
// chain still verifies with the legacy stream untouched, that the read models rebuild equal,
// that each clinic's new stream starts from that clinic's legacy state only, and that commands
// and notifications go on from it.
func TestMemberStreams_CarryOverOfALegacyStore(t *testing.T) {
	ctx := context.Background()
	pool, dbURL := testenv.Postgres(t)
	store := eventstore.New(pool)
	h := commands.New(store, blobs.New(pool), commands.Options{})
	chat := map[string]string{}
	for _, clinic := range []string{"clinic-1", "clinic-2"} {
		as := func(u string) commands.Actor {
			return commands.Actor{UserID: u, ClinicID: clinic, CorrelationID: "legacy"}
		}
		must := func(_ any, err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		_, _, err := h.NameRoom(ctx, as("root"), "r1", "Ward")
		must(nil, err)
		for _, u := range []string{"u1", "u2"} {
			_, _, err := h.SetUser(ctx, as("root"), u, u+" of "+clinic, u+"@"+clinic+".test", "")
			must(nil, err)
			must(h.AddRoomMember(ctx, as("root"), "r1", u))
		}
		c, err := h.StartConversation(ctx, as("u2"), []string{"u1"}, nil)
		must(nil, err)
		chat[clinic] = c.ID
		for _, text := range []string{"one", "two", "three"} {
			must(h.SendMessage(ctx, as("u2"), c.ID, text, ""))
		}
	}
	// Both clinics' u1 in one legacy stream, interleaved, as commands wrote them then.
	legacy := domain.LegacyMemberStream("u1")
	for _, step := range []struct {
		clinic string
		ev     domain.Event
	}{
		{"clinic-1", domain.ConversationMuted{ConversationID: chat["clinic-1"]}},
		{"clinic-2", domain.ConversationMuted{ConversationID: chat["clinic-2"]}},
		{"clinic-1", domain.ConversationArchived{ConversationID: chat["clinic-1"]}},
		{"clinic-2", domain.ReadMarkerMoved{ConversationID: chat["clinic-2"], UpToVersion: 4}},
		{"clinic-1", domain.ReadMarkerMoved{ConversationID: chat["clinic-1"], UpToVersion: 2}},
	} {
		typ, data, err := domain.Encode(step.ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Append(ctx, legacy, eventstore.ExpectAny, []eventstore.EventData{{Type: typ, Data: data,
			Metadata: eventstore.Metadata{ActorID: "u1", ClinicID: step.clinic, CorrelationID: "legacy"}}}, uuid.NewString()); err != nil {
			t.Fatal(err)
		}
	}
	// A user id from before the directory alphabet, with a '.': its legacy stream looks like a
	// scoped one (clinic "dr", user "ann") to anyone who ignores the event's clinic.
	if _, err := store.Append(ctx, domain.LegacyMemberStream("dr.ann"), eventstore.ExpectAny, []eventstore.EventData{{
		Type: "ConversationArchived", Data: []byte(`{"conversation_id":"` + chat["clinic-1"] + `"}`),
		Metadata: eventstore.Metadata{ActorID: "dr.ann", ClinicID: "clinic-1", CorrelationID: "legacy"}}}, uuid.NewString()); err != nil {
		t.Fatal(err)
	}
	legacyBefore, err := store.ReadStream(ctx, legacy, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	engine := projections.NewEngine(pool, store, "", testenv.Logger(t), prometheus.NewRegistry(), app.ReadModels())
	readModels := func() string {
		t.Helper()
		if err := engine.Rebuild(ctx, nil, nil); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		for _, table := range []string{"dir_users", "conversations", "participants", "visibility", "messages", "inbox", "member_prefs"} {
			var rows string
			if err := pool.QueryRow(ctx, `SELECT coalesce(json_agg(t ORDER BY t::text), '[]')::text FROM `+table+` t`).Scan(&rows); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&out, "%s: %s\n", table, rows)
		}
		return out.String()
	}
	before := readModels()

	// Starting Huddle carries the legacy stream over (app.Migrate).
	secret := []byte("legacy-secret-legacy-secret-legacy-secret")
	s := startInstance(t, dbURL, testenv.NATS(t).ClientURL(), secret)

	sum, err := store.VerifyAll(ctx)
	if err != nil || !sum.OK() {
		t.Fatalf("verify all after the carry-over: %+v %v", sum, err)
	}
	legacyAfter, err := store.ReadStream(ctx, legacy, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(legacyAfter) != len(legacyBefore) || legacyAfter[len(legacyAfter)-1].Hash != legacyBefore[len(legacyBefore)-1].Hash {
		t.Fatalf("the legacy stream changed: %d events, head %s; was %d, head %s", len(legacyAfter), legacyAfter[len(legacyAfter)-1].Hash,
			len(legacyBefore), legacyBefore[len(legacyBefore)-1].Hash)
	}
	head := legacyBefore[len(legacyBefore)-1]
	want := map[string]domain.MemberStreamCarriedOver{
		"clinic-1": {FromStream: legacy, FromVersion: head.StreamVersion, FromHash: head.Hash, Events: 3,
			Conversations: map[string]domain.MemberConversation{chat["clinic-1"]: {Muted: true, Archived: true, ReadUpTo: 2}}},
		"clinic-2": {FromStream: legacy, FromVersion: head.StreamVersion, FromHash: head.Hash, Events: 2,
			Conversations: map[string]domain.MemberConversation{chat["clinic-2"]: {Muted: true, ReadUpTo: 4}}},
	}
	for clinic, w := range want {
		evs, err := store.ReadStream(ctx, domain.MemberStream(clinic, "u1"), 1, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || evs[0].Metadata.ClinicID != clinic {
			t.Fatalf("%s: new member stream holds %d events (clinic %v), want one carry-over of %s", clinic, len(evs), evs, clinic)
		}
		got, err := domain.Decode(evs[0].Type, evs[0].Data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("%s carried over %+v, want %+v", clinic, got, w)
		}
	}
	if evs, err := store.ReadStream(ctx, domain.MemberStream("clinic-1", "dr.ann"), 1, 10); err != nil || len(evs) != 1 || evs[0].Type != "MemberStreamCarriedOver" {
		t.Errorf("dr.ann's legacy stream carried over as %v (%v), want one MemberStreamCarriedOver", evs, err)
	}
	var drAnn int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM member_prefs WHERE clinic_id = 'clinic-1' AND user_id = 'dr.ann' AND archived`).Scan(&drAnn); err != nil || drAnn != 1 {
		t.Errorf("dr.ann's archive in the read model: %d rows (%v), want 1", drAnn, err)
	}
	if after := readModels(); after != before {
		t.Fatalf("read models rebuilt after the carry-over differ:\nbefore %s\nafter  %s", before, after)
	}
	// Running it again carries nothing twice.
	if rep, err := memberstreams.CarryOver(ctx, store); err != nil || !rep.AlreadyDone {
		t.Fatalf("second carry-over: %+v %v", rep, err)
	}

	// Commands go on from each clinic's carried state: clinic-1's u1 is already muted (no new
	// event), clinic-2's u1 unmutes (they were muted there).
	mint := func(user, clinic, role string) string {
		tok, err := api.MintToken(secret, user, clinic, []string{role}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	s.must(s.do("PUT", "/v1/conversations/"+chat["clinic-1"]+"/mute", mint("u1", "clinic-1", api.RoleStaff), nil), 204, "")
	s.pos = ""
	s.must(s.do("DELETE", "/v1/conversations/"+chat["clinic-2"]+"/mute", mint("u1", "clinic-2", api.RoleStaff), nil), 204, "")
	if c := s.summary(mint("u1", "clinic-2", api.RoleStaff), chat["clinic-2"]); c["muted"] != false || c["unread_count"] != float64(0) {
		t.Errorf("clinic-2's u1 after unmuting: %v", c)
	}
	for clinic, events := range map[string]float64{"clinic-1": 1, "clinic-2": 2} {
		s.pos = ""
		r := s.must(s.do("GET", "/v1/audit/verify?stream_id="+domain.MemberStream(clinic, "u1"), mint("aud", clinic, api.RoleAuditor), nil), 200, "")
		if r.json["ok"] != true || r.json["events"] != events {
			t.Errorf("%s's auditor verifying its u1's stream: %s, want ok with %v events", clinic, r.body, events)
		}
	}

	// New messages notify by the mute state of both streams: clinic-1's u1 muted in the legacy
	// stream (no pop-up), clinic-2's u1 unmuted in the new one.
	for clinic, notify := range map[string]bool{"clinic-1": false, "clinic-2": true} {
		s.pos = ""
		s.must(s.do("POST", "/v1/conversations/"+chat[clinic]+"/messages", mint("u2", clinic, api.RoleStaff), map[string]any{"text": "after"}), 201, "")
		s.summary(mint("u2", clinic, api.RoleStaff), chat[clinic]) // waits for the projection (Huddle-Min-Position)
		var got bool
		if err := pool.QueryRow(ctx, `SELECT (body->>'notify')::boolean FROM live_feed
			WHERE clinic_id = $1 AND user_id = 'u1' AND kind = 'message' ORDER BY seq DESC LIMIT 1`, clinic).Scan(&got); err != nil {
			t.Fatalf("%s: u1's live feed: %v", clinic, err)
		}
		if got != notify {
			t.Errorf("%s: u1's message entry has notify %v, want %v", clinic, got, notify)
		}
	}
}
