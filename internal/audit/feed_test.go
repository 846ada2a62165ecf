package audit_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/audit"
	"github.com/huddle-chat/huddle/internal/natsbroker"
	"github.com/huddle-chat/huddle/internal/testenv"
)

// Removing a stream's newest events leaves a valid hash chain; the feed still has them.
func TestVerifyFeed_FindsEventsRemovedFromTheStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := newWorld(t)
	w.seedDirectory(t, "ann", "bob")
	conv := must[string](t)(func() (string, error) {
		c, err := w.cmds.StartConversation(ctx, actor("ann"), []string{"bob"}, nil)
		return c.ID, err
	}())
	for _, text := range []string{"one", "two", "three"} {
		if _, err := w.cmds.SendMessage(ctx, actor("ann"), conv, text, ""); err != nil {
			t.Fatal(err)
		}
	}

	// Publish the whole store as the relay does.
	broker := testenv.NATS(t)
	pub, err := natsbroker.NewPublisher(broker.ClientURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	// ReadAll holds back events while any older transaction runs anywhere in the cluster
	// (other tests' databases share it): read until it has every stored event.
	var stored int
	if err := w.store.Pool().QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	var all []eventstore.RecordedEvent
	for deadline := time.Now().Add(30 * time.Second); len(all) < stored; {
		page, err := w.store.ReadAll(ctx, eventstore.Checkpoint{}, 10000)
		if err != nil {
			t.Fatal(err)
		}
		if all = page; len(all) < stored {
			if time.Now().After(deadline) {
				t.Fatalf("ReadAll returned %d of %d events for 30 s", len(all), stored)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, e := range all {
		if err := pub.Publish(eventstore.Subject(e), eventstore.ToMessage(e)); err != nil {
			t.Fatal(err)
		}
	}
	nc, err := nats.Connect(broker.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	rep, err := audit.VerifyFeed(ctx, w.store.Pool(), nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || stored < 5 || rep.Checked != stored || rep.LastSeq != uint64(stored) {
		t.Fatalf("untouched store: %+v, want all %d events found", rep, len(all))
	}

	// Someone with the database's owner rights removes the chat's last message, past the
	// append-only triggers; the chain of what is left still verifies.
	stream := domain.ConversationStream(conv)
	tx, err := w.store.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`SET LOCAL session_replication_role = replica`,
		`DELETE FROM events WHERE stream_id = '` + stream + `' AND stream_version = (SELECT max(stream_version) FROM events WHERE stream_id = '` + stream + `')`} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if r, err := w.store.Verify(ctx, stream); err != nil || !r.OK {
		t.Fatalf("the shortened chain should still verify on its own: %+v %v", r, err)
	}

	rep, err = audit.VerifyFeed(ctx, w.store.Pool(), nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.Bad) != 1 {
		t.Fatalf("after removing the last message: %+v, want exactly it reported", rep)
	}
	bad := rep.Bad[0]
	if bad.StreamID != stream || bad.StreamVersion != 4 || !strings.Contains(bad.Reason, "missing") {
		t.Fatalf("reported %+v, want %s@4 missing", bad, stream)
	}
}
