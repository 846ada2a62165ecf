package eventstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/eventstore"
)

func TestAppend_AssignsVersionsAndChainsHashes(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	res := mustAppend(t, s, "conversation-a", eventstore.ExpectNoStream, "", msg(1), msg(2))
	if res.FirstVersion != 1 || res.LastVersion != 2 || res.Duplicate || len(res.Events) != 2 {
		t.Fatalf("first append: %+v", res)
	}
	if res.Events[0].PrevHash != "" || res.Events[1].PrevHash != res.Events[0].Hash || len(res.Events[1].Hash) != 64 {
		t.Fatalf("hash chain: %+v", res.Events)
	}
	res2 := mustAppend(t, s, "conversation-a", 2, "", msg(3))
	if res2.FirstVersion != 3 || res2.Events[0].PrevHash != res.Events[1].Hash {
		t.Fatalf("second append: %+v", res2)
	}
	got, err := s.ReadStream(ctx, "conversation-a", 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].StreamVersion != 2 || got[1].EventID != res2.Events[0].EventID {
		t.Fatalf("read stream from 2: %+v", got)
	}
	if got[1].Metadata.ClinicID != "c1" || !got[1].RecordedAt.Equal(res2.Events[0].RecordedAt) {
		t.Fatalf("read back: %+v vs %+v", got[1], res2.Events[0])
	}
	if v, err := s.StreamVersion(ctx, "conversation-a"); err != nil || v != 3 {
		t.Fatalf("stream version = %d, %v", v, err)
	}
	if v, err := s.StreamVersion(ctx, "conversation-none"); err != nil || v != 0 {
		t.Fatalf("absent stream version = %d, %v", v, err)
	}
}

func TestAppend_RejectsWrongExpectedVersion(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	mustAppend(t, s, "member-u1", eventstore.ExpectNoStream, "", msg(1))

	for _, expected := range []int64{eventstore.ExpectNoStream, 5} {
		_, err := s.Append(ctx, "member-u1", expected, []eventstore.EventData{msg(2)}, "")
		var wrong *eventstore.ErrWrongExpectedVersion
		if !errors.As(err, &wrong) || !errors.Is(err, eventstore.ErrConflict) {
			t.Fatalf("expected %d: err = %v, want *ErrWrongExpectedVersion", expected, err)
		}
		if wrong.ActualVersion != 1 || wrong.ExpectedVersion != expected || wrong.StreamID != "member-u1" {
			t.Fatalf("conflict detail: %+v", wrong)
		}
	}
	if v, _ := s.StreamVersion(ctx, "member-u1"); v != 1 {
		t.Fatalf("a rejected append wrote: version %d", v)
	}
	if res := mustAppend(t, s, "member-u1", eventstore.ExpectAny, "", msg(3)); res.FirstVersion != 2 {
		t.Fatalf("ExpectAny: %+v", res)
	}
	if _, err := s.Append(ctx, "member-u1", eventstore.ExpectAny, nil, ""); !errors.Is(err, eventstore.ErrNoEvents) {
		t.Fatalf("empty append: %v", err)
	}
}

func TestAppend_NotifiesListenersAfterCommit(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	conn, err := s.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+eventstore.NotifyChannel); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "conversation-n", eventstore.ExpectNoStream, "", msg(1), msg(2))
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	n, err := conn.Conn().WaitForNotification(wctx)
	if err != nil {
		t.Fatalf("no notification after an append: %v", err)
	}
	if n.Payload != "conversation-n:2" {
		t.Fatalf("payload %q", n.Payload)
	}
	if _, err := conn.Exec(ctx, "UNLISTEN *"); err != nil {
		t.Fatal(err)
	}
}
