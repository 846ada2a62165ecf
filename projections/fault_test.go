package projections_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/inbox"
	"github.com/huddle-chat/huddle/internal/projtest"
	"github.com/huddle-chat/huddle/projections"
)

// faultScenario appends a small group history to the store (nothing published) and returns
// the conversation's and u2's member events.
func faultScenario(e *projtest.Env) (conv, member []eventstore.RecordedEvent) {
	conv = e.AppendEvents("c1", "u1", domain.ConversationStream("g1"),
		domain.ConversationStarted{ConversationID: "g1", Kind: domain.KindGroup, Title: "Team", OwnerID: "u1", StartedBy: "u1", ParticipantIDs: []string{"u1", "u2", "u3"}},
		domain.MessageSent{MessageID: "m1", SenderID: "u1", Text: "hi"},           // v2
		domain.MessageSent{MessageID: "m2", SenderID: "u2", Text: "yo"},           // v3
		domain.ParticipantLeft{UserID: "u3"},                                      // v4
		domain.MessageSent{MessageID: "m3", SenderID: "u1", Text: "after"},        // v5: u3 never sees it
		domain.ParticipantAdded{UserID: "u3", AddedBy: "u1"},                      // v6
		domain.MessageSent{MessageID: "m4", SenderID: "u2", Text: "welcome back"}, // v7
	)
	member = e.AppendEvents("c1", "u2", domain.MemberStream("c1", "u2"),
		domain.ConversationMuted{ConversationID: "g1"},
		domain.ReadMarkerMoved{ConversationID: "g1", UpToVersion: 2},
	)
	return conv, member
}

// checkFaultScenario asserts what users see after faultScenario, however it was delivered.
func checkFaultScenario(e *projtest.Env) {
	e.T.Helper()
	q := inbox.NewQueries(e.Pool)
	wantUnread := map[string][2]int{"u1": {2, 2}, "u2": {0, 1}, "u3": {3, 3}} // total, including muted
	for u, want := range wantUnread {
		got, err := q.Unread(e.Ctx, "c1", u)
		if err != nil {
			e.T.Fatal(err)
		}
		if got.Total != want[0] || got.TotalIncludingMuted != want[1] {
			e.T.Errorf("%s unread = %d/%d, want %d/%d", u, got.Total, got.TotalIncludingMuted, want[0], want[1])
		}
	}
	page, err := q.Messages(e.Ctx, "c1", "u3", "g1", "", 100)
	if err != nil {
		e.T.Fatal(err)
	}
	var ids []string
	for _, m := range page.Messages {
		ids = append(ids, m.ID)
	}
	if len(ids) != 5 || ids[0] != "m1" || ids[1] != "m2" || ids[4] != "m4" || page.Messages[2].Kind != "system" ||
		page.Messages[2].System.Event != domain.SystemParticipantLeft || page.Messages[3].System.Event != domain.SystemParticipantAdded {
		e.T.Errorf("u3 sees %v, want m1 m2 <left> <added> m4", ids)
	}
}

func TestFault_DuplicateDelivery(t *testing.T) {
	eachWorkers(t, func(t *testing.T, e *projtest.Env) {
		conv, member := faultScenario(e)
		e.Deliver(conv...)
		e.Deliver(conv...)
		e.Deliver(member...)
		e.Deliver(member[1], member[0], conv[3])
		e.Run()
		e.Settle()
		// The duplicates may be consumed after settle returns; wait until all were seen.
		checkFaultScenario(e)
		e.RequireSameAsRebuild()
	})
}

func TestFault_OutOfOrder(t *testing.T) {
	eachWorkers(t, func(t *testing.T, e *projtest.Env) {
		conv, member := faultScenario(e)
		// Member choices before the conversation exists; messages before the start.
		e.Deliver(member[1], conv[4], conv[1], member[0], conv[0], conv[6], conv[2], conv[5], conv[3])
		e.Run()
		e.Settle()
		checkFaultScenario(e)
		e.RequireSameAsRebuild()
	})
}

func TestFault_LostMessagesAppliedFromStore(t *testing.T) {
	eachWorkers(t, func(t *testing.T, e *projtest.Env) {
		conv, member := faultScenario(e)
		// JetStream lost everything but the first and last events of each stream: the readers
		// apply what the store holds.
		e.Deliver(conv[0], conv[6], member[1])
		e.Run()
		e.Settle()
		checkFaultScenario(e)
		e.RequireSameAsRebuild()
	})
}

// A projector that dies after its transaction committed but before the ack gets the message
// again; the checkpoint makes the second delivery a no-op.
func TestFault_KilledBetweenCommitAndAck(t *testing.T) {
	eachWorkers(t, func(t *testing.T, e *projtest.Env) {
		var mu sync.Mutex
		seen := map[string]bool{}
		projections.SetAfterCommit(e.Engine, func(p string, ev eventstore.RecordedEvent) error {
			mu.Lock()
			defer mu.Unlock()
			k := p + ev.EventID
			if seen[k] {
				return nil
			}
			seen[k] = true
			return errors.New("simulated crash before ack")
		})
		conv, member := faultScenario(e)
		e.Deliver(conv...)
		e.Deliver(member...)
		e.Run()
		e.Settle()
		checkFaultScenario(e)
		e.RequireSameAsRebuild()
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n == 0 {
			t.Fatal("the crash hook never ran")
		}
	})
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// Read models that have never applied anything over a store that has events (JetStream's
// retention no longer reaches back) are rebuilt from the store before consuming.
func TestBootstrap_EmptyReadModelsOverAnOldStore(t *testing.T) {
	t.Parallel()
	e := projtest.New(t)
	faultScenario(e) // in the store, never published
	e.Engine.Bootstrap = true
	e.Run()
	e.Settle()
	checkFaultScenario(e)
	e.RequireSameAsRebuild()
}

// The live feed gets each event once per user who can see it, whatever NATS delivers.
func TestLiveFeed_OncePerVisibleEvent(t *testing.T) {
	eachWorkers(t, func(t *testing.T, e *projtest.Env) {
		conv, member := faultScenario(e)
		e.Deliver(conv[3])
		e.Deliver(conv...)
		e.Deliver(member...)
		e.Run()
		e.Settle()
		rows, err := e.Pool.Query(e.Ctx, `SELECT kind, coalesce(body->>'id', '') FROM live_feed WHERE user_id = 'u3' ORDER BY seq`)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var kind, id string
			if err := rows.Scan(&kind, &id); err != nil {
				t.Fatal(err)
			}
			if kind == "message" {
				got = append(got, id)
			}
		}
		rows.Close()
		if len(got) != 5 || got[0] != "m1" || got[1] != "m2" || got[4] != "m4" {
			t.Errorf("u3's live messages: %v, want m1 m2 <left> <added> m4", got)
		}
		// Started, u3 left, u3 added back, muted, read: five summaries, plus one with each text
		// message (its last message and unread count changed), even with every conversation
		// event delivered twice.
		texts := e.Count(`SELECT count(*) FROM live_feed WHERE user_id = 'u2' AND kind = 'message' AND body->>'kind' = 'text'`)
		if texts != 4 {
			t.Errorf("u2 got %d text message entries, want 4", texts)
		}
		if n := e.Count(`SELECT count(*) FROM live_feed WHERE user_id = 'u2' AND kind = 'conversation'`); n != 5+texts {
			t.Errorf("u2 got %d conversation entries, want %d", n, 5+texts)
		}
	})
}

// eachWorkers runs a fault test with one NATS consumer per projection and with four (messages
// handled concurrently; they only wake the reader, catchup.go).
func eachWorkers(t *testing.T, test func(t *testing.T, e *projtest.Env)) {
	t.Parallel()
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			t.Parallel()
			e := projtest.New(t)
			e.Engine.Workers = workers
			test(t, e)
		})
	}
}
