package domain

import (
	"unicode/utf8"
)

// The one rule for untrusted text (issue 14): where it comes from (a query parameter, a JSON
// body, a path) the HTTP layer checks it with CheckInput; names and titles are further checked
// with checkNoBidi by the validation that cleans them (cleanLine, file names).

// CheckInput rejects text that is not valid UTF-8 or holds a NUL. Postgres refuses NUL in text
// and jsonb (a query with one failed as a 500), and encoding/json silently replaces invalid
// UTF-8 with U+FFFD, storing something other than what was sent.
func CheckInput(field, s string) error {
	if !utf8.ValidString(s) {
		return newError(CodeInvalid, field+": not valid UTF-8")
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return newError(CodeInvalid, field+": contains a NUL character")
		}
	}
	return nil
}

// IsBidiControl reports the Unicode bidirectional formatting characters: embeddings and
// overrides (U+202A–U+202E), isolates (U+2066–U+2069), the implicit marks LRM, RLM (U+200E,
// U+200F) and ALM (U+061C). In a name or title they reorder what others see: "U+202E" turns
// "gnp.exe" into what reads as an image, or makes one person's name look like another's.
func IsBidiControl(r rune) bool {
	return (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) ||
		r == 0x200E || r == 0x200F || r == 0x061C
}

// checkNoBidi rejects bidi controls in a name or title. Message text may carry them: people
// writing Arabic or Hebrew mixed with Latin need the marks, and a message shows who sent it.
func checkNoBidi(field, s string) error {
	for _, r := range s {
		if IsBidiControl(r) {
			return newError(CodeInvalid, field+": contains bidirectional control characters")
		}
	}
	return nil
}
