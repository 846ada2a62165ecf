package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoad_EmbeddedDefaults(t *testing.T) {
	dir := t.TempDir()
	c, err := load(env(map[string]string{"HUDDLE_DATA_DIR": dir}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.EmbeddedPostgres() || !c.EmbeddedNATS() {
		t.Error("want embedded Postgres and NATS with nothing set")
	}
	if c.HTTPAddr != "127.0.0.1:8080" || c.MaxFileBytes != 25<<20 || c.StreamMaxAge != 168*time.Hour {
		t.Errorf("defaults: %+v", c)
	}
	if c.PostgresDir() != filepath.Join(dir, "postgres") {
		t.Errorf("PostgresDir = %s", c.PostgresDir())
	}
	fi, err := os.Stat(filepath.Join(dir, "jwt-secret"))
	if err != nil {
		t.Fatalf("dev secret not written: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("dev secret mode %v, want 0600", fi.Mode().Perm())
	}
	again, err := load(env(map[string]string{"HUDDLE_DATA_DIR": dir}))
	if err != nil {
		t.Fatal(err)
	}
	if string(again.JWTSecret) != string(c.JWTSecret) || len(c.JWTSecret) < minSecretLen {
		t.Error("dev secret must be generated once and then reused")
	}
}

func TestLoad_ExplicitSecretWritesNoFile(t *testing.T) {
	dir := t.TempDir()
	secret := strings.Repeat("s", 32)
	c, err := load(env(map[string]string{"HUDDLE_DATA_DIR": dir, "HUDDLE_JWT_SECRET": secret}))
	if err != nil {
		t.Fatal(err)
	}
	if string(c.JWTSecret) != secret || c.JWTSecretFile != "" {
		t.Errorf("secret %q file %q", c.JWTSecret, c.JWTSecretFile)
	}
	if _, err := os.Stat(filepath.Join(dir, "jwt-secret")); err == nil {
		t.Error("wrote a dev secret although HUDDLE_JWT_SECRET is set")
	}
}

func TestLoad_InvalidValuesNameTheVariable(t *testing.T) {
	cases := map[string]string{
		"HUDDLE_HTTP_ADDR":        "8080",
		"HUDDLE_NATS_LISTEN":      "localhost",
		"HUDDLE_NATS_URL":         "localhost:4222",
		"HUDDLE_DATABASE_URL":     "postgres://h:notaport/db",
		"HUDDLE_MAX_FILE_BYTES":   "25MB",
		"HUDDLE_LOG_LEVEL":        "loud",
		"HUDDLE_JWT_SECRET":       "short",
		"HUDDLE_STREAM_MAX_AGE":   "a week",
		"HUDDLE_STREAM_MAX_BYTES": "0",
		"HUDDLE_NATS_SYNC_ALWAYS": "maybe",
		"HUDDLE_STREAM_REPLICAS":  "3", // on the embedded NATS, a single server
	}
	for name, value := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := load(env(map[string]string{"HUDDLE_DATA_DIR": t.TempDir(), name: value}))
			if err == nil {
				t.Fatalf("%s=%s accepted", name, value)
			}
			if !strings.Contains(err.Error(), name) {
				t.Errorf("error %q does not name %s", err, name)
			}
		})
	}
}

func TestLoad_ExternalServices(t *testing.T) {
	c, err := load(env(map[string]string{
		"HUDDLE_DATA_DIR":        t.TempDir(),
		"HUDDLE_DATABASE_URL":    "postgres://huddle:pw@db:5432/huddle?sslmode=disable",
		"HUDDLE_NATS_URL":        "nats://nats-1:4222,nats://nats-2:4222",
		"HUDDLE_JWT_SECRET":      strings.Repeat("x", 40),
		"HUDDLE_STREAM_REPLICAS": "3",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.StreamReplicas != 3 {
		t.Errorf("HUDDLE_STREAM_REPLICAS=3 on a cluster read as %d", c.StreamReplicas)
	}
	for _, n := range []string{"0", "6", "three"} {
		if _, err := load(env(map[string]string{"HUDDLE_DATA_DIR": t.TempDir(), "HUDDLE_NATS_URL": "nats://nats-1:4222",
			"HUDDLE_STREAM_REPLICAS": n})); err == nil || !strings.Contains(err.Error(), "HUDDLE_STREAM_REPLICAS") {
			t.Errorf("HUDDLE_STREAM_REPLICAS=%s: %v, want refused", n, err)
		}
	}
	if c.EmbeddedPostgres() || c.EmbeddedNATS() {
		t.Error("external URLs set, but config says embedded")
	}
}

func TestVars_CoverEveryVariableLoadReads(t *testing.T) {
	read := map[string]bool{}
	dir := t.TempDir()
	_, _ = load(func(k string) string {
		read[k] = true
		if k == "HUDDLE_DATA_DIR" {
			return dir
		}
		return ""
	})
	documented := map[string]bool{}
	for _, v := range Vars {
		documented[v.Name] = true
		if !read[v.Name] {
			t.Errorf("Vars documents %s, which Load does not read", v.Name)
		}
	}
	for name := range read {
		if !documented[name] {
			t.Errorf("Load reads %s, which Vars does not document", name)
		}
	}
}

// IsVar reports whether Load reads name (used by the docker-compose test).
func TestIsVar(t *testing.T) {
	if !IsVar("HUDDLE_HTTP_ADDR") || IsVar("HUDDLE_NOPE") {
		t.Fatal("IsVar")
	}
}
