package eventstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The hash chain.
//
// Every event carries hash = hex(sha256(prev_hash + ":" + stream_version + ":" + digest)), where
// prev_hash is the previous event's hash in the same stream ("" for version 1) and digest is
//
//	hex(sha256(lp("huddle.event.v1") lp(stream_id) lp(event_id) lp(type) lp(schema_version)
//	           lp(canonical(data)) lp(canonical(metadata)) lp(recorded_at)))
//
// lp(x) is x's byte length as a 4-byte big-endian integer followed by x, so no two different
// field lists encode alike. event_id is the lowercase hyphenated uuid, schema_version decimal,
// recorded_at RFC 3339 with nanoseconds in UTC (the store truncates it to microseconds, the
// precision Postgres keeps, so what a reader gets back hashes the same).
//
// canonical(json) is a value-based encoding that survives Postgres jsonb's normalisation:
// objects with keys sorted bytewise, no whitespace, strings with only '"', '\' and control
// characters escaped (as \u00XX), numbers as value-normalised decimal ("1.50", "15e-1" and
// "1.5" all become "15e-1"; "100" becomes "1e2"; "-0" becomes "0"). Duplicate keys keep the
// last value, as jsonb does. Verify recomputes all of this from the stored rows.
//
// The chain step runs in SQL (eventstore_append) because only there, under the stream lock, is
// the version known; the digest runs in Go because canonical JSON is easier to get right here.

const digestDomain = "huddle.event.v1"

// eventDigest is the per-event content digest described above.
func eventDigest(streamID, eventID, typ string, schemaVersion int, canonData, canonMeta []byte, recordedAt time.Time) string {
	h := sha256.New()
	var n [4]byte
	lp := func(b []byte) {
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	lp([]byte(digestDomain))
	lp([]byte(streamID))
	lp([]byte(eventID))
	lp([]byte(typ))
	lp([]byte(strconv.Itoa(schemaVersion)))
	lp(canonData)
	lp(canonMeta)
	lp([]byte(formatTime(recordedAt)))
	return hex.EncodeToString(h.Sum(nil))
}

// chainHash is the SQL chain step of eventstore_append, recomputed by Verify.
func chainHash(prevHash string, version int64, digest string) string {
	sum := sha256.Sum256([]byte(prevHash + ":" + strconv.FormatInt(version, 10) + ":" + digest))
	return hex.EncodeToString(sum[:])
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// canonicalMetadata is canonicalJSON(json.Marshal(md)) without the round trip: the keys in
// sorted order, the values as canonical strings.
func canonicalMetadata(md Metadata) []byte {
	var b bytes.Buffer
	b.Grow(128)
	for i, kv := range [...]struct{ k, v string }{
		{"actor_id", md.ActorID},
		{"causation_id", md.CausationID},
		{"clinic_id", md.ClinicID},
		{"command_id", md.CommandID},
		{"correlation_id", md.CorrelationID},
	} {
		if i == 0 {
			b.WriteByte('{')
		} else {
			b.WriteByte(',')
		}
		writeCanonicalString(&b, kv.k)
		b.WriteByte(':')
		writeCanonicalString(&b, kv.v)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// canonicalJSON returns the canonical encoding of one JSON value.
func canonicalJSON(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("invalid JSON: trailing data")
	}
	var b bytes.Buffer
	if err := writeCanonical(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func writeCanonical(b *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if v {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case json.Number:
		n, err := canonicalNumber(string(v))
		if err != nil {
			return err
		}
		b.WriteString(n)
	case string:
		writeCanonicalString(b, v)
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeCanonical(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeCanonicalString(b, k)
			b.WriteByte(':')
			if err := writeCanonical(b, v[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	default:
		return fmt.Errorf("canonical JSON: unexpected %T", v)
	}
	return nil
}

func writeCanonicalString(b *bytes.Buffer, s string) {
	const hexDigits = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteByte(byte(r))
		case r < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte(hexDigits[r>>4])
			b.WriteByte(hexDigits[r&0xf])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	b.WriteByte('"')
}

// canonicalNumber normalises a JSON number literal by value: the significant digits without
// leading or trailing zeros, then "e" and the exponent when it is not zero.
func canonicalNumber(s string) (string, error) {
	orig := s
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	exp := 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil {
			return "", fmt.Errorf("canonical JSON: number %q: %w", orig, err)
		}
		exp = e
		s = s[:i]
	}
	intPart, frac, _ := strings.Cut(s, ".")
	digits := intPart + frac
	exp -= len(frac)
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		return "0", nil
	}
	trimmed := strings.TrimRight(digits, "0")
	exp += len(digits) - len(trimmed)
	var out strings.Builder
	if neg {
		out.WriteByte('-')
	}
	out.WriteString(trimmed)
	if exp != 0 {
		out.WriteByte('e')
		out.WriteString(strconv.Itoa(exp))
	}
	return out.String(), nil
}
