package api

import (
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/huddle-chat/huddle/commands"
	"github.com/huddle-chat/huddle/eventstore"
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
	want := commands.Position{StreamID: "conversation-d-1", Version: 7, At: eventstore.Checkpoint{TxID: 812, Position: 4051}}
	tok := encodePosition(contextAs(ann, key), want)

	if got, err := decodePosition(contextAs(ann, key), tok); err != nil || got != want {
		t.Fatalf("own token: %+v %v, want %+v", got, err, want)
	}
	// Without a place in the store's order (a command that appended nothing).
	bare := commands.Position{StreamID: "member-u@x", Version: 3}
	if got, err := decodePosition(contextAs(ann, key), encodePosition(contextAs(ann, key), bare)); err != nil || got != bare {
		t.Fatalf("token without a global position: %+v %v, want %+v", got, err, bare)
	}
	// A colleague may wait on it (a reader waiting for a writer's message).
	if _, err := decodePosition(contextAs(Actor{UserID: "bob", ClinicID: "c1"}, key), tok); err != nil {
		t.Errorf("a colleague of the same clinic was refused: %v", err)
	}
	for name, c := range map[string]echo.Context{
		"same user id in another clinic": contextAs(Actor{UserID: "ann", ClinicID: "c2"}, key),
		"another server secret":          contextAs(ann, positionKey([]byte("some-other-secret-some-other-secret"))),
	} {
		if _, err := decodePosition(c, tok); err == nil {
			t.Errorf("%s accepted ann's token", name)
		}
	}
	// A token forged for another clinic's stream (its id guessed) is refused without waiting.
	forged := signPosition([]byte("guess"), ann, commands.Position{StreamID: "conversation-d-other", Version: 1})
	if _, err := decodePosition(contextAs(ann, key), forged); err == nil {
		t.Error("a token signed with another key was accepted")
	}
	for _, bad := range []string{"", "abc", "abc.def", tok + "x", "." + tok} {
		if _, err := decodePosition(contextAs(ann, key), bad); err == nil {
			t.Errorf("malformed token %q accepted", bad)
		}
	}
}
