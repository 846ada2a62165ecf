package app

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/api"
	"github.com/huddle-chat/huddle/commands"
	"github.com/huddle-chat/huddle/internal/config"
	"github.com/huddle-chat/huddle/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func testConfig(t *testing.T) config.Config {
	_, dbURL := testenv.Postgres(t)
	broker := testenv.NATS(t)
	return config.Config{
		DataDir:         t.TempDir(),
		DatabaseURL:     dbURL,
		NATSURL:         broker.ClientURL(),
		HTTPAddr:        "127.0.0.1:0",
		StreamMaxAge:    time.Hour,
		StreamMaxBytes:  64 << 20,
		StreamReplicas:  1,
		MaxFileBytes:    1 << 20,
		ShutdownTimeout: 20 * time.Second,
		JWTSecret:       []byte(strings.Repeat("s", 32)),
	}
}

func waitReady(t *testing.T, base string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned before ready: %v", err)
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("never ready (last: %v)", err)
		}
	}
}

func TestApp_ReadyThenGracefulShutdownEndsLiveStreams(t *testing.T) {
	cfg := testConfig(t)
	// Short enough that a stream holding shutdown until the deadline makes Run fail.
	cfg.ShutdownTimeout = 5 * time.Second
	log := testenv.Logger(t)
	a, err := Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + a.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitReady(t, base, done)

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"huddle_db_pool_max_connections", "huddle_http_requests_total", "go_goroutines", "huddle_command_appends_total"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A connected SSE client must not hold shutdown until its timeout. (Staff must be in
	// their clinic's directory.)
	if _, _, err := a.Server.Commands.SetUser(ctx, commands.Actor{UserID: "root", ClinicID: "c1"}, "u1", "User One", "u1@clinic.test", ""); err != nil {
		t.Fatal(err)
	}
	tok, err := api.MintToken(cfg.JWTSecret, "u1", "c1", []string{api.RoleStaff}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", base+"/v1/stream", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "text/event-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	streamEnded := make(chan struct{})
	go func() {
		defer close(streamEnded)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
		}
	}()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(cfg.ShutdownTimeout + 10*time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	<-streamEnded
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("still serving after Run returned")
	}
}

func TestApp_ReadyzReportsNotReadyBeforeComponentsRun(t *testing.T) {
	cfg := testConfig(t)
	a, err := Start(context.Background(), cfg, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	// Built but not running: the relay and projectors have not started.
	err = a.ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), "relay") || !strings.Contains(err.Error(), "projections") {
		t.Fatalf("ready() = %v, want relay and projections not running", err)
	}
}
