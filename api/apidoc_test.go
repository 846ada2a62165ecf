package api

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestAPIDocAgreesWithOpenAPI reads the prose contract (docs/API.md, a copy of shared/API.md)
// and checks that openapi.yaml documents every operation it names, with every status it
// promises, and every error code it lists.
func TestAPIDocAgreesWithOpenAPI(t *testing.T) {
	raw, err := os.ReadFile("../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	copyText := string(raw)
	if shared, err := os.ReadFile("../../shared/API.md"); err == nil {
		// The copy carries one comment line on top; the rest must be the contract itself.
		_, body, _ := strings.Cut(copyText, "\n")
		if body != string(shared) {
			t.Errorf("docs/API.md has drifted from shared/API.md: copy it again (keeping its first line)")
		}
	}

	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]any `yaml:"responses"`
		} `yaml:"paths"`
	}
	// Path-level "parameters" is a list; decode operations leniently.
	var loose struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(OpenAPI, &loose); err != nil {
		t.Fatal(err)
	}
	doc.Paths = map[string]map[string]struct {
		Responses map[string]any `yaml:"responses"`
	}{}
	for path, ops := range loose.Paths {
		doc.Paths[path] = map[string]struct {
			Responses map[string]any `yaml:"responses"`
		}{}
		for method, op := range ops {
			m, ok := op.(map[string]any)
			if !ok {
				continue
			}
			r, _ := m["responses"].(map[string]any)
			doc.Paths[path][method] = struct {
				Responses map[string]any `yaml:"responses"`
			}{r}
		}
	}

	opRE := regexp.MustCompile("`(GET|PUT|POST|DELETE|PATCH) (/[^`?\\s]*)[^`]*`")
	statusRE := regexp.MustCompile(`(?:→ |\()([1-5][0-9][0-9])\b`)
	var entries []string // one bullet of the contract, continuation lines joined
	for _, line := range strings.Split(copyText, "\n") {
		if strings.HasPrefix(line, "- ") || len(entries) == 0 {
			entries = append(entries, line)
		} else if strings.HasPrefix(line, "  ") {
			entries[len(entries)-1] += " " + strings.TrimSpace(line)
		} else {
			entries = append(entries, line)
		}
	}
	checked := 0
	for _, entry := range entries {
		ops := opRE.FindAllStringSubmatch(entry, -1)
		if len(ops) == 0 || !strings.HasPrefix(entry, "- `") {
			continue
		}
		method, path := strings.ToLower(ops[0][1]), ops[0][2]
		op, ok := doc.Paths[path][method]
		if !ok {
			t.Errorf("API.md names %s %s; openapi.yaml does not", ops[0][1], path)
			continue
		}
		checked++
		for _, m := range statusRE.FindAllStringSubmatch(entry, -1) {
			if _, ok := op.Responses[m[1]]; !ok {
				t.Errorf("API.md promises %s for %s %s; openapi.yaml does not list it", m[1], ops[0][1], path)
			}
		}
		// "`DELETE` same path" and ", `DELETE` → 204": another method on the same path.
		for _, alt := range regexp.MustCompile("`(GET|PUT|POST|DELETE|PATCH)`").FindAllStringSubmatch(entry, -1) {
			if _, ok := doc.Paths[path][strings.ToLower(alt[1])]; !ok {
				t.Errorf("API.md names %s on %s; openapi.yaml does not", alt[1], path)
			}
		}
		// The remaining ops in a bullet are also real operations (e.g. two on one line).
		for _, other := range ops[1:] {
			if _, ok := doc.Paths[other[2]][strings.ToLower(other[1])]; !ok {
				t.Errorf("API.md names %s %s; openapi.yaml does not", other[1], other[2])
			}
		}
	}
	if checked < 25 {
		t.Errorf("only %d operations read from API.md: the parser is not seeing the contract", checked)
	}

	// Every error code API.md lists is one openapi.yaml lists.
	codesLine := regexp.MustCompile(`Codes used below: ([^.]*)\.`)
	m := codesLine.FindStringSubmatch(strings.ReplaceAll(copyText, "\n", " "))
	if m == nil {
		t.Fatal("API.md: no list of error codes found")
	}
	for _, code := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(m[1], -1) {
		if !strings.Contains(string(OpenAPI), code[1]) {
			t.Errorf("error code %s of API.md is not in openapi.yaml", code[1])
		}
	}
}
