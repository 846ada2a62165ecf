package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The end-to-end test runs the real binary on its embedded default, as a user would:
// `huddle serve` with only HUDDLE_DATA_DIR and a free HTTP port set.

// buildBinary compiles cmd/huddle once per test binary.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "huddle-bin-")
	if err != nil {
		return "", err
	}
	testenv.AtExit(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "huddle")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

type server struct {
	t       *testing.T
	bin     string
	env     []string
	base    string
	cmd     *exec.Cmd
	log     *bytes.Buffer
	logMu   *sync.Mutex
	exited  chan struct{}
	exitErr error
}

func newServer(t *testing.T) *server {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test builds and runs the binary")
	}
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HUDDLE_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"HUDDLE_DATA_DIR="+filepath.Join(t.TempDir(), "data"),
		fmt.Sprintf("HUDDLE_HTTP_ADDR=127.0.0.1:%d", port),
		"HUDDLE_NATS_LISTEN=127.0.0.1:0",
	)
	return &server{t: t, bin: bin, env: env, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs `huddle serve` and returns how long it took until /readyz answered 200.
func (s *server) start() time.Duration {
	s.t.Helper()
	s.log, s.logMu = &bytes.Buffer{}, &sync.Mutex{}
	s.cmd = exec.Command(s.bin, "serve")
	s.cmd.Env = s.env
	w := &lockedWriter{mu: s.logMu, w: s.log}
	s.cmd.Stdout, s.cmd.Stderr = w, w
	began := time.Now()
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan struct{})
	go func() { s.exitErr = s.cmd.Wait(); close(s.exited) }()
	s.t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.exited:
			case <-time.After(30 * time.Second):
				s.cmd.Process.Kill()
			}
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get(s.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(began)
			}
		}
		select {
		case <-s.exited:
			s.t.Fatalf("huddle serve exited before ready: %v\n%s", s.exitErr, s.output())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("not ready in time\n%s", s.output())
		}
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() time.Duration {
	s.t.Helper()
	began := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		s.t.Fatalf("huddle serve did not stop after SIGTERM\n%s", s.output())
	}
	if s.exitErr != nil {
		s.t.Fatalf("huddle serve exited with %v after SIGTERM\n%s", s.exitErr, s.output())
	}
	return time.Since(began)
}

func (s *server) output() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.String()
}

// run runs a CLI subcommand with the server's environment and returns its stdout.
func (s *server) run(args ...string) string {
	s.t.Helper()
	cmd := exec.Command(s.bin, args...)
	cmd.Env = s.env
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("huddle %v: %v\n%s", args, err, errOut.String())
	}
	return strings.TrimSpace(string(out))
}

// command returns the binary's command for args, with the server's environment.
func (s *server) command(args ...string) *exec.Cmd {
	cmd := exec.Command(s.bin, args...)
	cmd.Env = s.env
	return cmd
}

// runCombined runs the binary and returns stdout and stderr together (progress goes to stderr).
func (s *server) runCombined(args ...string) string {
	s.t.Helper()
	out, err := s.command(args...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("huddle %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (s *server) do(method, path, token, body string, header ...string) response {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, s.base+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (s *server) expect(want int, method, path, token, body string, header ...string) response {
	s.t.Helper()
	r := s.do(method, path, token, body, header...)
	if r.status != want {
		s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type message struct {
	ID       string `json:"id"`
	SenderID string `json:"sender_id"`
	Kind     string `json:"kind"`
	Text     string `json:"text"`
}

// readMessages reads a conversation's messages as user token, waiting (Huddle-Min-Position)
// until the projections applied position when it is given.
func (s *server) readMessages(token, convID, position string) []message {
	s.t.Helper()
	var hdr []string
	if position != "" {
		hdr = []string{"Huddle-Min-Position", position}
	}
	r := s.expect(http.StatusOK, "GET", "/v1/conversations/"+convID+"/messages", token, "", hdr...)
	var page struct {
		Messages []message `json:"messages"`
	}
	r.json(s.t, &page)
	return page.Messages
}

func TestServe_MessageTravelsEndToEndAndSurvivesRestart(t *testing.T) {
	s := newServer(t)
	first := s.start()
	t.Logf("first start (initdb, migrations) to /readyz 200: %v", first)

	admin := s.run("token", "--user", "admin-1", "--clinic", "clinic-1", "--role", "admin")
	alice := s.run("token", "--user", "u-alice", "--clinic", "clinic-1", "--role", "staff")
	bob := s.run("token", "--user", "u-bob", "--clinic", "clinic-1", "--role", "staff")

	s.expect(http.StatusOK, "PUT", "/v1/admin/users/u-alice", admin, `{"name":"Alice Adams","email":"alice@example.com","title":"MD"}`)
	s.expect(http.StatusOK, "PUT", "/v1/admin/users/u-bob", admin, `{"name":"Bob Brown","email":"bob@example.com"}`)
	s.expect(http.StatusOK, "PUT", "/v1/admin/rooms/room-1", admin, `{"name":"Front desk"}`)
	s.expect(http.StatusNoContent, "PUT", "/v1/admin/rooms/room-1/members/u-alice", admin, "")
	s.expect(http.StatusNoContent, "PUT", "/v1/admin/rooms/room-1/members/u-bob", admin, "")

	r := s.expect(http.StatusCreated, "POST", "/v1/conversations", alice, `{"participant_ids":["u-bob"]}`)
	var conv struct {
		ID   string `json:"id"`
		Kind string `json:"kind"`
	}
	r.json(t, &conv)
	if conv.ID == "" || conv.Kind != "direct" {
		t.Fatalf("conversation %s", r.body)
	}

	r = s.expect(http.StatusCreated, "POST", "/v1/conversations/"+conv.ID+"/messages", alice,
		`{"text":"Room 4 is ready for your patient","client_message_id":"e2e-1"}`)
	pos := r.header.Get("Huddle-Position")
	if pos == "" {
		t.Fatal("command answered without Huddle-Position")
	}
	var sent message
	r.json(t, &sent)

	msgs := s.readMessages(bob, conv.ID, pos)
	if !containsText(msgs, "Room 4 is ready for your patient", "u-alice") {
		t.Fatalf("Bob does not see Alice's message: %+v", msgs)
	}

	stopped := s.stop()
	t.Logf("graceful stop after SIGTERM: %v", stopped)
	again := s.start()
	t.Logf("restart on the same data dir to /readyz 200: %v", again)

	msgs = s.readMessages(bob, conv.ID, "")
	if !containsText(msgs, "Room 4 is ready for your patient", "u-alice") {
		t.Fatalf("after restart Bob no longer sees the message: %+v", msgs)
	}
	// The same client_message_id after the restart is still the same message, once.
	r = s.expect(http.StatusCreated, "POST", "/v1/conversations/"+conv.ID+"/messages", alice,
		`{"text":"Room 4 is ready for your patient","client_message_id":"e2e-1"}`)
	var resent message
	r.json(t, &resent)
	if resent.ID != sent.ID {
		t.Errorf("repeated client_message_id made a new message %s (first %s)", resent.ID, sent.ID)
	}
}

func TestServe_AuthAndBadInputGetProblems(t *testing.T) {
	s := newServer(t)
	s.start()
	staff := s.run("token", "--user", "u-carol", "--clinic", "clinic-1", "--role", "staff")
	// A valid token of someone the directory does not know: 403 unknown_user.
	problem0 := s.do("GET", "/v1/conversations", staff, "")
	if problem0.status != http.StatusForbidden || !strings.Contains(string(problem0.body), `"unknown_user"`) {
		t.Fatalf("unknown user: %d %s", problem0.status, problem0.body)
	}
	admin := s.run("token", "--user", "admin-1", "--clinic", "clinic-1", "--role", "admin")
	s.expect(http.StatusOK, "PUT", "/v1/admin/users/u-carol", admin, `{"name":"Carol","email":"carol@example.com"}`)

	problem := func(r response, status int, code string) {
		t.Helper()
		if r.status != status {
			t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
		}
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
			t.Errorf("content type %q, want application/problem+json", ct)
		}
		var p struct {
			Status int    `json:"status"`
			Code   string `json:"code"`
		}
		r.json(t, &p)
		if p.Status != status || (code != "" && p.Code != code) {
			t.Errorf("problem %s, want status %d code %s", r.body, status, code)
		}
	}
	problem(s.do("GET", "/v1/conversations", "", ""), http.StatusUnauthorized, "")
	problem(s.do("GET", "/v1/conversations", "not-a-jwt", ""), http.StatusUnauthorized, "")
	other := strings.Split(staff, ".")
	forged := other[0] + "." + other[1] + ".AAAA" // valid claims, wrong signature
	problem(s.do("GET", "/v1/conversations", forged, ""), http.StatusUnauthorized, "")
	problem(s.do("POST", "/v1/conversations", staff, `{"participant_ids":`), http.StatusBadRequest, "invalid_request")
	problem(s.do("POST", "/v1/conversations", staff, `{"participant_ids":["u-x"],"surprise":1}`), http.StatusBadRequest, "invalid_request")
}

func TestMigrate_AttachesToRunningServeAndRunsAlone(t *testing.T) {
	s := newServer(t)
	s.start()
	// While serve runs, migrate attaches to its cluster and must leave it running.
	if out := s.run("migrate"); !strings.Contains(out, "up to date") {
		t.Fatalf("migrate printed %q", out)
	}
	s.expect(http.StatusOK, "GET", "/readyz", "", "")
	s.stop()
	// Alone, migrate starts the cluster itself and stops it again.
	if out := s.run("migrate"); !strings.Contains(out, "up to date") {
		t.Fatalf("migrate printed %q", out)
	}
	s.start()
}

func TestCLI_HelpAndUnknownCommand(t *testing.T) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"--help"}, 0},
		{[]string{"help"}, 0},
		{[]string{"help", "serve"}, 0},
		{[]string{"serve", "--help"}, 0},
		{[]string{"token", "--help"}, 0},
		{[]string{"migrate", "--help"}, 0},
		{[]string{"frobnicate"}, 2},
		{[]string{"token", "--user", "u1"}, 2},
		{[]string{}, 2},
	} {
		cmd := exec.Command(bin, tc.args...)
		out, _ := cmd.CombinedOutput()
		if got := cmd.ProcessState.ExitCode(); got != tc.code {
			t.Errorf("huddle %v: exit %d, want %d\n%s", tc.args, got, tc.code, out)
		}
		if !strings.Contains(string(out), "Usage") && !strings.Contains(string(out), "--help") {
			t.Errorf("huddle %v printed no usage:\n%s", tc.args, out)
		}
	}
}

func containsText(msgs []message, text, sender string) bool {
	for _, m := range msgs {
		if m.Text == text && m.SenderID == sender {
			return true
		}
	}
	return false
}
