package commands

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/blobs"
)

// Options tune a Handler. Zero values get defaults.
type Options struct {
	// MaxFileBytes bounds an uploaded file (default 25 MiB).
	MaxFileBytes int64
	// Now is the clock (default time.Now) for time-based decisions; the domain never reads the
	// clock itself. No command needs it today: a message's sent_at is the store's recorded_at.
	Now func() time.Time
	// NewID mints ids for groups, files and commands (default: random UUIDs).
	NewID func() string
	// Log receives what a command cannot report to its caller (default slog.Default()).
	Log *slog.Logger
	// Timeout is the deadline of a command whose context has none (default 10 s): conflicts
	// with other instances are retried until then, and then answered busy.
	Timeout time.Duration
	// HotConversations is how many idle conversations' states stay in memory (default 10,000).
	HotConversations int
}

// Handler runs every command of API.md.
type Handler struct {
	store *eventstore.Store
	blobs *blobs.Store
	opts  Options
	// conversations sequences each conversation's commands on this instance (ADR 0010).
	conversations *eventstore.Sequencer[domain.Conversation]
	directories   *directoryCache
}

// New returns a Handler appending to store and keeping file bytes in bs.
func New(store *eventstore.Store, bs *blobs.Store, opts Options) *Handler {
	if opts.MaxFileBytes <= 0 {
		opts.MaxFileBytes = 25 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.NewID == nil {
		opts.NewID = uuid.NewString
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	return &Handler{store: store, blobs: bs, opts: opts,
		conversations: eventstore.NewSequencer(store, conversationAggregate,
			eventstore.SequencerOptions{MaxStreams: opts.HotConversations, Timeout: opts.Timeout}),
		directories: newDirectoryCache(store, DirectoryMaxAge),
	}
}

// Stats reports the conversation sequencer's work (for metrics and benchmarks).
func (h *Handler) Stats() eventstore.SequencerStats { return h.conversations.Stats() }

// busy turns "not before the deadline" into the domain's busy error (503 with Retry-After):
// a conflict that outlasted the command's deadline, a full queue, or a store call cut short
// by the deadline. Other errors pass unchanged.
func busy(err error) error {
	if err == nil || domain.ErrorCode(err) != "" {
		return err
	}
	if errors.Is(err, eventstore.ErrBusy) || errors.Is(err, context.DeadlineExceeded) {
		return &domain.Error{Code: domain.CodeBusy, Message: "the conversation is busy; retry shortly"}
	}
	return err
}

// Actor is who runs a command: the authenticated user, their clinic, and the request id that
// correlates every event the request causes.
type Actor struct {
	UserID        string
	ClinicID      string
	CorrelationID string
}

// Position names the last event a command appended (or, when it changed nothing, the current
// end of the stream it looked at): the API turns it into the Huddle-Position header.
type Position struct {
	StreamID string
	Version  int64
	// At is that event's place in the store's gap-safe order (zero when the command appended
	// nothing): a read that waits for every projection to pass it sees all of the caller's
	// earlier writes, whatever their streams (ADR 0008).
	At eventstore.Checkpoint
}

func positionOf(res eventstore.AppendResult, fallback Position) Position {
	if res.LastVersion < 1 {
		return fallback
	}
	pos := Position{StreamID: res.StreamID, Version: res.LastVersion}
	if n := len(res.Events); n > 0 {
		pos.At = eventstore.CheckpointOf(res.Events[n-1])
	}
	return pos
}

// Aggregates: how each decider's state is rebuilt from its stream. Snapshot versions must be
// bumped whenever the state's JSON shape or the meaning of its Evolve changes.
var (
	directoryAggregate = eventstore.Aggregate[domain.Directory]{
		Initial: domain.NewDirectory,
		Evolve: func(d domain.Directory, e eventstore.RecordedEvent) (domain.Directory, error) {
			ev, ok, err := decode(e)
			if err != nil || !ok {
				return d, err
			}
			return domain.EvolveDirectory(d, ev), nil
		},
		SnapshotVersion: 1,
	}
	conversationAggregate = eventstore.Aggregate[domain.Conversation]{
		Initial: func() domain.Conversation { return domain.Conversation{} },
		Evolve: func(c domain.Conversation, e eventstore.RecordedEvent) (domain.Conversation, error) {
			ev, ok, err := decode(e)
			if err != nil {
				return c, err
			}
			if !ok {
				c.Version = e.StreamVersion
				return c, nil
			}
			c = domain.EvolveConversation(c, e.StreamVersion, ev)
			if _, started := ev.(domain.ConversationStarted); started {
				c.ClinicID = e.Metadata.ClinicID
			}
			return c, nil
		},
		// 2: the Files map left the state (blobs record their FileShared version, ADR 0009).
		// 3: Urgent and Recalled joined it (urgent messages, edits and recalls).
		SnapshotVersion: 3,
	}
	memberAggregate = eventstore.Aggregate[domain.Member]{
		Initial: func() domain.Member { return domain.Member{Conversations: map[string]domain.MemberConversation{}} },
		Evolve: func(m domain.Member, e eventstore.RecordedEvent) (domain.Member, error) {
			ev, ok, err := decode(e)
			if err != nil || !ok {
				return m, err
			}
			return domain.EvolveMember(m, ev), nil
		},
		SnapshotVersion: 1,
	}
)

// decode turns a recorded event into a domain event. ok is false for a type this version of
// the domain does not know (a newer writer's event): it is skipped rather than failing every
// command on the stream.
func decode(e eventstore.RecordedEvent) (domain.Event, bool, error) {
	ev, err := domain.Decode(e.Type, e.Data)
	if err != nil {
		if !domain.KnownEventType(e.Type) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("%s@%d: %w", e.StreamID, e.StreamVersion, err)
	}
	return ev, true, nil
}

// encode wraps domain events for the store with the metadata every event carries.
func (h *Handler) encode(a Actor, commandID string, events []domain.Event) ([]eventstore.EventData, error) {
	out := make([]eventstore.EventData, 0, len(events))
	for _, e := range events {
		typ, data, err := domain.Encode(e)
		if err != nil {
			return nil, err
		}
		out = append(out, eventstore.EventData{Type: typ, Data: data, Metadata: eventstore.Metadata{
			ActorID: a.UserID, ClinicID: a.ClinicID, CorrelationID: a.CorrelationID,
			// The command is what caused these events.
			CausationID: commandID, CommandID: commandID,
		}})
	}
	return out, nil
}

// deterministicID derives a command id from its parts, so a retried request names the same
// command and the store answers it with the first run's result.
func deterministicID(kind string, parts ...string) string {
	h := sha256.New()
	h.Write([]byte(kind))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return kind + "-" + hex.EncodeToString(h.Sum(nil)[:16])
}

func notFound() error {
	return &domain.Error{Code: domain.CodeNotFound, Message: "no such conversation"}
}

// loadDirectory returns the clinic's directory from memory (at most DirectoryMaxAge old).
// It must not be changed.
func (h *Handler) loadDirectory(ctx context.Context, clinicID string) (domain.Directory, error) {
	return h.directories.Get(ctx, clinicID)
}

// ActiveStaff reports whether userID is an active user of clinicID's directory (as of at
// most DirectoryMaxAge ago): staff tokens of anyone else are refused (unknown_user).
func (h *Handler) ActiveStaff(ctx context.Context, clinicID, userID string) (bool, error) {
	d, err := h.loadDirectory(ctx, clinicID)
	if err != nil {
		return false, busy(err)
	}
	return d.IsActive(userID), nil
}

// loadConversation returns a conversation of the actor's clinic as this instance last saw it
// (see Sequencer.State); fresh reads it from the store, for a caller about to refuse on it. A
// conversation of another clinic does not exist as far as the caller can tell.
func (h *Handler) loadConversation(ctx context.Context, a Actor, id string, fresh bool) (domain.Conversation, error) {
	if !domain.ValidID(id) {
		return domain.Conversation{}, notFound()
	}
	stream := domain.ConversationStream(id)
	var c domain.Conversation
	var err error
	if fresh {
		c, _, err = eventstore.Load(ctx, h.store, stream, conversationAggregate)
	} else {
		c, _, err = h.conversations.State(ctx, stream)
	}
	if err != nil {
		return c, fmt.Errorf("load conversation: %w", busy(err))
	}
	if !inClinic(c, a) {
		return domain.Conversation{}, notFound()
	}
	return c, nil
}

func inClinic(c domain.Conversation, a Actor) bool {
	return !c.Started() || c.ClinicID == a.ClinicID
}

// check runs rule on the conversation as this instance last saw it and, if the rule refuses,
// once more on the store's current state: another instance may have changed what it depends
// on (added the caller, say), and a refusal must not rest on a stale state.
func (h *Handler) check(ctx context.Context, a Actor, id string, rule func(domain.Conversation) error) error {
	conv, err := h.loadConversation(ctx, a, id, false)
	if err == nil {
		if err = rule(conv); err == nil {
			return nil
		}
	}
	if domain.ErrorCode(err) == "" {
		return err
	}
	if conv, err = h.loadConversation(ctx, a, id, true); err != nil {
		return err
	}
	return rule(conv)
}
