package api

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// Read-your-writes tokens. A command answers with Huddle-Position naming the last event it
// appended (its stream and version); a GET that sends it back as Huddle-Min-Position waits until
// the read models applied that event. The token is opaque to clients.
const (
	headerPosition    = "Huddle-Position"
	headerMinPosition = "Huddle-Min-Position"
)

func encodePosition(streamID string, version int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(streamID + "@" + strconv.FormatInt(version, 10)))
}

func decodePosition(token string) (streamID string, version int64, err error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return "", 0, fmt.Errorf("malformed position token")
	}
	stream, v, ok := strings.Cut(string(raw), "@")
	version, convErr := strconv.ParseInt(v, 10, 64)
	if !ok || stream == "" || convErr != nil || version < 1 {
		return "", 0, fmt.Errorf("malformed position token")
	}
	return stream, version, nil
}
