package blobs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/migrations"
	"github.com/huddle-chat/huddle/internal/testenv"
)

// share appends to the conversation's stream a text message and then the FileShared event
// naming fileID, as clinic, and returns the FileShared event's version (2 on a new stream,
// so a sweep that marks version 1 is caught).
func share(t *testing.T, pool *pgxpool.Pool, clinic, conversationID, fileID string) int64 {
	t.Helper()
	var events []eventstore.EventData
	for _, e := range []domain.Event{
		domain.MessageSent{MessageID: "m-1", SenderID: "ann", Text: "here it comes"},
		domain.FileShared{MessageID: "m-2", SenderID: "ann", FileID: fileID, Name: "x.txt", Size: 5,
			ContentType: "text/plain; charset=utf-8", SHA256: strings.Repeat("0", 64)},
	} {
		typ, data, err := domain.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, eventstore.EventData{Type: typ, Data: data,
			Metadata: eventstore.Metadata{ActorID: "ann", ClinicID: clinic}})
	}
	res, err := eventstore.New(pool).Append(context.Background(), domain.ConversationStream(conversationID),
		eventstore.ExpectAny, events, "")
	if err != nil {
		t.Fatal(err)
	}
	return res.LastVersion
}

// completedAgo makes a blob's upload look completed d ago.
func completedAgo(t *testing.T, pool *pgxpool.Pool, id string, d time.Duration) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), `UPDATE blobs SET completed_at = now() - $2 * interval '1 second' WHERE id = $1`,
		id, int64(d/time.Second)); err != nil {
		t.Fatal(err)
	}
}

func exists(t *testing.T, pool *pgxpool.Pool, id string) bool {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM blobs WHERE id = $1`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func TestSweepUnshared_DeletesOldOrphansKeepsYoungAndShared(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t)
	s := New(pool)
	ctx := context.Background()
	for _, id := range []string{"orphan", "young", "marked", "unmarked"} {
		if _, err := s.Put(ctx, upload(id, 0), strings.NewReader(id)); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"orphan", "marked", "unmarked"} {
		completedAgo(t, pool, id, 2*time.Hour)
	}
	if err := s.MarkShared(ctx, "c1", "marked", 7); err != nil {
		t.Fatal(err)
	}
	// "unmarked" was shared but the process stopped before marking it.
	version := share(t, pool, "c1", "g-1", "unmarked")

	swept, err := s.SweepUnshared(ctx, time.Now().Add(-time.Hour))
	if err != nil || swept != (Swept{Marked: 1, Deleted: 1}) {
		t.Fatalf("swept %+v, %v", swept, err)
	}
	if exists(t, pool, "orphan") {
		t.Fatal("an hour-old blob no message names must be deleted")
	}
	var chunks int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM blob_chunks WHERE blob_id = 'orphan'`).Scan(&chunks); err != nil || chunks != 0 {
		t.Fatalf("%d chunks of the orphan left, %v", chunks, err)
	}
	if !exists(t, pool, "young") {
		t.Fatal("a blob inside the grace period (its append may be in flight) must be kept")
	}
	info, err := s.Stat(ctx, "c1", "unmarked")
	if err != nil || info.SharedVersion != version {
		t.Fatalf("a blob whose FileShared event exists is marked with its version %d: %+v %v", version, info, err)
	}
	if info, err := s.Stat(ctx, "c1", "marked"); err != nil || info.SharedVersion != 7 {
		t.Fatalf("a marked blob is left alone: %+v %v", info, err)
	}
	if again, err := s.SweepUnshared(ctx, time.Now().Add(-time.Hour)); err != nil || again != (Swept{}) {
		t.Fatalf("a second sweep has nothing to do: %+v %v", again, err)
	}
}

func TestSweepUnshared_EventMustBeInTheBlobsConversationAndClinic(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t)
	s := New(pool)
	ctx := context.Background()
	if _, err := s.Put(ctx, upload("f1", 0), strings.NewReader("data")); err != nil {
		t.Fatal(err)
	}
	share(t, pool, "c1", "g-other", "f1") // another conversation
	share(t, pool, "c2", "g-1", "f1")     // the blob's conversation id, another clinic's event
	swept, err := s.SweepUnshared(ctx, time.Now().Add(time.Hour))
	if err != nil || swept != (Swept{Deleted: 1}) || exists(t, pool, "f1") {
		t.Fatalf("swept %+v, %v", swept, err)
	}
}

// More candidates than one batch, all completed in the same instant: paging by
// (completed_at, id) must visit each once and miss none.
func TestSweepUnshared_PagesThroughMoreThanABatch(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t)
	s := New(pool)
	ctx := context.Background()
	n := 2*sweepBatch + 17
	if _, err := pool.Exec(ctx, `INSERT INTO blobs (id, clinic_id, conversation_id, uploader_id, name, complete, completed_at)
		SELECT 'b' || i, 'c1', 'g-' || i, 'ann', 'x', true, now() - interval '2 hours' FROM generate_series(1, $1) i`, n); err != nil {
		t.Fatal(err)
	}
	shared := []string{"b1", "b150", "b217"}
	for _, id := range shared {
		share(t, pool, "c1", "g-"+strings.TrimPrefix(id, "b"), id)
	}
	swept, err := s.SweepUnshared(ctx, time.Now().Add(-time.Hour))
	if err != nil || swept != (Swept{Marked: int64(len(shared)), Deleted: int64(n - len(shared))}) {
		t.Fatalf("swept %+v, %v", swept, err)
	}
	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM blobs WHERE shared_version = 2`).Scan(&left); err != nil || left != len(shared) {
		t.Fatalf("%d marked blobs left, %v", left, err)
	}
}

func TestConfirm_FindsAndMarksTheEventOrAnswersZero(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t)
	s := New(pool)
	ctx := context.Background()
	for _, id := range []string{"shared", "orphan"} {
		if _, err := s.Put(ctx, upload(id, 0), strings.NewReader(id)); err != nil {
			t.Fatal(err)
		}
	}
	version := share(t, pool, "c1", "g-1", "shared")
	info, err := s.Stat(ctx, "c1", "shared")
	if err != nil || info.SharedVersion != 0 {
		t.Fatalf("not marked yet: %+v %v", info, err)
	}
	if got, err := s.Confirm(ctx, info); err != nil || got != version {
		t.Fatalf("Confirm: %d, %v; want %d", got, err, version)
	}
	if info, err := s.Stat(ctx, "c1", "shared"); err != nil || info.SharedVersion != version {
		t.Fatalf("Confirm marks what it found: %+v %v", info, err)
	}
	orphan, err := s.Stat(ctx, "c1", "orphan")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Confirm(ctx, orphan); err != nil || got != 0 {
		t.Fatalf("no event names the orphan: %d, %v", got, err)
	}
	if err := s.MarkShared(ctx, "c2", "shared", 9); domain.ErrorCode(err) != domain.CodeNotFound {
		t.Fatalf("marking another clinic's blob: want not_found, got %v", err)
	}
}

// Blobs stored before the lifecycle migration have no completion time and no mark: the
// migration gives complete ones their upload start as completion, and one sweep settles them.
func TestBlobLifecycleMigration_SettlesBlobsFromBefore(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Postgres(t)
	ctx := context.Background()
	var lifecycle migrations.Migration
	all, err := migrations.All()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		if strings.HasSuffix(m.Name, "_blob_lifecycle.sql") {
			lifecycle = m
		}
	}
	if lifecycle.SQL == "" {
		t.Fatal("no blob lifecycle migration embedded")
	}
	// Back to the schema before it, with blobs stored then.
	if _, err := pool.Exec(ctx, `ALTER TABLE blobs DROP COLUMN completed_at, DROP COLUMN shared_version`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO blobs (id, clinic_id, conversation_id, uploader_id, name, complete, created_at)
		VALUES ('old-shared', 'c1', 'g-1', 'ann', 'a', true, now() - interval '1 day'),
		       ('old-orphan', 'c1', 'g-2', 'ann', 'b', true, now() - interval '1 day'),
		       ('old-half', 'c1', 'g-3', 'ann', 'c', false, now() - interval '1 day')`); err != nil {
		t.Fatal(err)
	}
	version := share(t, pool, "c1", "g-1", "old-shared")
	if _, err := pool.Exec(ctx, lifecycle.SQL, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("%s: %v", lifecycle.Name, err)
	}
	var backfilled int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM blobs WHERE completed_at = created_at`).Scan(&backfilled); err != nil || backfilled != 2 {
		t.Fatalf("complete blobs get their upload start as completion: %d, %v", backfilled, err)
	}
	s := New(pool)
	swept, err := s.SweepUnshared(ctx, time.Now().Add(-time.Hour))
	if err != nil || swept != (Swept{Marked: 1, Deleted: 1}) {
		t.Fatalf("swept %+v, %v", swept, err)
	}
	if info, err := s.Stat(ctx, "c1", "old-shared"); err != nil || info.SharedVersion != version {
		t.Fatalf("old shared blob: %+v %v", info, err)
	}
	if exists(t, pool, "old-orphan") || !exists(t, pool, "old-half") {
		t.Fatal("the old orphan goes; the incomplete upload is SweepIncomplete's")
	}
}
