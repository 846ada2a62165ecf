package app

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/huddle-chat/huddle/internal/testenv"
)

// A second serve on a data directory in use exits at once, naming the first's pid, and leaves
// the first's files (nats.url) alone.
func TestStart_SecondServeOnTheSameDataDirRefusesNamingTheFirst(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.NATSURL = "" // embedded NATS in the data directory
	cfg.NATSListen = "127.0.0.1:0"
	first, err := Start(context.Background(), cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close(context.Background())
	recorded, err := os.ReadFile(cfg.NATSURLFile())
	if err != nil {
		t.Fatal(err)
	}

	second, err := Start(context.Background(), cfg, testenv.Logger(t))
	if err == nil {
		second.Close(context.Background())
		t.Fatal("a second Start on the same data directory succeeded")
	}
	if !errors.Is(err, ErrDataDirInUse) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("err = %v, want ErrDataDirInUse naming pid %d", err, os.Getpid())
	}
	if now, err := os.ReadFile(cfg.NATSURLFile()); err != nil || string(now) != string(recorded) {
		t.Fatalf("nats.url after the refused start: %q (%v), want the first's %q", now, err, recorded)
	}

	// Once the first has stopped, the directory is free again.
	first.Close(context.Background())
	third, err := Start(context.Background(), cfg, testenv.Logger(t))
	if err != nil {
		t.Fatalf("start after the first stopped: %v", err)
	}
	third.Close(context.Background())
}
