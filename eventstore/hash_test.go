package eventstore

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

func TestCanonicalJSON_SurvivesJSONBNormalisation(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{`{"b":1,"a":2}`, `{"a": 2, "b": 1}`},
		{`{"n":1.50}`, `{"n": 1.5}`},
		{`{"n":1e2}`, `{"n": 100}`},
		{`{"n":-0}`, `{"n": 0}`},
		{`{"n":0.00}`, `{"n": 0}`},
		{`{"n":12.5e-3}`, `{"n": 0.0125}`},
		{`{"s":"\u00e9\n<"}`, `{"s": "é\n<"}`},
		{`{"a":1,"a":2}`, `{"a": 2}`},
	} {
		ca, err := canonicalJSON([]byte(tc.a))
		if err != nil {
			t.Fatal(err)
		}
		cb, err := canonicalJSON([]byte(tc.b))
		if err != nil {
			t.Fatal(err)
		}
		if string(ca) != string(cb) {
			t.Errorf("%s -> %s but %s -> %s", tc.a, ca, tc.b, cb)
		}
	}
	for _, tc := range []struct{ a, b string }{
		{`{"n":1}`, `{"n":10}`},
		{`{"n":1}`, `{"n":"1"}`},
		{`["a","b"]`, `["b","a"]`},
	} {
		ca, _ := canonicalJSON([]byte(tc.a))
		cb, _ := canonicalJSON([]byte(tc.b))
		if string(ca) == string(cb) {
			t.Errorf("%s and %s encode alike: %s", tc.a, tc.b, ca)
		}
	}
	if _, err := canonicalJSON([]byte(`{"a":1} x`)); err == nil {
		t.Error("trailing data accepted")
	}
}

func TestCanonicalMetadata_MatchesCanonicalJSONOfItsMarshalling(t *testing.T) {
	// Every field gets a distinct awkward value, so a field added to Metadata but not to
	// canonicalMetadata fails here.
	var md Metadata
	v := reflect.ValueOf(&md).Elem()
	for i := range v.NumField() {
		v.Field(i).SetString(fmt.Sprintf("v%d \"é\n<&>", i))
	}
	raw, err := json.Marshal(md)
	if err != nil {
		t.Fatal(err)
	}
	want, err := canonicalJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := canonicalMetadata(md); string(got) != string(want) {
		t.Fatalf("canonicalMetadata = %s, want %s", got, want)
	}
}

func TestSubject_KeepsTokensSafe(t *testing.T) {
	e := RecordedEvent{StreamID: "conversation-x.y", Type: "MessageSent", Metadata: Metadata{ClinicID: "clinic a.*>"}}
	if got, want := Subject(e), "huddle.events.clinic_a___.conversation.MessageSent"; got != want {
		t.Fatalf("Subject = %q, want %q", got, want)
	}
	if got := Subject(RecordedEvent{StreamID: "directory", Type: "T"}); got != "huddle.events._.directory.T" {
		t.Fatalf("empty clinic: %q", got)
	}
}
