package domain

import (
	"net/mail"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on what people type. The API documents the same numbers.
const (
	MaxNameRunes    = 200
	MaxTitleRunes   = 200
	MaxEmailBytes   = 254
	MaxTextRunes    = 10000
	MaxParticipants = 256
)

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$`)

// ValidID reports whether s is a well-formed opaque id (1..128 chars of [A-Za-z0-9._:@-],
// starting with a letter or digit). It is the same shape the HTTP layer accepts in paths.
func ValidID(s string) bool { return idPattern.MatchString(s) }

func checkID(field, s string) error {
	if !ValidID(s) {
		return newError(CodeInvalid, field+": malformed id")
	}
	return nil
}

// cleanLine trims s and checks it is a single line of 1..max runes without control characters
// or bidi controls (names and titles).
// Postgres jsonb rejects NUL, so control characters are refused here rather than failing later.
func cleanLine(field, s string, min, max int) (string, error) {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) {
		return "", newError(CodeInvalid, field+": not valid UTF-8")
	}
	n := utf8.RuneCountInString(s)
	if n < min {
		return "", newError(CodeInvalid, field+": must not be empty")
	}
	if n > max {
		return "", newError(CodeInvalid, field+": longer than the limit")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "", newError(CodeInvalid, field+": contains control characters")
		}
	}
	if err := checkNoBidi(field, s); err != nil {
		return "", err
	}
	return s, nil
}

func cleanEmail(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > MaxEmailBytes {
		return "", newError(CodeInvalid, "email: must be 1..254 characters")
	}
	addr, err := mail.ParseAddress(s)
	// ParseAddress also accepts `Name <a@b>`; we want the bare address only.
	if err != nil || addr.Address != s || addr.Name != "" {
		return "", newError(CodeInvalid, "email: not an email address")
	}
	local, host, ok := strings.Cut(s, "@")
	if !ok || local == "" || host == "" || strings.ContainsAny(s, " \t\r\n") {
		return "", newError(CodeInvalid, "email: not an email address")
	}
	return s, nil
}

// checkText validates a chat message: 1..10,000 characters (runes), not only whitespace.
// Line breaks and tabs are fine; other control characters are not.
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return newError(CodeInvalid, "text: not valid UTF-8")
	}
	if strings.TrimSpace(s) == "" {
		return newError(CodeInvalid, "text: must not be empty or only whitespace")
	}
	if utf8.RuneCountInString(s) > MaxTextRunes {
		return newError(CodeInvalid, "text: longer than 10000 characters")
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' {
			return newError(CodeInvalid, "text: contains control characters")
		}
	}
	return nil
}
