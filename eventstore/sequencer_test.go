package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/eventstore"
)

func incrementCommand(id string) eventstore.Command[counter] {
	return eventstore.Command[counter]{ID: id, Decide: increment}
}

// hammer runs senders × each commands on stream through the sequencers (round robin, as
// instances would take requests) and returns every error.
func hammer(t *testing.T, seqs []*eventstore.Sequencer[counter], stream string, senders, each int) []error {
	t.Helper()
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := seqs[i%len(seqs)]
			for n := range each {
				_, err := q.Execute(context.Background(), stream, incrementCommand(fmt.Sprintf("%s-%d-%d", stream, i, n)))
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return errs
}

func TestSequencer_ConcurrentSendersNeverFailAndAreBatched(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	q := eventstore.NewSequencer(s, counterAgg, eventstore.SequencerOptions{})
	const senders, each = 32, 25
	if errs := hammer(t, []*eventstore.Sequencer[counter]{q}, "conversation-hot", senders, each); len(errs) > 0 {
		t.Fatalf("%d commands failed, first: %v", len(errs), errs[0])
	}
	st, v, err := eventstore.Load(context.Background(), s, "conversation-hot", counterAgg)
	if err != nil || st.N != senders*each || v != senders*each {
		t.Fatalf("stored %d events at version %d (%v), want %d", st.N, v, err, senders*each)
	}
	stats := q.Stats()
	if stats.Commands != senders*each || stats.Appends >= stats.Commands {
		t.Fatalf("stats %+v: every command appended once, and queued commands share appends", stats)
	}
	if res, err := s.Verify(context.Background(), "conversation-hot"); err != nil || res.FirstBadVersion != 0 {
		t.Fatalf("hash chain: %+v %v", res, err)
	}
	t.Logf("%d commands in %d appends", stats.Commands, stats.Appends)
}

func TestSequencer_TwoInstancesOnOneStreamNeverFail(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	a := eventstore.NewSequencer(s, counterAgg, eventstore.SequencerOptions{})
	b := eventstore.NewSequencer(s, counterAgg, eventstore.SequencerOptions{})
	const senders, each = 16, 20
	if errs := hammer(t, []*eventstore.Sequencer[counter]{a, b}, "conversation-shared", senders, each); len(errs) > 0 {
		t.Fatalf("%d commands failed, first: %v", len(errs), errs[0])
	}
	st, v, err := eventstore.Load(context.Background(), s, "conversation-shared", counterAgg)
	if err != nil || st.N != senders*each || v != senders*each {
		t.Fatalf("stored %d events at version %d (%v), want %d", st.N, v, err, senders*each)
	}
	// The counter's state lists the versions it saw: each exactly once, in order.
	for i, seen := range st.Seen {
		if seen != i+1 {
			t.Fatalf("version %d seen at place %d", seen, i+1)
		}
	}
	t.Logf("conflicts: a %d, b %d", a.Stats().Conflicts, b.Stats().Conflicts)
}

func TestSequencer_RepeatsAnswerWithTheFirstRun(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	q := eventstore.NewSequencer(s, counterAgg, eventstore.SequencerOptions{})
	ctx := context.Background()
	cmd := eventstore.Command[counter]{ID: "msg-client-1", MayRepeat: true, Decide: increment}
	first, err := q.Execute(ctx, "conversation-rep", cmd)
	if err != nil || first.Duplicate || first.LastVersion != 1 {
		t.Fatalf("first: %+v %v", first, err)
	}
	if _, err := q.Execute(ctx, "conversation-rep", incrementCommand("other")); err != nil {
		t.Fatal(err)
	}
	// A repeat after the stream moved on answers with the first run, from this sequencer and
	// from a new one (another instance, or after a restart).
	for _, seq := range []*eventstore.Sequencer[counter]{q, eventstore.NewSequencer(s, counterAgg, eventstore.SequencerOptions{})} {
		again, err := seq.Execute(ctx, "conversation-rep", cmd)
		if err != nil || !again.Duplicate || again.LastVersion != 1 || again.Events[0].EventID != first.Events[0].EventID {
			t.Fatalf("repeat: %+v %v", again, err)
		}
	}
	// The same command twice at once: one append, two identical answers.
	var wg sync.WaitGroup
	res := make([]eventstore.AppendResult, 8)
	errs := make([]error, 8)
	twin := eventstore.Command[counter]{ID: "msg-client-2", MayRepeat: true, Decide: increment}
	for i := range res {
		wg.Add(1)
		go func() { defer wg.Done(); res[i], errs[i] = q.Execute(ctx, "conversation-rep", twin) }()
	}
	wg.Wait()
	for i := range res {
		if errs[i] != nil || res[i].LastVersion != 3 || res[i].Events[0].EventID != res[0].Events[0].EventID {
			t.Fatalf("twin %d: %+v %v", i, res[i], errs[i])
		}
	}
	if v, _ := s.StreamVersion(ctx, "conversation-rep"); v != 3 {
		t.Fatalf("stream at version %d, want 3", v)
	}
}

func TestSequencer_RefusalIsCheckedAgainstAnotherInstancesWrites(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	q := eventstore.NewSequencer(s, counterAgg, eventstore.SequencerOptions{})
	if _, err := q.Execute(ctx, "conversation-stale", incrementCommand("c1")); err != nil {
		t.Fatal(err)
	}
	// Another instance appends behind this sequencer's back.
	mustAppend(t, s, "conversation-stale", 1, "c2", msg(2))
	refused := errors.New("needs two events first")
	needsTwo := func(c counter, _ int64) ([]eventstore.EventData, error) {
		if c.N < 2 {
			return nil, refused
		}
		return increment(c, 0)
	}
	res, err := q.Execute(ctx, "conversation-stale", eventstore.Command[counter]{ID: "c3", Decide: needsTwo})
	if err != nil || res.LastVersion != 3 {
		t.Fatalf("a refusal on a stale state must be re-decided on the store's: %+v %v", res, err)
	}
	// A refusal that holds on the current state stays a refusal, unwrapped.
	never := func(counter, int64) ([]eventstore.EventData, error) { return nil, refused }
	if _, err := q.Execute(ctx, "conversation-stale", eventstore.Command[counter]{ID: "c4", Decide: never}); !errors.Is(err, refused) {
		t.Fatalf("refusal: %v", err)
	}
	noop, err := q.Execute(ctx, "conversation-stale", eventstore.Command[counter]{ID: "c5", Decide: func(counter, int64) ([]eventstore.EventData, error) { return nil, nil }})
	if err != nil || noop.LastVersion != 3 || noop.FirstVersion != 4 || len(noop.Events) != 0 {
		t.Fatalf("no-op: %+v %v", noop, err)
	}
}

func TestSequencer_BusyWhenTheDeadlinePassesOrTheQueueIsFull(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	q := eventstore.NewSequencer(s, counterAgg, eventstore.SequencerOptions{MaxQueue: 1})
	release := make(chan struct{})
	started := make(chan struct{})
	slow := func(c counter, v int64) ([]eventstore.EventData, error) {
		close(started)
		<-release
		return increment(c, v)
	}
	go func() {
		_, _ = q.Execute(context.Background(), "conversation-full", eventstore.Command[counter]{ID: "slow", Decide: slow})
	}()
	<-started
	// The stream is deciding "slow"; one more command may wait, the next one may not.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := q.Execute(ctx, "conversation-full", incrementCommand("waits")); !errors.Is(err, eventstore.ErrBusy) {
		t.Fatalf("deadline passed while queued: %v, want ErrBusy", err)
	}
	// "waits" gave up but keeps its place until the stream gets to it: the queue is full.
	if _, err := q.Execute(context.Background(), "conversation-full", incrementCommand("overflow")); !errors.Is(err, eventstore.ErrBusy) {
		t.Fatalf("full queue: %v, want ErrBusy at once", err)
	}
	close(release)
	var res eventstore.AppendResult
	var err error
	for range 1000 { // until the stream has dropped "waits" and made room
		if res, err = q.Execute(context.Background(), "conversation-full", incrementCommand("after")); !errors.Is(err, eventstore.ErrBusy) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err != nil || res.LastVersion != 2 {
		t.Fatalf("after the queue drained: %+v %v (want slow and this one, nothing of the two that gave up)", res, err)
	}
	canceled, stop := context.WithCancel(context.Background())
	stop()
	if _, err := q.Execute(canceled, "conversation-full", incrementCommand("gone")); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled caller: %v", err)
	}
}

func TestSequencer_KeepsAtMostMaxStreamsIdle(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	q := eventstore.NewSequencer(s, counterAgg, eventstore.SequencerOptions{MaxStreams: 3})
	ctx := context.Background()
	for i := range 10 {
		stream := fmt.Sprintf("conversation-lru-%d", i)
		if _, err := q.Execute(ctx, stream, incrementCommand(stream)); err != nil {
			t.Fatal(err)
		}
	}
	if n := q.Stats().Streams; n > 4 {
		t.Fatalf("%d streams in memory, want at most MaxStreams (3) plus the one just used", n)
	}
	// An evicted stream is loaded again when needed.
	res, err := q.Execute(ctx, "conversation-lru-0", incrementCommand("again"))
	if err != nil || res.LastVersion != 2 {
		t.Fatalf("evicted stream: %+v %v", res, err)
	}
}

func TestSequencer_APanickingDecisionFailsItsBatchNotTheProcess(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	q := eventstore.NewSequencer(s, counterAgg, eventstore.SequencerOptions{})
	ctx := context.Background()
	boom := func(counter, int64) ([]eventstore.EventData, error) { panic("bug in a rule") }
	if _, err := q.Execute(ctx, "conversation-panic", eventstore.Command[counter]{ID: "p", Decide: boom}); err == nil {
		t.Fatal("a panicking decision must fail its command")
	}
	if res, err := q.Execute(ctx, "conversation-panic", incrementCommand("after")); err != nil || res.LastVersion != 1 {
		t.Fatalf("the stream must go on after a panic: %+v %v", res, err)
	}
}
