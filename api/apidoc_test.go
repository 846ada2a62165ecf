package api

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// apiDoc is docs/API.md. When the shared contract is beside the repository
// (../shared/API.md and ../shared/API-v1.1.md), it must be API.md followed by API-v1.1.md from
// its second heading on, byte for byte.
func apiDoc(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	v1, err1 := os.ReadFile("../../shared/API.md")
	v11, err2 := os.ReadFile("../../shared/API-v1.1.md")
	if err1 == nil && err2 == nil {
		loc := regexp.MustCompile(`(?m)^#`).FindAllIndex(v11, 2)
		if len(loc) < 2 {
			t.Fatal("shared/API-v1.1.md has fewer than two headings")
		}
		want := strings.TrimRight(string(v1), "\n") + "\n\n" + string(v11[loc[1][0]:])
		if string(raw) != want {
			t.Errorf("docs/API.md has drifted from shared/API.md + shared/API-v1.1.md (from its second heading): rebuild it from them")
		}
	}
	return string(raw)
}

// TestAPIDocAgreesWithOpenAPI reads the prose contract (docs/API.md) and checks that
// openapi.yaml documents every operation it names, with every status it promises, and every
// error code it lists.
func TestAPIDocAgreesWithOpenAPI(t *testing.T) {
	text := apiDoc(t)

	// Path-level "parameters" is a list; decode operations leniently.
	var loose struct {
		Paths      map[string]map[string]any `yaml:"paths"`
		Components struct {
			Schemas struct {
				Problem struct {
					Properties struct {
						Code struct {
							Examples []string `yaml:"examples"`
						} `yaml:"code"`
					} `yaml:"properties"`
				} `yaml:"Problem"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(OpenAPI, &loose); err != nil {
		t.Fatal(err)
	}
	responses := func(method, path string) (map[string]any, bool) {
		op, ok := loose.Paths[path][strings.ToLower(method)].(map[string]any)
		if !ok {
			return nil, false
		}
		r, _ := op["responses"].(map[string]any)
		return r, true
	}

	opRE := regexp.MustCompile("`(GET|PUT|POST|DELETE|PATCH) (/[^`?\\s]*)[^`]*`")
	statusRE := regexp.MustCompile(`(?:→ |\()([1-5][0-9][0-9])\b`)
	var entries []string // one bullet of the contract, continuation lines joined
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "- ") || len(entries) == 0 {
			entries = append(entries, line)
		} else if strings.HasPrefix(line, "  ") {
			entries[len(entries)-1] += " " + strings.TrimSpace(line)
		} else {
			entries = append(entries, line)
		}
	}
	// named reports whether openapi.yaml has the operation.
	named := func(method, path string) bool {
		_, ok := responses(method, path)
		if !ok {
			t.Errorf("API.md names %s %s; openapi.yaml does not", method, path)
		}
		return ok
	}
	checked := 0
	for _, entry := range entries {
		ops := opRE.FindAllStringSubmatch(entry, -1)
		if len(ops) == 0 || !strings.HasPrefix(entry, "- `") {
			continue
		}
		method, path := ops[0][1], ops[0][2]
		if !named(method, path) {
			continue
		}
		checked++
		resp, _ := responses(method, path)
		for _, m := range statusRE.FindAllStringSubmatch(entry, -1) {
			if _, ok := resp[m[1]]; !ok {
				t.Errorf("API.md promises %s for %s %s; openapi.yaml does not list it", m[1], method, path)
			}
		}
		// "`DELETE` same path" and ", `DELETE` → 204": another method on the same path.
		for _, alt := range regexp.MustCompile("`(GET|PUT|POST|DELETE|PATCH)`").FindAllStringSubmatch(entry, -1) {
			named(alt[1], path)
		}
		// The remaining ops in a bullet are also real operations (e.g. two on one line).
		for _, other := range ops[1:] {
			named(other[1], other[2])
		}
	}
	if checked < 28 {
		t.Errorf("only %d operations read from API.md: the parser is not seeing the contract", checked)
	}

	// Every error code the contract lists is one openapi.yaml lists: v1's "Codes used below",
	// v1.1's "403 `unknown_user`"-style conventions and its "New error codes".
	flat := strings.ReplaceAll(text, "\n", " ")
	var codes []string
	for _, list := range []*regexp.Regexp{regexp.MustCompile(`Codes used below: ([^.]*)\.`), regexp.MustCompile(`New error codes: ([^.]*)\.`)} {
		m := list.FindStringSubmatch(flat)
		if m == nil {
			t.Fatalf("API.md: no %q list of error codes found", list)
		}
		for _, c := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(m[1], -1) {
			codes = append(codes, c[1])
		}
	}
	for _, c := range regexp.MustCompile("[1-5][0-9][0-9] `([a-z_]+)`").FindAllStringSubmatch(flat, -1) {
		codes = append(codes, c[1])
	}
	listed := map[string]bool{}
	for _, c := range loose.Components.Schemas.Problem.Properties.Code.Examples {
		listed[c] = true
	}
	for _, code := range codes {
		if !listed[code] {
			t.Errorf("error code %s of API.md is not in openapi.yaml's Problem code examples", code)
		}
	}
	if len(codes) < 20 {
		t.Errorf("only %d error codes read from API.md: the parser is not seeing the contract", len(codes))
	}
}
