// Package blobs stores the bytes of shared files in Postgres, in chunks, streamed in and out so
// a large file never sits in memory whole. Events carry only a file's id, name, size, content
// type and sha256; this package holds the bytes under that id, scoped by clinic.
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

// New returns a Store on pool (the schema comes from migration 0002_blobs.sql).
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
	sqlCompleteBlob = `UPDATE blobs SET size = $2, sha256 = $3, content_type = $4, complete = true WHERE id = $1`
	sqlDeleteBlob   = `DELETE FROM blobs WHERE clinic_id = $1 AND id = $2`
	sqlSelectBlob   = `SELECT id, clinic_id, conversation_id, uploader_id, name, content_type, size, sha256, complete, created_at
		FROM blobs WHERE clinic_id = $1 AND id = $2`
	sqlSelectChunk  = `SELECT data FROM blob_chunks WHERE blob_id = $1 AND seq = $2`
	sqlSweepUploads = `DELETE FROM blobs WHERE NOT complete AND created_at < $1`
)

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
		&i.UploaderID, &i.Name, &i.ContentType, &i.Size, &i.SHA256, &i.Complete, &i.CreatedAt)
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
