// Package blobs stores the bytes of shared files in Postgres, in chunks, streamed in and out so
// a large file never sits in memory whole. Events carry only a file's id, name, size, content
// type and sha256; this package holds the bytes under that id, scoped by clinic, and remembers
// which FileShared event shared them (ADR 0009), so bytes no message names can be swept.
package blobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/huddle-chat/huddle/domain"
	"github.com/huddle-chat/huddle/eventstore"
)

// ChunkSize is the size of one stored chunk: big enough that a 25 MiB file is ~100 rows,
// small enough that a chunk in flight costs little memory.
const ChunkSize = 256 << 10

// MaxNameBytes bounds a stored file name.
const MaxNameBytes = 255

// Store reads and writes blobs.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a Store on pool (the schema comes from migrations 0002_blobs.sql and
// 0006_blob_lifecycle.sql).
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Info describes a stored file.
type Info struct {
	ID             string
	ClinicID       string
	ConversationID string
	UploaderID     string
	Name           string
	ContentType    string
	Size           int64
	SHA256         string // hex
	Complete       bool
	CreatedAt      time.Time
	// SharedVersion is the stream version of the FileShared event that shared the blob in its
	// conversation; 0 while that is not known (the append is in flight, failed, or happened
	// but the process stopped before marking: see Confirm).
	SharedVersion int64
}

// Upload says what is being uploaded, by whom, where to.
type Upload struct {
	ID             string
	ClinicID       string
	ConversationID string
	UploaderID     string
	Name           string // sanitised by Put
	// MaxBytes is the size limit, checked while streaming; <= 0 means no limit.
	MaxBytes int64
}

const (
	sqlInsertBlob = `INSERT INTO blobs (id, clinic_id, conversation_id, uploader_id, name)
		VALUES ($1, $2, $3, $4, $5)`
	sqlInsertChunk  = `INSERT INTO blob_chunks (blob_id, seq, data) VALUES ($1, $2, $3)`
	sqlCompleteBlob = `UPDATE blobs SET size = $2, sha256 = $3, content_type = $4, complete = true, completed_at = now()
		WHERE id = $1`
	sqlDeleteBlob = `DELETE FROM blobs WHERE clinic_id = $1 AND id = $2`
	sqlSelectBlob = `SELECT id, clinic_id, conversation_id, uploader_id, name, content_type, size, sha256, complete, created_at,
			coalesce(shared_version, 0)
		FROM blobs WHERE clinic_id = $1 AND id = $2`
	sqlSelectChunk  = `SELECT data FROM blob_chunks WHERE blob_id = $1 AND seq = $2`
	sqlSweepUploads = `DELETE FROM blobs WHERE NOT complete AND created_at < $1`
	sqlMarkShared   = `UPDATE blobs SET shared_version = $3 WHERE clinic_id = $1 AND id = $2 AND complete`
	// sqlUnshared pages through SweepUnshared's candidates (index blobs_unshared) by
	// (completed_at, id), so each is looked at once per sweep whatever happens to it.
	sqlUnshared = `SELECT id, clinic_id, conversation_id, completed_at FROM blobs
		WHERE complete AND shared_version IS NULL AND completed_at < $1 AND (completed_at, id) > ($2, $3)
		ORDER BY completed_at, id LIMIT $4`
	// sqlDeleteUnshared leaves a blob that got marked since it was looked at.
	sqlDeleteUnshared = `DELETE FROM blobs WHERE clinic_id = $1 AND id = $2 AND shared_version IS NULL`
)

// sweepBatch bounds the candidates SweepUnshared reads at once.
const sweepBatch = 100

// Put streams r into a new blob. It reads chunk by chunk, hashing as it goes, sniffs the
// content type from the first 512 bytes (what the client claims is not trusted), and fails
// with the domain error file_too_large as soon as more than u.MaxBytes arrived. On any failure
// the partial blob is deleted. Each chunk is its own short transaction (see the migration).
func (s *Store) Put(ctx context.Context, u Upload, r io.Reader) (Info, error) {
	name := SanitizeName(u.Name)
	if _, err := s.pool.Exec(ctx, sqlInsertBlob, u.ID, u.ClinicID, u.ConversationID, u.UploaderID, name); err != nil {
		return Info{}, fmt.Errorf("blobs: create %s: %w", u.ID, err)
	}
	info, err := s.fill(ctx, u, r)
	if err != nil {
		// Use a fresh context: the request's may be what failed.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, derr := s.pool.Exec(cctx, sqlDeleteBlob, u.ClinicID, u.ID); derr != nil {
			err = errors.Join(err, fmt.Errorf("blobs: delete partial %s: %w", u.ID, derr))
		}
		return Info{}, err
	}
	info.Name = name
	return info, nil
}

func (s *Store) fill(ctx context.Context, u Upload, r io.Reader) (Info, error) {
	h := sha256.New()
	buf := make([]byte, ChunkSize)
	var size int64
	contentType := ""
	for seq := 0; ; seq++ {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			size += int64(n)
			if u.MaxBytes > 0 && size > u.MaxBytes {
				return Info{}, &domain.Error{Code: domain.CodeFileTooLarge,
					Message: fmt.Sprintf("the file is larger than the limit of %d bytes", u.MaxBytes)}
			}
			if seq == 0 {
				contentType = http.DetectContentType(buf[:min(n, 512)])
			}
			h.Write(buf[:n])
			if _, ierr := s.pool.Exec(ctx, sqlInsertChunk, u.ID, seq, buf[:n]); ierr != nil {
				return Info{}, fmt.Errorf("blobs: write chunk %d of %s: %w", seq, u.ID, ierr)
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return Info{}, fmt.Errorf("blobs: read upload: %w", err)
		}
	}
	if contentType == "" {
		contentType = "application/octet-stream" // empty file
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if _, err := s.pool.Exec(ctx, sqlCompleteBlob, u.ID, size, sum, contentType); err != nil {
		return Info{}, fmt.Errorf("blobs: complete %s: %w", u.ID, err)
	}
	return Info{ID: u.ID, ClinicID: u.ClinicID, ConversationID: u.ConversationID, UploaderID: u.UploaderID,
		ContentType: contentType, Size: size, SHA256: sum, Complete: true}, nil
}

// Stat returns a complete blob of the clinic; anything else (unknown, another clinic's,
// still uploading) is the domain error not_found.
func (s *Store) Stat(ctx context.Context, clinicID, id string) (Info, error) {
	var i Info
	err := s.pool.QueryRow(ctx, sqlSelectBlob, clinicID, id).Scan(&i.ID, &i.ClinicID, &i.ConversationID,
		&i.UploaderID, &i.Name, &i.ContentType, &i.Size, &i.SHA256, &i.Complete, &i.CreatedAt, &i.SharedVersion)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && !i.Complete) {
		return Info{}, &domain.Error{Code: domain.CodeNotFound, Message: "no such file"}
	}
	if err != nil {
		return Info{}, fmt.Errorf("blobs: stat %s: %w", id, err)
	}
	return i, nil
}

// WriteTo copies a complete blob's bytes to w, one chunk (one query) at a time, so a slow
// reader holds no connection between chunks. It returns the bytes written.
func (s *Store) WriteTo(ctx context.Context, clinicID, id string, w io.Writer) (int64, error) {
	info, err := s.Stat(ctx, clinicID, id)
	if err != nil {
		return 0, err
	}
	var written int64
	var chunk []byte
	for seq := 0; written < info.Size; seq++ {
		if err := s.pool.QueryRow(ctx, sqlSelectChunk, id, seq).Scan(&chunk); err != nil {
			return written, fmt.Errorf("blobs: read chunk %d of %s: %w", seq, id, err)
		}
		n, err := w.Write(chunk)
		written += int64(n)
		if err != nil {
			return written, fmt.Errorf("blobs: write %s: %w", id, err)
		}
	}
	return written, nil
}

// Delete removes a blob (used when the message that would share it is refused).
func (s *Store) Delete(ctx context.Context, clinicID, id string) error {
	if _, err := s.pool.Exec(ctx, sqlDeleteBlob, clinicID, id); err != nil {
		return fmt.Errorf("blobs: delete %s: %w", id, err)
	}
	return nil
}

// SweepIncomplete deletes uploads that never completed (a crash mid-upload) and started before
// olderThan. It returns how many it removed.
func (s *Store) SweepIncomplete(ctx context.Context, olderThan time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, sqlSweepUploads, olderThan)
	if err != nil {
		return 0, fmt.Errorf("blobs: sweep: %w", err)
	}
	return tag.RowsAffected(), nil
}

// MarkShared records that the FileShared event at version of the blob's conversation shared
// it. It fails with not_found when the blob is gone (or never completed).
func (s *Store) MarkShared(ctx context.Context, clinicID, id string, version int64) error {
	tag, err := s.pool.Exec(ctx, sqlMarkShared, clinicID, id, version)
	if err != nil {
		return fmt.Errorf("blobs: mark %s shared: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return &domain.Error{Code: domain.CodeNotFound, Message: "no such file"}
	}
	return nil
}

// Confirm returns the version of the FileShared event that shared a complete blob, looking it
// up in the event store when the blob is not marked yet (the process stopped between the
// append and MarkShared, or the blob predates the marks) and marking it when found. 0 means no
// event names the blob, yet or ever.
func (s *Store) Confirm(ctx context.Context, info Info) (int64, error) {
	if info.SharedVersion > 0 {
		return info.SharedVersion, nil
	}
	version, err := s.findShared(ctx, info.ClinicID, info.ConversationID, info.ID)
	if err != nil || version == 0 {
		return 0, err
	}
	if err := s.MarkShared(ctx, info.ClinicID, info.ID, version); err != nil {
		return 0, err
	}
	return version, nil
}

func (s *Store) findShared(ctx context.Context, clinicID, conversationID, id string) (int64, error) {
	// The FileShared event naming the blob in its conversation's stream (stored data: a
	// FileShared schema that renames file_id must change this).
	version, err := eventstore.FirstWithFieldIn(ctx, s.pool, domain.ConversationStream(conversationID),
		domain.FileShared{}.EventType(), "file_id", id, clinicID)
	if err != nil {
		return 0, fmt.Errorf("blobs: find the event sharing %s: %w", id, err)
	}
	return version, nil
}

// Swept counts what SweepUnshared did.
type Swept struct {
	Marked  int64 // shared after all: the event exists, the mark was missing
	Deleted int64 // no message names them
}

// SweepUnshared settles complete blobs not marked shared whose upload completed before
// olderThan: each is marked if a FileShared event names it, else deleted with its bytes. Give
// olderThan a generous margin (an hour): a blob whose append is still in flight has no event
// yet and would be deleted under it. Candidates are read sweepBatch at a time; counts are
// returned up to the first error.
func (s *Store) SweepUnshared(ctx context.Context, olderThan time.Time) (Swept, error) {
	var out Swept
	var afterAt time.Time // zero: before every candidate
	afterID := ""
	for {
		type candidate struct {
			id, clinicID, conversationID string
			completedAt                  time.Time
		}
		rows, err := s.pool.Query(ctx, sqlUnshared, olderThan, afterAt, afterID, sweepBatch)
		if err != nil {
			return out, fmt.Errorf("blobs: sweep unshared: %w", err)
		}
		batch, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (candidate, error) {
			var c candidate
			return c, r.Scan(&c.id, &c.clinicID, &c.conversationID, &c.completedAt)
		})
		if err != nil {
			return out, fmt.Errorf("blobs: sweep unshared: %w", err)
		}
		for _, c := range batch {
			version, err := s.findShared(ctx, c.clinicID, c.conversationID, c.id)
			if err != nil {
				return out, err
			}
			if version > 0 {
				switch err := s.MarkShared(ctx, c.clinicID, c.id, version); {
				case err == nil:
					out.Marked++
				case domain.ErrorCode(err) != domain.CodeNotFound: // not_found: deleted meanwhile
					return out, err
				}
				continue
			}
			tag, err := s.pool.Exec(ctx, sqlDeleteUnshared, c.clinicID, c.id)
			if err != nil {
				return out, fmt.Errorf("blobs: delete unshared %s: %w", c.id, err)
			}
			out.Deleted += tag.RowsAffected()
		}
		if len(batch) < sweepBatch {
			return out, nil
		}
		last := batch[len(batch)-1]
		afterAt, afterID = last.completedAt, last.id
	}
}

// SanitizeName makes a client-supplied file name safe to store and to send back in a
// Content-Disposition header: directories are stripped (both / and \), control and format
// characters dropped, invalid UTF-8 replaced, surrounding spaces and dots trimmed, and the
// result cut to MaxNameBytes on a rune boundary. An empty result becomes "file".
func SanitizeName(name string) string {
	name = strings.ToValidUTF8(name, "\uFFFD")
	name = strings.ReplaceAll(name, `\`, "/")
	name = path.Base("/" + name)
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, name)
	name = strings.Trim(name, " .")
	for len(name) > MaxNameBytes {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	name = strings.TrimRight(name, " ")
	if name == "" || name == "/" {
		return "file"
	}
	return name
}
