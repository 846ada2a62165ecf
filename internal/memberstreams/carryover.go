// Package memberstreams carries a store written before ADR 0013 over to clinic-scoped member
// streams. Before it, one user's choices (mute, archive, read marker) went to member-<user>,
// which users of the same id in different clinics shared. Now they go to
// member-<clinic>.<user> (domain.MemberStream).
//
// A stored event cannot move to another stream: its hash covers the stream id, so rewriting it
// would break the chain that makes tampering visible. The legacy streams therefore stay as
// they are, verifiable history (read models go on applying their events). For each legacy
// stream and each clinic whose events it holds, CarryOver appends one
// MemberStreamCarriedOver event as the first event of member-<clinic>.<user>: the state folded
// from that clinic's legacy events only, with the legacy stream's version and head hash, so the
// new chain is anchored to the old one. Commands then load the clinic-scoped stream alone.
package memberstreams

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
)

// ActorID is the actor recorded on carry-over events: the store upgrade, not a person.
const ActorID = "huddle:adr-0013"

// doneVersion records in schema_migrations that the carry-over ran to the end. It is negative
// so that it can never be an embedded SQL migration's number.
const doneVersion = -13

// Report says what one CarryOver did.
type Report struct {
	LegacyStreams int // legacy member streams found
	CarriedOver   int // clinic-scoped streams started with a MemberStreamCarriedOver
	AlreadyDone   bool
}

// CarryOver starts every clinic-scoped member stream from its legacy stream, once. Several
// instances may run it at once: each carry-over's command id makes it append once, and the
// finish is recorded in schema_migrations, so later starts only look that up. Run it before
// serving commands, with every older instance stopped (they would still write legacy streams).
func CarryOver(ctx context.Context, store *eventstore.Store) (Report, error) {
	pool := store.Pool()
	var rep Report
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, doneVersion).Scan(&rep.AlreadyDone); err != nil {
		return rep, fmt.Errorf("member streams: %w", err)
	}
	if rep.AlreadyDone {
		return rep, nil
	}
	// Legacy: a member event not in its clinic's member-<clinic>.<user> (domain.IsLegacyMemberStream).
	rows, err := pool.Query(ctx, `SELECT DISTINCT stream_id FROM events
		WHERE stream_id LIKE 'member-%' AND NOT starts_with(stream_id, 'member-' || (metadata->>'clinic_id') || '.')
		ORDER BY stream_id`)
	if err != nil {
		return rep, fmt.Errorf("member streams: list legacy streams: %w", err)
	}
	legacy, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return rep, fmt.Errorf("member streams: list legacy streams: %w", err)
	}
	for _, stream := range legacy {
		rep.LegacyStreams++
		n, err := carryOverStream(ctx, store, stream)
		if err != nil {
			return rep, err
		}
		rep.CarriedOver += n
	}
	if _, err := pool.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
		doneVersion, "member streams scoped by clinic (Go step, ADR 0013)"); err != nil {
		return rep, fmt.Errorf("member streams: record the carry-over: %w", err)
	}
	return rep, nil
}

// clinicState is one clinic's share of a legacy stream.
type clinicState struct {
	member domain.Member
	events int
}

// carryOverStream folds one legacy stream per clinic and appends each clinic's carry-over.
func carryOverStream(ctx context.Context, store *eventstore.Store, stream string) (int, error) {
	const page = 1000
	byClinic := map[string]*clinicState{}
	var clinics []string
	var head eventstore.RecordedEvent
	for from := int64(1); ; {
		evs, err := store.ReadStream(ctx, stream, from, page)
		if err != nil {
			return 0, fmt.Errorf("member streams: read %s: %w", stream, err)
		}
		for _, e := range evs {
			head = e
			clinic := e.Metadata.ClinicID
			if !domain.IsLegacyMemberStream(stream, clinic) {
				continue // already its clinic's own stream (a user id with '.' from before the alphabet)
			}
			st, ok := byClinic[clinic]
			if !ok {
				st = &clinicState{member: domain.Member{Conversations: map[string]domain.MemberConversation{}}}
				byClinic[clinic] = st
				clinics = append(clinics, clinic)
			}
			st.events++
			ev, err := domain.Decode(e.Type, e.Data)
			if err != nil {
				return 0, fmt.Errorf("member streams: %s version %d: %w", stream, e.StreamVersion, err)
			}
			st.member = domain.EvolveMember(st.member, ev)
		}
		if len(evs) < page {
			break
		}
		from = evs[len(evs)-1].StreamVersion + 1
	}
	carried := 0
	for _, clinic := range clinics {
		if clinic == "" {
			return carried, fmt.Errorf("member streams: %s holds an event without a clinic", stream)
		}
		user := domain.MemberStreamUser(stream, clinic)
		st := byClinic[clinic]
		ev := domain.MemberStreamCarriedOver{FromStream: stream, FromVersion: head.StreamVersion, FromHash: head.Hash,
			Events: st.events, Conversations: st.member.Conversations}
		typ, data, err := domain.Encode(ev)
		if err != nil {
			return carried, err
		}
		commandID := "carry-over:" + stream + ":" + clinic
		res, err := store.Append(ctx, domain.MemberStream(clinic, user), eventstore.ExpectAny, []eventstore.EventData{{
			Type: typ, Data: json.RawMessage(data),
			Metadata: eventstore.Metadata{ActorID: ActorID, ClinicID: clinic, CorrelationID: "adr-0013", CommandID: commandID},
		}}, commandID)
		if err != nil {
			return carried, fmt.Errorf("member streams: carry %s over for clinic %s: %w", stream, clinic, err)
		}
		if !res.Duplicate {
			carried++
		}
	}
	return carried, nil
}
