// Package web is Huddle's browser client: plain ES modules, HTML and CSS with no build step,
// embedded in the binary and served by `huddle serve` at /. The client talks to the same
// public API as any other frontend (docs/API.md); nothing here knows the server's internals.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/labstack/echo/v4"
)

//go:embed static
var static embed.FS

// CSP allows only the client's own files: no inline script or style, no other origin, no
// framing. The bearer token lives in the page, so an injected script must have nowhere to run
// and nowhere to send it.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"media-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; " +
	"frame-ancestors 'none'; form-action 'self'"

type asset struct {
	body        []byte
	contentType string
	etag        string
}

var assets = load()

func load() map[string]asset {
	out := map[string]asset{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		// mime's table comes partly from the host (/etc/mime.types); pin the ones a strict
		// browser checks (module scripts must be JavaScript, nosniff stylesheets text/css).
		switch path.Ext(p) {
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".html":
			ct = "text/html; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		}
		out["/"+strings.TrimPrefix(p, "static/")] = asset{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic("web: embedded assets unreadable: " + err.Error()) // a build defect, not input
	}
	return out
}

// Serve answers GET for the client's files: / is index.html. Any other path is 404 (the
// server's problem+json), so a mistyped API path never gets an HTML page back.
//
// File names carry no content hash (there is no build step), so every answer is revalidated
// (no-cache) against a strong ETag: a new binary's client is picked up on the next load, and
// an unchanged file costs a 304.
func Serve(c echo.Context) error {
	p := c.Request().URL.Path
	if p == "/" {
		p = "/index.html"
	}
	a, ok := assets[p]
	if !ok {
		// Not echo.ErrNotFound: the server's error handler reads that sentinel as "no route"
		// and would answer 405 (this catch-all route matches every GET).
		return echo.NewHTTPError(http.StatusNotFound, "no such page")
	}
	h := c.Response().Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	if match := c.Request().Header.Get("If-None-Match"); match != "" && strings.Contains(match, a.etag) {
		return c.NoContent(http.StatusNotModified)
	}
	return c.Blob(http.StatusOK, a.contentType, a.body)
}
