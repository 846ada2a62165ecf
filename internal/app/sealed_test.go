package app

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/huddle-chat/huddle/internal/natsbroker"
	"github.com/huddle-chat/huddle/internal/testenv"
)

// The embedded NATS of serve: nats.url names the address only, the credentials are private
// files, a client without them is refused, and the CLI's NATSURL gets in.
func TestApp_EmbeddedNATSIsSealed(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.NATSURL = "" // embedded
	cfg.NATSListen = "127.0.0.1:0"
	a, err := Start(context.Background(), cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())

	recorded, err := os.ReadFile(cfg.NATSURLFile())
	if err != nil {
		t.Fatal(err)
	}
	plain := strings.TrimSpace(string(recorded))
	if strings.Contains(plain, "@") {
		t.Fatalf("nats.url holds credentials: %q", plain)
	}
	for _, name := range []string{natsbroker.ServiceCredentialsFile, natsbroker.IntegratorCredentialsFile} {
		fi, err := os.Stat(filepath.Join(cfg.DataDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	if nc, err := nats.Connect(plain, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("connected to the embedded NATS without credentials")
	}
	cli, err := NATSURL(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(cli)
	if err != nil {
		t.Fatalf("CLI url: %v", err)
	}
	nc.Close()
}
