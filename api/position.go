package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
)

// Read-your-writes tokens. A command answers with Huddle-Position naming the last event it
// appended (its stream and version); a GET that sends it back as Huddle-Min-Position waits until
// the read models applied that event. The token is opaque to clients and signed for the
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

// signPosition builds the token for actor a's clinic.
func signPosition(key []byte, a Actor, streamID string, version int64) string {
	body := streamID + "@" + strconv.FormatInt(version, 10)
	return base64.RawURLEncoding.EncodeToString([]byte(body)) + "." + positionMAC(key, a, body)
}

func positionMAC(key []byte, a Actor, body string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(a.ClinicID + "\x00" + body))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// encodePosition is signPosition for the authenticated caller of c.
func encodePosition(c echo.Context, streamID string, version int64) string {
	key, _ := c.Get(positionKeyCtx).([]byte)
	return signPosition(key, actorOf(c), streamID, version)
}

// decodePosition checks a token against the authenticated caller of c.
func decodePosition(c echo.Context, token string) (streamID string, version int64, err error) {
	malformed := fmt.Errorf("malformed position token")
	payload, mac, ok := strings.Cut(token, ".")
	if !ok {
		return "", 0, malformed
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return "", 0, malformed
	}
	key, _ := c.Get(positionKeyCtx).([]byte)
	if !hmac.Equal([]byte(mac), []byte(positionMAC(key, actorOf(c), string(raw)))) {
		return "", 0, malformed
	}
	stream, v, ok := strings.Cut(string(raw), "@")
	version, convErr := strconv.ParseInt(v, 10, 64)
	if !ok || stream == "" || convErr != nil || version < 1 {
		return "", 0, malformed
	}
	return stream, version, nil
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
