package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strconv"
	"strings"
)

// DirectConversationID derives the id of the one direct chat between two users of a clinic. It
// hashes the clinic and the sorted pair, so both people (and both instances of a race) name the
// same stream, and the id reveals neither user. "d-" keeps it inside the API's id alphabet.
func DirectConversationID(clinicID, userA, userB string) string {
	pair := []string{userA, userB}
	sort.Strings(pair)
	sum := sha256.Sum256([]byte(clinicID + "\x00" + pair[0] + "\x00" + pair[1]))
	return "d-" + hex.EncodeToString(sum[:16])
}

// MessageID names the message stored at version of a conversation's stream. Carrying the
// version lets a read marker ("read up to this message") be resolved with one indexed read
// instead of keeping every message id in the conversation's state. Clients treat it as opaque.
func MessageID(conversationID string, version int64) string {
	return conversationID + "." + strconv.FormatInt(version, 10)
}

// ParseMessageID splits a MessageID into its conversation id and stream version.
func ParseMessageID(id string) (conversationID string, version int64, ok bool) {
	i := strings.LastIndexByte(id, '.')
	if i <= 0 {
		return "", 0, false
	}
	v, err := strconv.ParseInt(id[i+1:], 10, 64)
	if err != nil || v < 1 {
		return "", 0, false
	}
	return id[:i], v, true
}
