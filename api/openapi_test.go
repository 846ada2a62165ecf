package api

import (
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"
)

var openAPIMethods = map[string]string{"get": http.MethodGet, "put": http.MethodPut, "post": http.MethodPost,
	"delete": http.MethodDelete, "patch": http.MethodPatch}

// documentedRoutes lists "METHOD /path" for every operation in openapi.yaml, with {param}
// written the router's way (:param).
func documentedRoutes(t *testing.T) map[string]bool {
	t.Helper()
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi.yaml is version %q, want 3.1.x", doc.OpenAPI)
	}
	param := regexp.MustCompile(`\{([a-z_]+)\}`)
	out := map[string]bool{}
	for path, ops := range doc.Paths {
		for op := range ops {
			if m, ok := openAPIMethods[op]; ok {
				out[m+" "+param.ReplaceAllString(path, ":$1")] = true
			}
		}
	}
	return out
}

// routerRoutes lists "METHOD /path" for every route the server really serves.
func routerRoutes(s *Server) map[string]bool {
	out := map[string]bool{}
	for _, r := range s.Echo().Routes() {
		// Echo registers catch-all not-found routes for groups with middleware; they are not
		// part of the API.
		if strings.HasSuffix(r.Path, "/*") || strings.HasSuffix(r.Name, "NotFoundHandler") || strings.HasPrefix(r.Method, "echo_route_") {
			continue
		}
		out[r.Method+" "+r.Path] = true
	}
	return out
}

func TestOpenAPIMatchesRouter(t *testing.T) {
	s := New(Deps{JWTSecret: []byte("x"), Metrics: prometheus.NewRegistry()})
	doc, router := documentedRoutes(t), routerRoutes(s)
	var missing, extra []string
	for r := range router {
		if !doc[r] {
			missing = append(missing, r)
		}
	}
	for r := range doc {
		if !router[r] {
			extra = append(extra, r)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("routes the router serves but openapi.yaml lacks:\n  %s", strings.Join(missing, "\n  "))
	}
	if len(extra) > 0 {
		t.Errorf("operations openapi.yaml documents but the router lacks:\n  %s", strings.Join(extra, "\n  "))
	}
	if len(router) < 25 {
		t.Errorf("only %d routes found: the comparison is not seeing the API", len(router))
	}
}

// Generated clients name their methods after operationId: every operation has one, unique.
func TestOpenAPI_EveryOperationHasAUniqueOperationID(t *testing.T) {
	// Path-level "parameters" is a list, not an operation: decode operations one by one.
	var loose struct {
		Paths map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(OpenAPI, &loose); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	n := 0
	for path, ops := range loose.Paths {
		for method, node := range ops {
			if _, ok := openAPIMethods[method]; !ok {
				continue
			}
			n++
			var op struct {
				OperationID string `yaml:"operationId"`
			}
			if err := node.Decode(&op); err != nil {
				t.Fatal(err)
			}
			where := method + " " + path
			switch prev, dup := seen[op.OperationID]; {
			case op.OperationID == "":
				t.Errorf("%s has no operationId", where)
			case dup:
				t.Errorf("%s and %s share operationId %s", prev, where, op.OperationID)
			}
			seen[op.OperationID] = where
		}
	}
	if n < 30 {
		t.Errorf("only %d operations read from openapi.yaml", n)
	}
}
