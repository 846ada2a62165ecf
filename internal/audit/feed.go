package audit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/natsbroker"
)

// Verifying the store against the feed.
//
// A stream's hash chain shows any change to its events, and a missing version in the middle,
// but not the removal of its newest events: what is left is still a valid chain. Every event
// the relay published, though, is also in the HUDDLE_EVENTS JetStream stream (for its
// retention) with its hash in a header, and integrators keep their own copies. VerifyFeed
// reads that stream and checks that each published event is still in the store, under the
// same id and with the same hash.

// FeedMismatch is a published event the store no longer holds as it was published.
type FeedMismatch struct {
	Seq           uint64 // JetStream stream sequence
	StreamID      string
	StreamVersion int64
	EventID       string
	Hash          string // as published
	Reason        string // "missing from the store", or what differs
}

// FeedReport is the outcome of VerifyFeed.
type FeedReport struct {
	// FirstSeq and LastSeq bound the JetStream sequences read (retention drops older ones).
	FirstSeq, LastSeq uint64
	// Checked counts the published events compared with the store.
	Checked int
	// Bad lists the mismatches in feed order.
	Bad []FeedMismatch
}

// OK reports whether every published event is in the store as published.
func (r FeedReport) OK() bool { return len(r.Bad) == 0 }

const feedBatch = 500

// VerifyFeed compares every message in the HUDDLE_EVENTS stream with the store (q: a pool or a
// connection). progress, when not nil, is called after each batch with the sequence reached
// and the last one.
func VerifyFeed(ctx context.Context, q eventstore.Querier, nc *nats.Conn, progress func(seq, last uint64)) (FeedReport, error) {
	js, err := nc.JetStream()
	if err != nil {
		return FeedReport{}, fmt.Errorf("verify feed: %w", err)
	}
	info, err := js.StreamInfo(natsbroker.StreamName, nats.Context(ctx))
	if err != nil {
		return FeedReport{}, fmt.Errorf("verify feed: stream %s: %w", natsbroker.StreamName, err)
	}
	rep := FeedReport{FirstSeq: info.State.FirstSeq, LastSeq: info.State.LastSeq}
	if info.State.Msgs == 0 {
		return rep, nil
	}
	sub, err := js.SubscribeSync(eventstore.SubjectPrefix+">", nats.OrderedConsumer(),
		nats.BindStream(natsbroker.StreamName), nats.DeliverAll())
	if err != nil {
		return rep, fmt.Errorf("verify feed: subscribe: %w", err)
	}
	defer sub.Unsubscribe() //nolint:errcheck // an ordered consumer is ephemeral

	var batch []FeedMismatch // candidates: what was published, checked against the store
	check := func() error {
		if len(batch) == 0 {
			return nil
		}
		refs := make([]eventstore.StreamVersionRef, len(batch))
		for i, b := range batch {
			refs[i] = eventstore.StreamVersionRef{StreamID: b.StreamID, Version: b.StreamVersion}
		}
		stored, err := eventstore.LookupIn(ctx, q, refs)
		if err != nil {
			return fmt.Errorf("verify feed: %w", err)
		}
		for i, st := range stored {
			b := batch[i]
			switch {
			case !st.Found:
				b.Reason = "missing from the store"
			case st.EventID != b.EventID:
				b.Reason = "the store holds another event (" + st.EventID + ") at this version"
			case st.Hash != b.Hash:
				b.Reason = "the store's hash differs from the published one"
			default:
				continue
			}
			rep.Bad = append(rep.Bad, b)
		}
		rep.Checked += len(batch)
		if progress != nil {
			progress(batch[len(batch)-1].Seq, rep.LastSeq)
		}
		batch = batch[:0]
		return nil
	}
	for {
		// Bounded: a stream read to its end has nothing more once retention removed its tail.
		next, cancel := context.WithTimeout(ctx, 5*time.Second)
		m, err := sub.NextMsgWithContext(next)
		cancel()
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				// Nothing more within a few seconds: the rest was removed by retention
				// since StreamInfo, or never comes. Check what we have.
				break
			}
			return rep, fmt.Errorf("verify feed: read: %w", err)
		}
		meta, err := m.Metadata()
		if err != nil {
			return rep, fmt.Errorf("verify feed: message metadata: %w", err)
		}
		version, _ := strconv.ParseInt(m.Header.Get(eventstore.HeaderStreamVersion), 10, 64)
		batch = append(batch, FeedMismatch{
			Seq:           meta.Sequence.Stream,
			StreamID:      m.Header.Get(eventstore.HeaderStreamID),
			StreamVersion: version,
			EventID:       m.Header.Get(eventstore.HeaderID),
			Hash:          m.Header.Get(eventstore.HeaderHash),
		})
		if len(batch) == feedBatch || meta.Sequence.Stream >= rep.LastSeq {
			if err := check(); err != nil {
				return rep, err
			}
		}
		if meta.Sequence.Stream >= rep.LastSeq {
			break
		}
	}
	return rep, check()
}
