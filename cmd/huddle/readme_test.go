package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeBlocks returns the ```sh blocks of the README section with the given heading.
func readmeBlocks(t *testing.T, heading string) []string {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no %q section", heading)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

// TestReadme_TryItWalk runs the README's "Try it" block with bash against the real binary, as a
// newcomer would after "Run it": huddle on the PATH, the server's environment, the server
// answering where the README says (its localhost:8080 is this test's port). It must end with
// Bob reading Alice's message and the message event on his stream; then the "For frontends"
// block runs on: an urgent message on Bob's urgent list, acknowledged, and after Bob marks the
// chat read, his receipt as Alice reads it.
func TestReadme_TryItWalk(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("the README's walk needs curl: install it (.ci/run does)")
	}
	run := readmeBlocks(t, "## Run it")
	if len(run) != 1 || !strings.Contains(run[0], "go install ./cmd/huddle") || !strings.Contains(run[0], "\nhuddle serve\n") {
		t.Fatalf("README \"Run it\" should install huddle and run huddle serve (what this test does itself): %q", run)
	}
	try := readmeBlocks(t, "## Try it")
	if len(try) != 1 {
		t.Fatalf("README \"Try it\" has %d sh blocks, want 1", len(try))
	}

	// "For frontends" shows an urgent message and its acknowledgement, continuing the walk.
	urgent := readmeBlocks(t, "## For frontends")
	if len(urgent) != 1 || !strings.Contains(urgent[0], "/ack") {
		t.Fatalf("README \"For frontends\" should have one sh block, acknowledging an urgent message: %q", urgent)
	}

	s := newServer(t)
	s.start()
	script := strings.ReplaceAll(try[0]+urgent[0], "localhost:8080", strings.TrimPrefix(s.base, "http://"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = t.TempDir()
	cmd.Env = append(append([]string{}, s.env...), "PATH="+filepath.Dir(s.bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	// The walk's background stream must not outlive it, even when a step fails.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		t.Fatalf("the README walk failed: %v\nstdout:\n%s\nstderr:\n%s\nserver:\n%s", err, out.String(), errOut.String(), s.output())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	read := regexp.MustCompile(`"messages":\[.*"sender_id":"alice".*"text":"Room 4 is ready for your patient"`)
	if !read.MatchString(out.String()) {
		t.Errorf("Bob did not read Alice's message; the walk printed:\n%s", out.String())
	}
	var event struct {
		Text     string `json:"text"`
		SenderID string `json:"sender_id"`
		Notify   bool   `json:"notify"`
	}
	n := len(lines)
	if n < 4 || lines[n-4] != "event: message" || !strings.HasPrefix(lines[n-3], "data: ") ||
		json.Unmarshal([]byte(strings.TrimPrefix(lines[n-3], "data: ")), &event) != nil ||
		event.Text != "Room 4 is ready for your patient" || event.SenderID != "alice" || !event.Notify {
		t.Errorf("\"Try it\" does not end with the message event on Bob's stream:\n%s", out.String())
	}
	if n >= 2 && !regexp.MustCompile(`^\{"messages":\[\{.*"text":"Bed 4 needs a doctor now".*"priority":"urgent","acks":\{"acked":\[\],"pending":\["bob"\]\},"conversation_id":"`).MatchString(lines[n-2]) {
		t.Errorf("\"For frontends\" does not print Bob's urgent list with Alice's urgent message:\n%s", out.String())
	}
	if n >= 1 && !regexp.MustCompile(`^\{"receipts":\[.*\{"user_id":"bob","last_read_message_id":"[^"]+","read_at":"[^"]+"\}`).MatchString(lines[n-1]) {
		t.Errorf("\"For frontends\" does not end with Bob's receipt as Alice reads it:\n%s", out.String())
	}
}
