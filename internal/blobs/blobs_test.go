package blobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func upload(id string, max int64) Upload {
	return Upload{ID: id, ClinicID: "c1", ConversationID: "g-1", UploaderID: "ann", Name: "../../etc/report.pdf", MaxBytes: max}
}

func TestPut_RoundTripsAcrossChunks(t *testing.T) {
	pool, _ := testenv.Postgres(t)
	s := New(pool)
	ctx := context.Background()
	data := make([]byte, 2*ChunkSize+123)
	rand.New(rand.NewSource(1)).Read(data)
	copy(data, "%PDF-1.7\n")
	info, err := s.Put(ctx, upload("f1", 10<<20), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if info.Size != int64(len(data)) || info.SHA256 != hex.EncodeToString(sum[:]) || info.Name != "report.pdf" || info.ContentType != "application/pdf" {
		t.Fatalf("info: %+v", info)
	}
	var out bytes.Buffer
	n, err := s.WriteTo(ctx, "c1", "f1", &out)
	if err != nil || n != int64(len(data)) || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("WriteTo: n=%d err=%v equal=%v", n, err, bytes.Equal(out.Bytes(), data))
	}
	got, err := s.Stat(ctx, "c1", "f1")
	if err != nil || got.SHA256 != info.SHA256 || got.ConversationID != "g-1" || !got.Complete {
		t.Fatalf("Stat: %+v %v", got, err)
	}
}

func TestPut_OverLimitIsFileTooLargeAndLeavesNothing(t *testing.T) {
	pool, _ := testenv.Postgres(t)
	s := New(pool)
	ctx := context.Background()
	_, err := s.Put(ctx, upload("big", ChunkSize), bytes.NewReader(make([]byte, ChunkSize+1)))
	if domain.ErrorCode(err) != domain.CodeFileTooLarge {
		t.Fatalf("want file_too_large, got %v", err)
	}
	var rows int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM blobs) + (SELECT count(*) FROM blob_chunks)`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Fatalf("%d rows left behind", rows)
	}
	if _, err := s.Put(ctx, upload("exact", ChunkSize), bytes.NewReader(make([]byte, ChunkSize))); err != nil {
		t.Fatalf("a file of exactly the limit is fine: %v", err)
	}
}

func TestStat_OtherClinicOrUnknownIsNotFound(t *testing.T) {
	pool, _ := testenv.Postgres(t)
	s := New(pool)
	ctx := context.Background()
	if _, err := s.Put(ctx, upload("f1", 0), strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ clinic, id string }{{"c2", "f1"}, {"c1", "nope"}} {
		if _, err := s.Stat(ctx, tc.clinic, tc.id); domain.ErrorCode(err) != domain.CodeNotFound {
			t.Fatalf("Stat(%s, %s): want not_found, got %v", tc.clinic, tc.id, err)
		}
		if _, err := s.WriteTo(ctx, tc.clinic, tc.id, &bytes.Buffer{}); domain.ErrorCode(err) != domain.CodeNotFound {
			t.Fatalf("WriteTo(%s, %s): want not_found, got %v", tc.clinic, tc.id, err)
		}
	}
}

func TestPut_SniffsContentTypeAndHandlesEmptyFiles(t *testing.T) {
	pool, _ := testenv.Postgres(t)
	s := New(pool)
	ctx := context.Background()
	png := "\x89PNG\r\n\x1a\n" + strings.Repeat("x", 20)
	cases := []struct{ id, body, want string }{
		{"png", png, "image/png"},
		{"txt", "plain words", "text/plain; charset=utf-8"},
		{"empty", "", "application/octet-stream"},
	}
	for _, tc := range cases {
		info, err := s.Put(ctx, upload(tc.id, 0), strings.NewReader(tc.body))
		if err != nil || info.ContentType != tc.want {
			t.Fatalf("%s: content type %q, err %v", tc.id, info.ContentType, err)
		}
	}
}

func TestSweepIncomplete_RemovesAbandonedUploads(t *testing.T) {
	pool, _ := testenv.Postgres(t)
	s := New(pool)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, sqlInsertBlob, "half", "c1", "g-1", "ann", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "c1", "half"); domain.ErrorCode(err) != domain.CodeNotFound {
		t.Fatalf("an incomplete upload is never served: %v", err)
	}
	n, err := s.SweepIncomplete(ctx, time.Now().Add(time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("swept %d, %v", n, err)
	}
}

func TestSanitizeName(t *testing.T) {
	cases := []struct{ in, want string }{
		{"report.pdf", "report.pdf"},
		{"../../etc/passwd", "passwd"},
		{`C:\Users\ann\scan.png`, "scan.png"},
		{"a\x00b\r\nc.txt", "abc.txt"},
		{"  .hidden  ", "hidden"},
		{"", "file"},
		{"..", "file"},
		{"dir/", "dir"},
		{"\u202Egnp.exe", "gnp.exe"},
		{strings.Repeat("é", 200), strings.Repeat("é", 127)},
		{"bad\xffutf8", "bad\uFFFDutf8"},
	}
	for _, tc := range cases {
		if got := SanitizeName(tc.in); got != tc.want {
			t.Errorf("SanitizeName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
