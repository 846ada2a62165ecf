package web

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

func get(t *testing.T, path string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	e := echo.New()
	e.GET("/*", Serve)
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

func TestServe_ContentTypesAndStrictCSP(t *testing.T) {
	for path, ctype := range map[string]string{
		"/":          "text/html; charset=utf-8",
		"/app.js":    "text/javascript; charset=utf-8",
		"/sse.js":    "text/javascript; charset=utf-8",
		"/style.css": "text/css; charset=utf-8",
		"/icon.svg":  "image/svg+xml",
	} {
		rec := get(t, path)
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != ctype {
			t.Errorf("%s: %d %q, want 200 %q", path, rec.Code, rec.Header().Get("Content-Type"), ctype)
		}
		csp := rec.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", path)
		}
	}
}

func TestServe_RevalidatesWithETag(t *testing.T) {
	first := get(t, "/app.js")
	etag := first.Header().Get("ETag")
	if etag == "" || first.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("ETag %q, Cache-Control %q: want an ETag and no-cache", etag, first.Header().Get("Cache-Control"))
	}
	if again := get(t, "/app.js", "If-None-Match", etag); again.Code != http.StatusNotModified || again.Body.Len() != 0 {
		t.Fatalf("with If-None-Match: %d and %d bytes, want 304 and none", again.Code, again.Body.Len())
	}
	if other := get(t, "/style.css", "If-None-Match", etag); other.Code != http.StatusOK {
		t.Fatalf("another file's ETag answered %d, want 200", other.Code)
	}
}

func TestServe_UnknownPathsAre404(t *testing.T) {
	for _, path := range []string{"/nowhere", "/static/app.js", "/../go.mod", "/index.htm"} {
		if rec := get(t, path); rec.Code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, rec.Code)
		}
	}
}

// The CSP forbids inline code, so markup with any would break in the browser: keep it out.
func TestAssets_NoInlineScriptOrStyleAndEveryImportEmbedded(t *testing.T) {
	html := string(assets["/index.html"].body)
	if regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`).MatchString(html) || strings.Contains(html, "<style") || strings.Contains(html, " style=") {
		t.Error("index.html has inline script or style, which the CSP blocks")
	}
	imports := regexp.MustCompile(`from '\./([a-z]+\.js)'`)
	for name, a := range assets {
		if !strings.HasSuffix(name, ".js") {
			continue
		}
		for _, m := range imports.FindAllStringSubmatch(string(a.body), -1) {
			if _, ok := assets["/"+m[1]]; !ok {
				t.Errorf("%s imports %s, which is not embedded", name, m[1])
			}
		}
		if strings.Contains(string(a.body), ".innerHTML") {
			t.Errorf("%s sets innerHTML: build elements instead (message text is untrusted)", name)
		}
	}
}
