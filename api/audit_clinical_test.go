package api_test

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"
)

// Auditors still see what was sent, edited and recalled, by whom and when (API-v1.1 "Clinical
// messaging"): the state at any instant shows the message as it stood with its original text,
// every edit and the recall; the export carries every event with its actor and time.

func (s *scenario) stateMessage(auditor, conversation, id string, at time.Time) map[string]any {
	s.t.Helper()
	r := s.must(s.do("GET", "/v1/audit/conversations/"+conversation+"/state?at="+url.QueryEscape(at.Format(time.RFC3339Nano)), auditor, nil), 200, "")
	for _, m := range r.list("messages") {
		if m["id"] == id {
			return m
		}
	}
	s.t.Fatalf("state at %v has no message %s: %s", at, id, r.body)
	return nil
}

// timeOf parses an RFC 3339 field and checks it lies between two instants.
func timeOf(t *testing.T, v any, after, before time.Time) time.Time {
	t.Helper()
	str, _ := v.(string)
	at, err := time.Parse(time.RFC3339Nano, str)
	if err != nil || !at.After(after) || !at.Before(before) {
		t.Fatalf("time %v (%v): want between %v and %v", v, err, after, before)
	}
	return at
}

func TestAudit_EditsRecallsAndAcknowledgementsWithActorsAndTimes(t *testing.T) {
	s := startScenario(t)
	tok := clinicalSetup(s)
	ann, bob, cat, aud := tok["ann"], tok["bob"], tok["cat"], tok["auditor"]
	g := s.must(s.do("POST", "/v1/conversations", ann, map[string]any{"participant_ids": []string{"bob", "cat"}, "title": "Ward"}), 201, "").str("id")
	messages := "/v1/conversations/" + g + "/messages"

	t0 := between()
	id := s.must(s.do("POST", messages, bob, map[string]any{"text": "Patient in room 3"}), 201, "").str("id")
	urgent := s.must(s.do("POST", messages, ann, map[string]any{"text": "Bed 4 now", "priority": "urgent"}), 201, "").str("id")
	t1 := between()
	s.must(s.do("PATCH", messages+"/"+id, bob, map[string]any{"text": "Patient in room 5"}), 200, "")
	s.must(s.do("POST", messages+"/"+urgent+"/ack", cat, nil), 204, "")
	t2 := between()
	s.must(s.do("PATCH", messages+"/"+id, bob, map[string]any{"text": "Patient in room 6"}), 200, "")
	t3 := between()
	s.must(s.do("DELETE", messages+"/"+id, ann, nil), 204, "") // the group's owner recalls it
	t4 := between()

	m := s.stateMessage(aud, g, id, t1)
	if m["text"] != "Patient in room 3" || m["edited_at"] != nil || m["edits"] != nil || m["original_text"] != nil || m["recalled"] != nil || m["priority"] != "normal" {
		t.Fatalf("as sent: %v", m)
	}
	u := s.stateMessage(aud, g, urgent, t1)
	if acks, _ := u["acks"].(map[string]any); u["priority"] != "urgent" || len(acks["acked"].([]any)) != 0 || !slices.Equal(strs(acks["pending"]), []string{"bob", "cat"}) {
		t.Fatalf("urgent, before any acknowledgement: %v", u)
	}

	m = s.stateMessage(aud, g, id, t2)
	edits, _ := m["edits"].([]any)
	if m["text"] != "Patient in room 5" || m["original_text"] != "Patient in room 3" || len(edits) != 1 {
		t.Fatalf("after one edit: %v", m)
	}
	e1 := edits[0].(map[string]any)
	if e1["text"] != "Patient in room 5" || e1["edited_by"] != "bob" {
		t.Fatalf("first edit: %v", e1)
	}
	if timeOf(t, e1["at"], t1, t2) != timeOf(t, m["edited_at"], t1, t2) {
		t.Fatalf("edited_at %v is not the edit's time %v", m["edited_at"], e1["at"])
	}
	u = s.stateMessage(aud, g, urgent, t2)
	acks, _ := u["acks"].(map[string]any)
	acked, _ := acks["acked"].([]any)
	if len(acked) != 1 || acked[0].(map[string]any)["user_id"] != "cat" || !slices.Equal(strs(acks["pending"]), []string{"bob"}) {
		t.Fatalf("urgent, after cat's acknowledgement: %v", u)
	}
	timeOf(t, acked[0].(map[string]any)["at"], t1, t2)

	m = s.stateMessage(aud, g, id, t3)
	if edits, _ := m["edits"].([]any); m["text"] != "Patient in room 6" || m["original_text"] != "Patient in room 3" || len(edits) != 2 || m["recalled"] != nil {
		t.Fatalf("after two edits: %v", m)
	}

	m = s.stateMessage(aud, g, id, t4)
	recall, _ := m["recall"].(map[string]any)
	if m["recalled"] != true || recall["recalled_by"] != "ann" || m["text"] != "Patient in room 6" || m["original_text"] != "Patient in room 3" {
		t.Fatalf("after the recall, the auditor still sees what was said: %v", m)
	}
	timeOf(t, recall["at"], t3, t4)
	// The export: every event, with its actor and time, in both formats.
	type row struct{ typ, actor, text, by string }
	want := []row{{"MessageSent", "bob", "Patient in room 3", ""}, {"MessageEdited", "bob", "Patient in room 5", "bob"},
		{"MessageEdited", "bob", "Patient in room 6", "bob"}, {"MessageRecalled", "ann", "", "ann"}}
	pick := func(typ, actor string, data []byte, recorded string) (row, bool) {
		var d struct {
			MessageID  string `json:"message_id"`
			Text       string `json:"text"`
			EditedBy   string `json:"edited_by"`
			RecalledBy string `json:"recalled_by"`
		}
		if err := json.Unmarshal(data, &d); err != nil || d.MessageID != id {
			return row{}, false
		}
		timeOf(t, recorded, t0, t4)
		return row{typ, actor, d.Text, d.EditedBy + d.RecalledBy}, true
	}
	var got []row
	body := s.download(aud, "/v1/audit/conversations/"+g+"/export?format=jsonl")
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		var e struct {
			Type       string          `json:"type"`
			Data       json.RawMessage `json:"data"`
			RecordedAt string          `json:"recorded_at"`
			Metadata   struct {
				ActorID string `json:"actor_id"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("export line %s: %v", sc.Bytes(), err)
		}
		if r, ok := pick(e.Type, e.Metadata.ActorID, e.Data, e.RecordedAt); ok {
			got = append(got, r)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("jsonl export of the message's history:\n got  %v\n want %v", got, want)
	}
	got = nil
	records, err := csv.NewReader(bytes.NewReader(s.download(aud, "/v1/audit/conversations/"+g+"/export?format=csv"))).ReadAll()
	if err != nil || len(records) < 2 {
		t.Fatalf("csv export: %v (%d rows)", err, len(records))
	}
	col := map[string]int{}
	for i, name := range records[0] {
		col[name] = i
	}
	for _, rec := range records[1:] {
		if r, ok := pick(rec[col["type"]], rec[col["actor_id"]], []byte(rec[col["data"]]), rec[col["recorded_at"]]); ok {
			got = append(got, r)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("csv export of the message's history:\n got  %v\n want %v", got, want)
	}
}

// download GETs a file-like answer (the export) and returns its body.
func (s *scenario) download(token, path string) []byte {
	s.t.Helper()
	req, _ := http.NewRequest("GET", s.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		s.t.Fatalf("GET %s: %d %v: %s", path, res.StatusCode, err, body)
	}
	return body
}

func strs(v any) []string {
	list, _ := v.([]any)
	out := []string{}
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}
