package api

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/commands"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/inbox"
	"github.com/huddle-chat/huddle/internal/blobs"
	"github.com/huddle-chat/huddle/internal/testenv"
)

// fuzzServer is an API on a real database, shared by every input of one fuzz target, with a
// clinic where ann and bob share a room and a group they both belong to.
func fuzzServer(f *testing.F) (h http.Handler, staff, admin, group string) {
	pool, _ := testenv.Postgres(f)
	store := eventstore.New(pool)
	cmds := commands.New(store, blobs.New(pool), commands.Options{MaxFileBytes: 64 << 10})
	secret := []byte("fuzz-secret-fuzz-secret-fuzz-secret")
	// Not testenv.Logger(f): the fuzz target may not log through f.
	// Queries without projectors: a rename or an edit that succeeds finds nothing to answer
	// with (404), which is still an answer, not a failure.
	srv := New(Deps{Logger: slog.New(slog.DiscardHandler), JWTSecret: secret, Commands: cmds, MaxFileBytes: 64 << 10,
		Queries: inbox.NewQueries(pool)})
	staff, _ = MintToken(secret, "ann", testClinic, []string{RoleStaff}, time.Hour)
	admin, _ = MintToken(secret, "root", testClinic, []string{RoleAdmin}, time.Hour)
	call := func(method, path, token, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		return rec
	}
	call("PUT", "/v1/admin/rooms/r1", admin, `{"name":"Room"}`)
	for _, u := range []string{"ann", "bob", "cat"} {
		call("PUT", "/v1/admin/users/"+u, admin, `{"name":"User `+u+`","email":"`+u+`@clinic.test"}`)
		call("PUT", "/v1/admin/rooms/r1/members/"+u, admin, "")
	}
	rec := call("POST", "/v1/conversations", staff, `{"participant_ids":["bob","cat"],"title":"Group"}`)
	var out struct{ ID string }
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.ID == "" {
		f.Fatalf("setup group: %d %s", rec.Code, rec.Body)
	}
	return srv.Handler(), staff, admin, out.ID
}

// checkAnswer fails on a server error, or on an error that is not problem+json.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder, input []byte) {
	t.Helper()
	if len(input) > 200 {
		input = append(input[:200:200], "…"...)
	}
	if rec.Code >= 500 {
		t.Fatalf("status %d for input %q: %s", rec.Code, input, rec.Body)
	}
	if rec.Code >= 400 {
		if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("status %d with content type %q for input %q", rec.Code, ct, input)
		}
		var p Problem
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Code == "" || p.Status != rec.Code {
			t.Fatalf("status %d with a malformed problem %s for input %q", rec.Code, rec.Body, input)
		}
	}
}

// FuzzJSONCommands throws arbitrary bodies at every JSON command endpoint.
func FuzzJSONCommands(f *testing.F) {
	h, staff, admin, group := fuzzServer(f)
	for _, seed := range []string{
		`{"text":"hi"}`, `{"text":""}`, `{"text":"hi","extra":1}`, `{"participant_ids":["bob"]}`,
		`{"participant_ids":[],"title":"x"}`, `{"user_id":"cat"}`, `{"user_id":"../../etc"}`,
		`{"up_to_message_id":"x.1"}`, `{"name":"n","email":"not an email"}`, `null`, `[]`, `{`, `{}{}`,
		`{"text":"\u0000"}`, `{"text":1e999}`, `{"participant_ids":["bob","bob","bob"],"title":"` + strings.Repeat("t", 300) + `"}`,
	} {
		f.Add([]byte(seed), uint8(0))
	}
	f.Fuzz(func(t *testing.T, body []byte, target uint8) {
		routes := []struct{ method, path, token string }{
			{"POST", "/v1/conversations", staff},
			{"POST", "/v1/conversations/" + group + "/messages", staff},
			{"POST", "/v1/conversations/" + group + "/participants", staff},
			{"POST", "/v1/conversations/" + group + "/read", staff},
			{"PATCH", "/v1/conversations/" + group, staff},
			{"PUT", "/v1/admin/users/zed", admin},
			{"PUT", "/v1/admin/rooms/r2", admin},
		}
		r := routes[int(target)%len(routes)]
		req := httptest.NewRequest(r.method, r.path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+r.token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAnswer(t, rec, body)
	})
}

// FuzzUpload throws arbitrary multipart bodies (and file names and bytes) at the upload.
func FuzzUpload(f *testing.F) {
	h, staff, _, group := fuzzServer(f)
	f.Add([]byte("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nhello\r\n--b--\r\n"), "a.txt", []byte("hello"))
	f.Add([]byte("--b\r\n\r\n--b--"), "../../x", []byte{0, 1, 2})
	f.Add([]byte("not multipart"), "", []byte(nil))
	f.Add([]byte{}, "name\x00with\nnewline", bytes.Repeat([]byte("z"), 70<<10))
	f.Fuzz(func(t *testing.T, raw []byte, name string, data []byte) {
		// Half the inputs are raw bodies under a fixed boundary, half well-formed forms.
		var body []byte
		ctype := "multipart/form-data; boundary=b"
		if len(raw) > 0 && raw[0]%2 == 0 {
			body = raw
		} else {
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			if fw, err := mw.CreateFormFile("file", name); err == nil {
				_, _ = fw.Write(data)
			}
			_ = mw.Close()
			body, ctype = buf.Bytes(), mw.FormDataContentType()
		}
		req := httptest.NewRequest("POST", "/v1/conversations/"+group+"/files", bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Authorization", "Bearer "+staff)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAnswer(t, rec, body)
	})
}
