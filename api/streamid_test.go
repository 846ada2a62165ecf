package api

import (
	"strings"
	"testing"

	"github.com/huddle-chat/huddle/domain"
)

// The audit verify's stream_id takes every stream id Huddle writes, including a member stream
// of a 128-character clinic and user (ADR 0013), and nothing else.
func TestStreamIDPattern_TakesEveryStreamHuddleWrites(t *testing.T) {
	long := strings.Repeat("x", 128)
	for _, ok := range []string{domain.ConversationStream("g-5f1e"), domain.MemberStream(long, long),
		domain.LegacyMemberStream("dr.ann"), domain.AuditStream("c1"), domain.DirectoryStream("clinic:1")} {
		if !streamIDPattern.MatchString(ok) {
			t.Errorf("stream id %q refused", ok)
		}
	}
	for _, bad := range []string{"", "member", "member-", "-u1", "Member-u1", "member-u1/x", "member-u1\x00", domain.MemberStream(long, long+"y")} {
		if streamIDPattern.MatchString(bad) {
			t.Errorf("stream id %q accepted", bad)
		}
	}
}
