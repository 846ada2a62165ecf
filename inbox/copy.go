package inbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// copyData is COPY … FROM STDIN (FORMAT binary) data built by hand: for a rebuild's millions of
// message rows, pgx's general encoding of []any values (a plan per value, an allocation per
// interface) cost more CPU than the database spent storing them.
type copyData struct {
	buf []byte
}

// pgEpoch is PostgreSQL's timestamp epoch, in Unix microseconds.
const pgEpoch = 946684800 * 1000000

// reset starts new data, reusing the buffer.
func (d *copyData) reset() {
	d.buf = append(d.buf[:0], "PGCOPY\n\xff\r\n\x00"...)
	d.buf = binary.BigEndian.AppendUint32(d.buf, 0) // flags
	d.buf = binary.BigEndian.AppendUint32(d.buf, 0) // header extension length
}

func (d *copyData) row(fields int) { d.buf = binary.BigEndian.AppendUint16(d.buf, uint16(fields)) }

func (d *copyData) text(s string) {
	d.buf = binary.BigEndian.AppendUint32(d.buf, uint32(len(s)))
	d.buf = append(d.buf, s...)
}

func (d *copyData) null() { d.buf = binary.BigEndian.AppendUint32(d.buf, 0xffffffff) }

func (d *copyData) int8(v int64) {
	d.buf = binary.BigEndian.AppendUint32(d.buf, 8)
	d.buf = binary.BigEndian.AppendUint64(d.buf, uint64(v))
}

func (d *copyData) bool(v bool) {
	b := byte(0)
	if v {
		b = 1
	}
	d.buf = binary.BigEndian.AppendUint32(d.buf, 1)
	d.buf = append(d.buf, b)
}

func (d *copyData) timestamptz(t time.Time) { d.int8(t.UnixMicro() - pgEpoch) }

// send COPYs the rows into table's columns on conn.
func (d *copyData) send(ctx context.Context, conn *pgx.Conn, table string, columns []string) error {
	d.buf = binary.BigEndian.AppendUint16(d.buf, 0xffff) // trailer
	cols := make([]string, len(columns))
	for i, c := range columns {
		cols[i] = pgx.Identifier{c}.Sanitize()
	}
	sql := `COPY ` + pgx.Identifier{table}.Sanitize() + ` (` + strings.Join(cols, ", ") + `) FROM STDIN (FORMAT binary)`
	if _, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(d.buf), sql); err != nil {
		return fmt.Errorf("copy %s: %w", table, err)
	}
	return nil
}

// copyMessages COPYs message rows into messages (messageColumns), building the data in d.
func copyMessages(ctx context.Context, conn *pgx.Conn, d *copyData, rows []messageRow) error {
	d.reset()
	for i := range rows {
		m := &rows[i]
		d.row(len(messageColumns))
		d.text(m.clinic)
		d.text(m.conv)
		d.int8(m.version)
		d.text(m.id)
		d.text(m.sender)
		d.text(m.kind)
		d.text(m.text)
		if f := m.file; f != nil {
			d.text(f.id)
			d.text(f.name)
			d.int8(f.size)
			d.text(f.contentType)
			d.text(f.sha256)
		} else {
			d.null()
			d.null()
			d.null()
			d.null()
			d.null()
		}
		if s := m.system; s != nil {
			d.text(s.Event)
			d.text(s.ActorID)
			d.text(s.SubjectID)
		} else {
			d.null()
			d.null()
			d.null()
		}
		d.timestamptz(m.sentAt)
		d.int8(m.position)
		d.bool(m.urgent)
	}
	return d.send(ctx, conn, "messages", messageColumns)
}
