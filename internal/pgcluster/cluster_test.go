package pgcluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func startCluster(t *testing.T, dir string) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return c
}

func stopCluster(t *testing.T, c *Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

func query(t *testing.T, url, sql string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer conn.Close(ctx)
	var out string
	if err := conn.QueryRow(ctx, sql).Scan(&out); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

func TestCluster_DataSurvivesRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pg")
	c := startCluster(t, dir)
	ctx := context.Background()
	if err := c.CreateDatabase(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateDatabase(ctx, "app"); err != nil {
		t.Fatalf("second CreateDatabase must be a no-op: %v", err)
	}
	conn, err := pgx.Connect(ctx, c.URL("app"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE kept (v text); INSERT INTO kept VALUES ('hello')`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if got := query(t, c.URL("app"), `SHOW fsync`); got != "off" {
		t.Errorf("fsync = %s, want off for Fsync=false", got)
	}
	if got := query(t, c.URL("app"), `SHOW listen_addresses`); got != "" {
		t.Errorf("listen_addresses = %q, want empty (socket only)", got)
	}
	if got := query(t, c.URL("app"), `SHOW idle_in_transaction_session_timeout`); got != "1min" {
		t.Errorf("idle_in_transaction_session_timeout = %s", got)
	}
	stopCluster(t, c)
	if _, err := os.Stat(filepath.Join(dir, "data", "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("postmaster.pid still there after Stop: %v", err)
	}

	c = startCluster(t, dir)
	defer stopCluster(t, c)
	if got := query(t, c.URL("app"), `SELECT v FROM kept`); got != "hello" {
		t.Errorf("after restart got %q, want hello", got)
	}
}

func TestCluster_RunsAsUnprivilegedUserWhenRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only meaningful as root")
	}
	c := startCluster(t, filepath.Join(t.TempDir(), "pg"))
	defer stopCluster(t, c)
	as, err := serverUser()
	if err != nil || as == nil {
		t.Fatalf("no server user while root: %v", err)
	}
	if got := query(t, c.URL("postgres"), `SELECT current_setting('data_directory')`); got != c.dataDir {
		t.Errorf("data_directory = %s, want %s", got, c.dataDir)
	}
	fi, err := os.Stat(c.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != as.uid {
		t.Errorf("data directory owned by uid %d, want %s (%d)", uid, as.name, as.uid)
	}
}

func TestCluster_RecoversFromStalePIDFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pg")
	c := startCluster(t, dir)
	stopCluster(t, c)
	// A crash leaves postmaster.pid behind; point it at a live process that is not postgres
	// (ourselves), the case PostgreSQL itself refuses to start on.
	pidFile := filepath.Join(dir, "data", "postmaster.pid")
	stale := strings.Join([]string{strconv.Itoa(os.Getpid()), filepath.Join(dir, "data"), "0", "1", "", "", "", "ready", ""}, "\n")
	if err := os.WriteFile(pidFile, []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}
	c = startCluster(t, dir)
	defer stopCluster(t, c)
	if got := query(t, c.URL("postgres"), `SELECT 'up'`); got != "up" {
		t.Fatal(got)
	}
}

func TestCluster_SecondStartAttachesToRunningServer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pg")
	owner := startCluster(t, dir)
	defer stopCluster(t, owner)
	// As `huddle migrate` while `huddle serve` runs on the same data directory.
	guest := startCluster(t, dir)
	if !guest.Attached() {
		t.Fatal("second Start did not attach")
	}
	if guest.URL("postgres") != owner.URL("postgres") {
		t.Errorf("attached URL %s, owner's %s", guest.URL("postgres"), owner.URL("postgres"))
	}
	stopCluster(t, guest)
	select {
	case <-owner.Exited():
		t.Fatal("stopping the attached cluster stopped the owner's server")
	default:
	}
	if got := query(t, owner.URL("postgres"), `SELECT 'up'`); got != "up" {
		t.Fatal(got)
	}
}

func TestCluster_LongDirectoryUsesShortSocketDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 40), "pg")
	c := startCluster(t, dir)
	defer stopCluster(t, c)
	if len(c.socketPath()) > maxSocketPath {
		t.Fatalf("socket path %d bytes: %s", len(c.socketPath()), c.socketPath())
	}
	if got := query(t, c.URL("postgres"), `SELECT 'up'`); got != "up" {
		t.Fatal(got)
	}
}

func TestStart_MissingBinariesNamesBothFixes(t *testing.T) {
	_, err := Start(context.Background(), Options{Dir: t.TempDir(), BinDir: t.TempDir()})
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("err = %v, want ErrNoBinaries", err)
	}
	for _, want := range []string{"apt-get install postgresql", "HUDDLE_DATABASE_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestCluster_RestartsAfterServerCrash(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pg")
	c := startCluster(t, dir)
	if err := c.CreateDatabase(context.Background(), "app"); err != nil {
		t.Fatal(err)
	}
	// SIGKILL: no shutdown checkpoint, postmaster.pid left behind naming a dead pid.
	if err := c.proc.Kill(); err != nil {
		t.Fatal(err)
	}
	<-c.Exited()
	c = startCluster(t, dir)
	defer stopCluster(t, c)
	if got := query(t, c.URL("app"), `SELECT current_database()`); got != "app" {
		t.Fatal(got)
	}
}

// Restart brings a killed server back on the same socket: the URL made before still works, and
// committed data is there.
func TestCluster_RestartAfterKillKeepsTheURL(t *testing.T) {
	t.Parallel()
	c := startCluster(t, filepath.Join(t.TempDir(), "pg"))
	defer stopCluster(t, c)
	if err := c.Restart(context.Background()); err == nil {
		t.Fatal("Restart of a running server succeeded")
	}
	if err := c.CreateDatabase(context.Background(), "app"); err != nil {
		t.Fatal(err)
	}
	url := c.URL("app")
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	// The test cluster runs with synchronous_commit off: CHECKPOINT makes the commit durable.
	for _, sql := range []string{`CREATE TABLE kept AS SELECT 42 AS answer`, `CHECKPOINT`} {
		if _, err := conn.Exec(context.Background(), sql); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(context.Background())
	if err := c.proc.Kill(); err != nil {
		t.Fatal(err)
	}
	<-c.Exited()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if c.URL("app") != url {
		t.Fatalf("URL changed from %s to %s", url, c.URL("app"))
	}
	if got := query(t, url, `SELECT answer FROM kept`); got != "42" {
		t.Fatalf("after the restart: %s", got)
	}
	select {
	case <-c.Exited():
		t.Fatal("Exited is closed while the restarted server runs")
	default:
	}
}
