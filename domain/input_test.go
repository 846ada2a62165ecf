package domain

import (
	"strings"
	"testing"
)

func TestCheckInput(t *testing.T) {
	for _, bad := range []string{"a\x00b", "\xff", "ok\xc3"} {
		if CheckInput("q", bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, good := range []string{"", "Ann", "שלום", "emoji 🩺", "tab\tok"} {
		if err := CheckInput("q", good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
}

func TestNamesAndTitlesRefuseBidiControlsButTextMayHoldThem(t *testing.T) {
	for _, r := range []rune{0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069, 0x200E, 0x200F, 0x061C} {
		s := "Ann" + string(r) + "x"
		if _, err := cleanLine("name", s, 1, MaxNameRunes); err == nil || !strings.Contains(err.Error(), "bidirectional") {
			t.Errorf("U+%04X in a name: %v", r, err)
		}
	}
	if _, err := cleanLine("name", "Ann\u200dx", 1, MaxNameRunes); err != nil {
		t.Errorf("a zero-width joiner (emoji sequences) is not bidi: %v", err)
	}
	if err := checkText("مرحبا\u200f hello"); err != nil {
		t.Errorf("an RLM in message text: %v", err)
	}
}
