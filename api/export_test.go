package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

// The OpenAPI document's schemas are JSON Schema 2020-12 (OpenAPI 3.1), so real responses can
// be validated against them with a JSON Schema validator. CheckResponse is used by the
// scenario tests: every response they receive must match what openapi.yaml promises for that
// operation and status.

const openAPIURL = "https://huddle.dev/openapi.json"

type operation struct {
	method  string
	pattern *regexp.Regexp
	path    string
	// responses maps a status to its JSON schema pointer per content type.
	responses map[int]map[string]string
}

var (
	specOnce   sync.Once
	specErr    error
	specOps    []operation
	specSchema = map[string]*jsonschema.Schema{}
	specMu     sync.Mutex
	compiler   *jsonschema.Compiler
)

func loadSpec() {
	var doc map[string]any
	if specErr = yaml.Unmarshal(OpenAPI, &doc); specErr != nil {
		return
	}
	// Round-trip through JSON so the validator sees plain JSON types.
	raw, err := json.Marshal(doc)
	if err != nil {
		specErr = err
		return
	}
	jdoc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		specErr = err
		return
	}
	compiler = jsonschema.NewCompiler()
	compiler.DefaultDraft(jsonschema.Draft2020)
	if specErr = compiler.AddResource(openAPIURL, jdoc); specErr != nil {
		return
	}
	param := regexp.MustCompile(`\{[a-z_]+\}`)
	paths := doc["paths"].(map[string]any)
	for path, rawOps := range paths {
		ops := rawOps.(map[string]any)
		quoted := regexp.QuoteMeta(param.ReplaceAllString(path, "PARAM"))
		pattern := regexp.MustCompile("^" + strings.ReplaceAll(quoted, "PARAM", `[^/]+`) + "$")
		for method, rawOp := range ops {
			m, ok := openAPIMethods[method]
			if !ok {
				continue
			}
			op := operation{method: m, pattern: pattern, path: path, responses: map[int]map[string]string{}}
			responses, _ := rawOp.(map[string]any)["responses"].(map[string]any)
			for code, rawResp := range responses {
				status, err := strconv.Atoi(code)
				if err != nil {
					continue
				}
				op.responses[status] = map[string]string{}
				resp := rawResp.(map[string]any)
				ptr := "#/paths/" + escapePointer(path) + "/" + method + "/responses/" + code
				if ref, ok := resp["$ref"].(string); ok {
					ptr = ref
					name := strings.TrimPrefix(ref, "#/components/responses/")
					resp = doc["components"].(map[string]any)["responses"].(map[string]any)[name].(map[string]any)
				}
				content, _ := resp["content"].(map[string]any)
				for ctype := range content {
					op.responses[status][ctype] = ptr + "/content/" + escapePointer(ctype) + "/schema"
				}
			}
			specOps = append(specOps, op)
		}
	}
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// CheckResponse fails t unless the response is one openapi.yaml documents for this request:
// a known operation, a listed status, and (for JSON bodies) a body matching the schema.
func CheckResponse(t testing.TB, method, path string, status int, contentType string, body []byte) {
	t.Helper()
	specOnce.Do(loadSpec)
	if specErr != nil {
		t.Fatalf("openapi.yaml: %v", specErr)
	}
	var op *operation
	for i := range specOps {
		o := &specOps[i]
		// Literal paths win over templated ones (/v1/audit/verify vs a {id} template).
		if o.method == method && o.pattern.MatchString(path) && (op == nil || !strings.Contains(o.path, "{")) {
			op = o
		}
	}
	if op == nil {
		t.Errorf("openapi.yaml documents no operation %s %s", method, path)
		return
	}
	contents, ok := op.responses[status]
	if !ok {
		t.Errorf("%s %s answered %d, which openapi.yaml does not list for %s %s", method, path, status, op.method, op.path)
		return
	}
	mediaType, _, _ := strings.Cut(contentType, ";")
	mediaType = strings.TrimSpace(mediaType)
	if len(contents) == 0 {
		if len(body) > 0 && status != http.StatusNoContent {
			t.Errorf("%s %s %d: body where openapi.yaml documents none", method, path, status)
		}
		return
	}
	ptr, ok := contents[mediaType]
	if !ok {
		ptr, ok = contents["*/*"]
	}
	if !ok {
		t.Errorf("%s %s %d: content type %q not documented (have %v)", method, path, status, mediaType, keys(contents))
		return
	}
	if mediaType != "application/json" && !strings.HasSuffix(mediaType, "+json") {
		return // not one JSON document (bytes, CSV, JSON lines, an event stream)
	}
	schema, err := compiled(ptr)
	if err != nil {
		t.Fatalf("compile %s: %v", ptr, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		t.Errorf("%s %s %d: body is not JSON: %v", method, path, status, err)
		return
	}
	if err := schema.Validate(doc); err != nil {
		t.Errorf("%s %s %d: body does not match openapi.yaml:\n%v\nbody: %s", method, path, status, err, truncate(body))
	}
}

// CheckSchema fails t unless body matches the named schema of openapi.yaml's components
// (e.g. "Summary"): the live stream's payloads are the API's own shapes.
func CheckSchema(t testing.TB, name string, body []byte) {
	t.Helper()
	specOnce.Do(loadSpec)
	if specErr != nil {
		t.Fatalf("openapi.yaml: %v", specErr)
	}
	schema, err := compiled("#/components/schemas/" + name)
	if err != nil {
		t.Fatalf("compile %s: %v", name, err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		t.Errorf("%s: not JSON: %v", name, err)
		return
	}
	if err := schema.Validate(doc); err != nil {
		t.Errorf("payload does not match schema %s:\n%v\nbody: %s", name, err, truncate(body))
	}
}

func compiled(ptr string) (*jsonschema.Schema, error) {
	specMu.Lock()
	defer specMu.Unlock()
	if s, ok := specSchema[ptr]; ok {
		return s, nil
	}
	s, err := compiler.Compile(openAPIURL + ptr)
	if err != nil {
		return nil, err
	}
	specSchema[ptr] = s
	return s, nil
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func truncate(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + fmt.Sprintf("… (%d bytes)", len(b))
	}
	return string(b)
}

func TestCheckResponse_CatchesWhatTheDocumentDoesNotAllow(t *testing.T) {
	ft := &fakeT{}
	CheckResponse(ft, "GET", "/v1/unread", 200, "application/json", []byte(`{"total":1,"total_including_muted":1,"conversations":[]}`))
	if ft.failed {
		t.Fatalf("a valid body was refused: %s", ft.msg)
	}
	for _, bad := range []struct {
		method, path string
		status       int
		ctype, body  string
	}{
		{"GET", "/v1/unread", 200, "application/json", `{"total":"1","total_including_muted":1,"conversations":[]}`},
		{"GET", "/v1/unread", 418, "application/json", `{}`},
		{"GET", "/v1/nowhere", 200, "application/json", `{}`},
		{"GET", "/v1/conversations/abc", 404, "application/problem+json", `{"title":"x"}`},
		{"GET", "/v1/conversations/abc/messages", 200, "application/json", `{"messages":[{"id":"m","kind":"text"}]}`},
	} {
		ft := &fakeT{}
		CheckResponse(ft, bad.method, bad.path, bad.status, bad.ctype, []byte(bad.body))
		if !ft.failed {
			t.Errorf("%s %s %d %s was accepted", bad.method, bad.path, bad.status, bad.body)
		}
	}
}

type fakeT struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Errorf(format string, args ...any) {
	f.failed = true
	f.msg = fmt.Sprintf(format, args...)
}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = fmt.Sprintf(format, args...)
}
