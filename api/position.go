package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/huddle-chat/huddle/commands"
	"github.com/huddle-chat/huddle/eventstore"
)

// Read-your-writes tokens. A command answers with Huddle-Position naming the last event it
// appended (its stream and version, and its place in the store's order); a GET that sends it
// back as Huddle-Min-Position waits until the read models applied that event and everything
// stored before it, so the caller's earlier writes to other streams show too (ADR 0008). The token is opaque to clients and signed for the
// caller's clinic: a GET may only wait on a position given to someone of its own clinic, so the
// wait cannot be used to learn whether another clinic's stream (a direct chat's id is derived
// from the clinic and the pair) exists or how far it has grown. It is not bound to the user:
// colleagues may pass positions to each other (and tests do) so a reader waits for a writer.
const (
	headerPosition    = "Huddle-Position"
	headerMinPosition = "Huddle-Min-Position"
	positionKeyCtx    = "huddle.positionKey"
)

// positionKey derives the token-signing key from the JWT secret, so no second secret is needed
// and the two uses never share a key.
func positionKey(jwtSecret []byte) []byte {
	m := hmac.New(sha256.New, jwtSecret)
	m.Write([]byte("huddle read-your-writes position tokens"))
	return m.Sum(nil)
}

// signPosition builds the token for actor a's clinic. Its body is "stream@version", plus
// "|txid:position" when the command appended something (ADR 0008).
func signPosition(key []byte, a Actor, p commands.Position) string {
	body := p.StreamID + "@" + strconv.FormatInt(p.Version, 10)
	if p.At != (eventstore.Checkpoint{}) {
		body += "|" + strconv.FormatUint(p.At.TxID, 10) + ":" + strconv.FormatInt(p.At.Position, 10)
	}
	return base64.RawURLEncoding.EncodeToString([]byte(body)) + "." + positionMAC(key, a, body)
}

func positionMAC(key []byte, a Actor, body string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(a.ClinicID + "\x00" + body))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// encodePosition is signPosition for the authenticated caller of c.
func encodePosition(c echo.Context, p commands.Position) string {
	key, _ := c.Get(positionKeyCtx).([]byte)
	return signPosition(key, actorOf(c), p)
}

// decodePosition checks a token against the authenticated caller of c.
func decodePosition(c echo.Context, token string) (commands.Position, error) {
	malformed := fmt.Errorf("malformed position token")
	payload, mac, ok := strings.Cut(token, ".")
	if !ok {
		return commands.Position{}, malformed
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return commands.Position{}, malformed
	}
	key, _ := c.Get(positionKeyCtx).([]byte)
	if !hmac.Equal([]byte(mac), []byte(positionMAC(key, actorOf(c), string(raw)))) {
		return commands.Position{}, malformed
	}
	var p commands.Position
	body, at, global := strings.Cut(string(raw), "|")
	if global {
		tx, pos, ok := strings.Cut(at, ":")
		var err1, err2 error
		p.At.TxID, err1 = strconv.ParseUint(tx, 10, 64)
		p.At.Position, err2 = strconv.ParseInt(pos, 10, 64)
		if !ok || err1 != nil || err2 != nil || p.At.Position < 1 {
			return commands.Position{}, malformed
		}
	}
	i := strings.LastIndexByte(body, '@')
	if i < 1 {
		return commands.Position{}, malformed
	}
	p.StreamID = body[:i]
	p.Version, err = strconv.ParseInt(body[i+1:], 10, 64)
	if err != nil || p.Version < 1 {
		return commands.Position{}, malformed
	}
	return p, nil
}

// withPositionKey makes the signing key available to the handlers of a group.
func withPositionKey(key []byte) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			c.Set(positionKeyCtx, key)
			return next(c)
		}
	}
}
