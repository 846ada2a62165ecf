package commands

import (
	"bytes"
	"strings"
	"testing"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/internal/blobs"
)

// sharedVersion is the blob's mark (0: none); it fails the test if the blob is not there.
func (f fixture) sharedVersion(t *testing.T, fileID string) int64 {
	t.Helper()
	var v int64
	if err := f.store.Pool().QueryRow(f.ctx, `SELECT coalesce(shared_version, 0) FROM blobs WHERE id = $1`, fileID).Scan(&v); err != nil {
		t.Fatalf("blob %s: %v", fileID, err)
	}
	return v
}

// unmark makes a blob look like its sharer stopped between the append and the mark.
func (f fixture) unmark(t *testing.T, fileID string) {
	t.Helper()
	if _, err := f.store.Pool().Exec(f.ctx, `UPDATE blobs SET shared_version = NULL WHERE id = $1`, fileID); err != nil {
		t.Fatal(err)
	}
}

func (f fixture) fileSharedVersion(t *testing.T, conversationID, fileID string) int64 {
	t.Helper()
	for _, e := range f.events(t, domain.ConversationStream(conversationID)) {
		ev, ok, err := decode(e)
		if shared, isFile := ev.(domain.FileShared); err == nil && ok && isFile && shared.FileID == fileID {
			return e.StreamVersion
		}
	}
	t.Fatalf("no FileShared event for %s", fileID)
	return 0
}

func TestShareFile_MarksTheBlobWithItsEventVersion(t *testing.T) {
	t.Parallel()
	f := setup(t, Options{})
	g, err := f.h.StartConversation(f.ctx, actor("ann"), []string{"bob"}, ptr("Ward"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.h.SendMessage(f.ctx, actor("ann"), g.ID, "scan follows", ""); err != nil {
		t.Fatal(err)
	}
	m, err := f.h.ShareFile(f.ctx, actor("bob"), g.ID, "scan.txt", "", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.sharedVersion(t, m.File.ID), f.fileSharedVersion(t, g.ID, m.File.ID); got != want || want != 3 {
		t.Fatalf("blob marked %d, its FileShared event is at %d", got, want)
	}
}

// The sharer stopped between the append and the mark: every rule of OpenFile holds on the
// fallback to the store, and the first permitted download marks the blob.
func TestOpenFile_BlobNeverMarkedFollowsTheSameRules(t *testing.T) {
	t.Parallel()
	f := setup(t, Options{})
	g, m := wardWithFile(t, f)
	want := f.fileSharedVersion(t, g.ID, m.File.ID)
	for _, who := range []Actor{actor("cat"), actor("dan"), {UserID: "ann", ClinicID: "c2"}} {
		f.unmark(t, m.File.ID)
		if _, err := f.h.OpenFile(f.ctx, who, m.File.ID); domain.ErrorCode(err) != domain.CodeNotFound {
			t.Fatalf("%s of %s must not see it: %v", who.UserID, who.ClinicID, err)
		}
	}
	f.unmark(t, m.File.ID)
	info, err := f.h.OpenFile(f.ctx, actor("ann"), m.File.ID)
	if err != nil {
		t.Fatalf("ann saw it shared: %v", err)
	}
	var out bytes.Buffer
	if _, err := f.h.CopyFile(f.ctx, info, &out); err != nil || out.String() != "hello file" {
		t.Fatalf("copy: %q %v", out.String(), err)
	}
	if got := f.sharedVersion(t, m.File.ID); got != want {
		t.Fatalf("the download marks the blob: %d, want %d", got, want)
	}
	if _, err := f.h.DeleteGroup(f.ctx, actor("ann"), g.ID); err != nil {
		t.Fatal(err)
	}
	f.unmark(t, m.File.ID)
	if _, err := f.h.OpenFile(f.ctx, actor("ann"), m.File.ID); domain.ErrorCode(err) != domain.CodeNotFound {
		t.Fatalf("a deleted group's files are gone: %v", err)
	}
}

// Bytes stored in a conversation whose FileShared event was never appended (a crash between
// upload and append) are served to nobody, not even its members.
func TestOpenFile_BytesNoMessageSharesAreNotFound(t *testing.T) {
	t.Parallel()
	f := setup(t, Options{})
	g, err := f.h.StartConversation(f.ctx, actor("ann"), []string{"bob"}, ptr("Ward"))
	if err != nil {
		t.Fatal(err)
	}
	bs := blobs.New(f.store.Pool())
	if _, err := bs.Put(f.ctx, blobs.Upload{ID: "orphan", ClinicID: "c1", ConversationID: g.ID, UploaderID: "bob", Name: "x"},
		strings.NewReader("never sent")); err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"ann", "bob"} {
		if _, err := f.h.OpenFile(f.ctx, actor(who), "orphan"); domain.ErrorCode(err) != domain.CodeNotFound {
			t.Fatalf("%s: want not_found, got %v", who, err)
		}
	}
	if got := f.sharedVersion(t, "orphan"); got != 0 {
		t.Fatalf("an orphan is never marked: %d", got)
	}
}

// A repeated upload finds the first run's message; if that run stopped before marking its
// file, the repeat marks it.
func TestShareFile_RepeatMarksTheFirstRunsFile(t *testing.T) {
	t.Parallel()
	f := setup(t, Options{})
	g, err := f.h.StartConversation(f.ctx, actor("ann"), []string{"bob"}, ptr("T"))
	if err != nil {
		t.Fatal(err)
	}
	m1, err := f.h.ShareFile(f.ctx, actor("ann"), g.ID, "a.txt", "up-1", strings.NewReader("one"))
	if err != nil {
		t.Fatal(err)
	}
	f.unmark(t, m1.File.ID)
	m2, err := f.h.ShareFile(f.ctx, actor("ann"), g.ID, "a.txt", "up-1", strings.NewReader("one"))
	if err != nil || m2.File.ID != m1.File.ID {
		t.Fatalf("repeat: %+v %v", m2, err)
	}
	if got, want := f.sharedVersion(t, m1.File.ID), f.fileSharedVersion(t, g.ID, m1.File.ID); got != want {
		t.Fatalf("first run's file marked %d, want %d", got, want)
	}
}
