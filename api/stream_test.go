package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/api"
)

// sseEvent is one Server-Sent Event as a client parses it.
type sseEvent struct {
	id    int64
	event string
	data  map[string]any
	raw   []byte
}

// sseClient reads a stream in the background.
type sseClient struct {
	events chan sseEvent
	cancel context.CancelFunc
	status int
}

func (s *scenario) stream(token, lastEventID string) *sseClient {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", s.base+"/v1/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		s.t.Fatal(err)
	}
	c := &sseClient{events: make(chan sseEvent, 1000), cancel: cancel, status: res.StatusCode}
	s.t.Cleanup(cancel)
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		return c
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		s.t.Fatalf("stream content type %q", ct)
	}
	go func() {
		defer res.Body.Close()
		defer close(c.events)
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var cur sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.event != "" {
					c.events <- cur
				}
				cur = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				cur.id, _ = strconv.ParseInt(strings.TrimPrefix(line, "id: "), 10, 64)
			case strings.HasPrefix(line, "event: "):
				cur.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				cur.raw = []byte(strings.TrimPrefix(line, "data: "))
				_ = json.Unmarshal(cur.raw, &cur.data)
			}
		}
	}()
	return c
}

// next returns the next event of the given kind, skipping others (collected into skipped).
func (c *sseClient) next(t *testing.T, kind string, skipped *[]sseEvent) sseEvent {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-c.events:
			if !ok {
				t.Fatalf("stream ended while waiting for %s", kind)
			}
			if e.event == kind {
				return e
			}
			if skipped != nil {
				*skipped = append(*skipped, e)
			}
		case <-timeout:
			t.Fatalf("no %s event within 10 s", kind)
		}
	}
}

// drain collects what arrives until the stream stays quiet for a moment.
func (c *sseClient) drain(quiet time.Duration) []sseEvent {
	var out []sseEvent
	for {
		select {
		case e, ok := <-c.events:
			if !ok {
				return out
			}
			out = append(out, e)
		case <-time.After(quiet):
			return out
		}
	}
}

func TestStream_LiveUpdatesMuteOwnMessagesResumeAndRemoval(t *testing.T) {
	s := startScenario(t)
	admin := s.token("root", api.RoleAdmin)
	s.must(s.do("PUT", "/v1/admin/rooms/r1", admin, map[string]any{"name": "Room"}), 200, "")
	for _, u := range []string{"ann", "bob"} {
		s.must(s.do("PUT", "/v1/admin/users/"+u, admin, map[string]any{"name": "User " + u, "email": u + "@clinic.test"}), 200, "")
		s.must(s.do("PUT", "/v1/admin/rooms/r1/members/"+u, admin, nil), 204, "")
	}
	ann, bob := s.token("ann", api.RoleStaff), s.token("bob", api.RoleStaff)

	live := s.stream(bob, "")
	chat := s.must(s.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob"}}), 201, "").str("id")
	s.must(s.do("POST", "/v1/conversations/"+chat+"/messages", ann, map[string]any{"text": "hi bob"}), 201, "")
	var others []sseEvent
	m := live.next(t, "message", &others)
	if m.data["text"] != "hi bob" || m.data["conversation_id"] != chat || m.data["notify"] != true || m.id < 1 {
		t.Fatalf("first message event: %+v", m)
	}
	c := live.next(t, "conversation", &others)
	if c.data["id"] != chat || c.data["last_message"].(map[string]any)["preview"] != "hi bob" || c.data["unread_count"].(float64) != 1 {
		t.Errorf("conversation event after a new message: %+v", c)
	}
	u := live.next(t, "unread", &others)
	if u.data["total"].(float64) < 1 {
		t.Errorf("unread event after a new message: %+v", u)
	}
	// The payloads are the API's own shapes.
	api.CheckSchema(t, "Message", m.raw)
	api.CheckSchema(t, "Summary", c.raw)
	api.CheckSchema(t, "Unread", u.raw)

	// Muted: still delivered (unread grows) but no pop-up and no sound.
	s.must(s.do("PUT", "/v1/conversations/"+chat+"/mute", bob, nil), 204, "")
	s.must(s.do("POST", "/v1/conversations/"+chat+"/messages", ann, map[string]any{"text": "quiet please"}), 201, "")
	if m := live.next(t, "message", nil); m.data["text"] != "quiet please" || m.data["notify"] != false {
		t.Fatalf("message in a muted chat: %+v", m)
	}
	s.must(s.do("DELETE", "/v1/conversations/"+chat+"/mute", bob, nil), 204, "")
	// One's own message never notifies.
	s.must(s.do("POST", "/v1/conversations/"+chat+"/messages", bob, map[string]any{"text": "mine"}), 201, "")
	mine := live.next(t, "message", nil)
	if mine.data["text"] != "mine" || mine.data["notify"] != false {
		t.Fatalf("own message: %+v", mine)
	}
	seen := append(live.drain(300*time.Millisecond), mine)
	last := mine.id
	for _, e := range seen {
		if e.id > last {
			last = e.id
		}
	}
	live.cancel()

	// Offline: two messages arrive. Reconnecting with Last-Event-ID resumes right after it.
	s.must(s.do("POST", "/v1/conversations/"+chat+"/messages", ann, map[string]any{"text": "while away 1"}), 201, "")
	s.must(s.do("POST", "/v1/conversations/"+chat+"/messages", ann, map[string]any{"text": "while away 2"}), 201, "")
	resumed := s.stream(bob, strconv.FormatInt(last, 10))
	var texts []string
	var got []sseEvent
	for len(texts) < 2 {
		e := resumed.next(t, "message", &got)
		got = append(got, e)
		texts = append(texts, e.data["text"].(string))
	}
	if texts[0] != "while away 1" || texts[1] != "while away 2" {
		t.Fatalf("resumed messages %v", texts)
	}
	got = append(got, resumed.drain(300*time.Millisecond)...)
	for i, e := range got {
		if e.id != last+int64(i)+1 {
			t.Fatalf("resumed event %d has id %d after Last-Event-ID %d: lost or repeated", i, e.id, last)
		}
	}

	// A group deleted by its owner leaves bob's list: `removed`.
	group := s.must(s.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob"}, "title": "Short-lived"}), 201, "").str("id")
	s.must(s.do("DELETE", "/v1/conversations/"+group, ann, nil), 204, "")
	if r := resumed.next(t, "removed", nil); r.data["conversation_id"] != group {
		t.Fatalf("removed event: %+v", r)
	}
	resumed.cancel()

	// Resuming from beyond what the server holds: reset, then live again.
	reset := s.stream(bob, "999999")
	if e := reset.next(t, "reset", nil); e.id < 1 {
		t.Fatalf("reset event without a resumable id: %+v", e)
	}
	s.must(s.do("POST", "/v1/conversations/"+chat+"/messages", ann, map[string]any{"text": "after reset"}), 201, "")
	if m := reset.next(t, "message", nil); m.data["text"] != "after reset" {
		t.Fatalf("after reset: %+v", m)
	}

	// Not an id at all: a reset too, not an error status after which EventSource gives up.
	for _, bad := range []string{"not-a-number", "-1"} {
		c := s.stream(bob, bad)
		if c.status != http.StatusOK {
			t.Fatalf("Last-Event-ID %q: status %d, want 200 and a reset event", bad, c.status)
		}
		if e := c.next(t, "reset", nil); e.id < 1 {
			t.Fatalf("Last-Event-ID %q: reset event without a resumable id: %+v", bad, e)
		}
		c.cancel()
	}
	if none := s.stream("", ""); none.status != http.StatusUnauthorized {
		t.Errorf("no token: status %d", none.status)
	}
}
