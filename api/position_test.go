package api

import (
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
)

func contextAs(a Actor, key []byte) echo.Context {
	c := echo.New().NewContext(httptest.NewRequest("GET", "/", nil), httptest.NewRecorder())
	c.Set(actorKey, a)
	c.Set(positionKeyCtx, key)
	return c
}

func TestPositionTokens_OnlyTheirOwnClinicCanWaitOnThem(t *testing.T) {
	key := positionKey([]byte("position-secret-position-secret-po"))
	ann := Actor{UserID: "ann", ClinicID: "c1"}
	tok := encodePosition(contextAs(ann, key), "conversation-d-1", 7)

	stream, version, err := decodePosition(contextAs(ann, key), tok)
	if err != nil || stream != "conversation-d-1" || version != 7 {
		t.Fatalf("own token: %q %d %v", stream, version, err)
	}
	// A colleague may wait on it (a reader waiting for a writer's message).
	if _, _, err := decodePosition(contextAs(Actor{UserID: "bob", ClinicID: "c1"}, key), tok); err != nil {
		t.Errorf("a colleague of the same clinic was refused: %v", err)
	}
	for name, c := range map[string]echo.Context{
		"same user id in another clinic": contextAs(Actor{UserID: "ann", ClinicID: "c2"}, key),
		"another server secret":          contextAs(ann, positionKey([]byte("some-other-secret-some-other-secret"))),
	} {
		if _, _, err := decodePosition(c, tok); err == nil {
			t.Errorf("%s accepted ann's token", name)
		}
	}
	// A token forged for another clinic's stream (its id guessed) is refused without waiting.
	forged := signPosition([]byte("guess"), ann, "conversation-d-other", 1)
	if _, _, err := decodePosition(contextAs(ann, key), forged); err == nil {
		t.Error("a token signed with another key was accepted")
	}
	for _, bad := range []string{"", "abc", "abc.def", tok + "x", "." + tok} {
		if _, _, err := decodePosition(contextAs(ann, key), bad); err == nil {
			t.Errorf("malformed token %q accepted", bad)
		}
	}
}
