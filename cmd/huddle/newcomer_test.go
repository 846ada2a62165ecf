package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// cleanEnv is the environment without any HUDDLE_* variable, plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HUDDLE_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// runBinary runs the real binary in dir with env and returns stdout, stderr and the exit code.
func runBinary(t *testing.T, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env = dir, env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	_ = cmd.Run()
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// Run away from the server's data dir, huddle token used to create a fresh secret and mint a
// token the server rejects; now it creates nothing and says where it looked and what to set.
func TestToken_OutsideTheServersDataDirCreatesNoSecret(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	out, errOut, code := runBinary(t, dir, cleanEnv(), "token", "--user", "u1", "--clinic", "c1", "--role", "staff")
	if code != 1 || out != "" {
		t.Fatalf("exit %d, stdout %q; want exit 1 and no token\n%s", code, out, errOut)
	}
	for _, want := range []string{filepath.Join(dir, "huddle-data", "jwt-secret"), "HUDDLE_DATA_DIR", "HUDDLE_JWT_SECRET"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("message does not say %q:\n%s", want, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "huddle-data")); !os.IsNotExist(err) {
		t.Errorf("huddle token created %s (stat: %v)", filepath.Join(dir, "huddle-data"), err)
	}
}

func TestCLI_WarnsAboutAMisspeltVariable(t *testing.T) {
	t.Parallel()
	env := cleanEnv("HUDDLE_JWT_SECRET="+strings.Repeat("k", 32), "HUDDLE_HTTP_ADR=127.0.0.1:9999")
	out, errOut, code := runBinary(t, t.TempDir(), env, "token", "--user", "u1", "--clinic", "c1", "--role", "staff")
	if code != 0 || strings.Count(strings.TrimSpace(out), ".") != 2 {
		t.Fatalf("exit %d, stdout %q (want one JWT)\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "HUDDLE_HTTP_ADR") || !strings.Contains(errOut, "did you mean HUDDLE_HTTP_ADDR?") {
		t.Errorf("no warning naming HUDDLE_HTTP_ADR and HUDDLE_HTTP_ADDR:\n%s", errOut)
	}
}

// Ids that NATS subjects would blur ("c.1" and "c_1") are refused before a token is made.
func TestToken_RefusesIDsOutsideTheSafeAlphabet(t *testing.T) {
	t.Parallel()
	env := cleanEnv("HUDDLE_JWT_SECRET=" + strings.Repeat("k", 32))
	for _, args := range [][]string{{"--user", "u1", "--clinic", "c.1"}, {"--user", "u 1", "--clinic", "c1"}, {"--user", "u1", "--clinic", "c>"}} {
		out, errOut, code := runBinary(t, t.TempDir(), env, append([]string{"token", "--role", "staff"}, args...)...)
		if code != 2 || out != "" || !strings.Contains(errOut, "letters, digits") {
			t.Errorf("huddle token %v: exit %d, stdout %q, stderr %q; want exit 2 naming the alphabet", args, code, out, errOut)
		}
	}
}
