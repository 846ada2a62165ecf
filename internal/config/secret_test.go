package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An unusable data dir is the data dir's problem: the message names HUDDLE_DATA_DIR. (A file
// in the path, not permissions: CI runs as root, which may write anywhere.)
func TestLoad_UnusableDataDirNamesHUDDLE_DATA_DIR(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := load(env(map[string]string{"HUDDLE_DATA_DIR": filepath.Join(file, "data")}))
	if err == nil {
		t.Fatal("a data dir inside a file was accepted")
	}
	if !strings.Contains(err.Error(), "HUDDLE_DATA_DIR=") {
		t.Errorf("error does not name HUDDLE_DATA_DIR: %v", err)
	}
}

func TestLoadExisting_NeverCreatesTheDevSecret(t *testing.T) {
	dir := t.TempDir()
	_, err := loadWith(env(map[string]string{"HUDDLE_DATA_DIR": dir}), existingSecret)
	if err == nil {
		t.Fatal("loaded without any secret")
	}
	secret := filepath.Join(dir, "jwt-secret")
	for _, want := range []string{secret, "HUDDLE_DATA_DIR", "HUDDLE_JWT_SECRET", "huddle serve"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not say %q: %v", want, err)
		}
	}
	if _, err := os.Stat(secret); !os.IsNotExist(err) {
		t.Fatalf("a secret was created (stat: %v)", err)
	}

	// Once the server made one, it is the one used.
	served, err := load(env(map[string]string{"HUDDLE_DATA_DIR": dir}))
	if err != nil {
		t.Fatal(err)
	}
	c, err := loadWith(env(map[string]string{"HUDDLE_DATA_DIR": dir}), existingSecret)
	if err != nil || string(c.JWTSecret) != string(served.JWTSecret) {
		t.Fatalf("existing secret %q (%v), want the server's %q", c.JWTSecret, err, served.JWTSecret)
	}
}
