package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Superuser is the role initdb creates; the cluster trusts local socket connections.
const Superuser = "huddle"

// maxSocketPath keeps the socket path well inside the kernel's 108-byte sun_path limit.
const maxSocketPath = 100

// Options configure a cluster.
type Options struct {
	// Dir holds everything of the cluster: data/ (PGDATA), the socket and postgres.log.
	// Created when missing; reused when it holds a cluster already.
	Dir string
	// Fsync keeps PostgreSQL's durability settings. Tests turn it off (fsync, synchronous_commit
	// and full_page_writes off): a crash loses a throwaway database, and tests run much faster.
	Fsync bool
	// Log receives the cluster's lifecycle events; nil discards them.
	Log *slog.Logger
	// BinDir overrides the discovery of initdb and postgres (FindBinDir).
	BinDir string
	// Settings are extra `-c name=value` server settings, applied last.
	Settings map[string]string
}

// Cluster is a running PostgreSQL server owned by this process.
type Cluster struct {
	dir, dataDir, sockDir string
	ownSockDir            bool // sockDir is a short temporary directory we must remove
	attached              bool // another process started this server; Stop leaves it running
	port                  int
	log                   *slog.Logger
	proc                  *os.Process
	waitErr               error // valid after exited is closed

	// What Restart needs to start the server again as Start did.
	binDir string
	as     *runAs
	opts   Options

	mu     sync.Mutex
	exited chan struct{} // closed when the postmaster has exited; replaced by a restart
}

// Start initialises the cluster on first use (initdb) and starts the server, returning once it
// accepts connections. Stop it with Stop.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Dir == "" {
		return nil, errors.New("pgcluster: Options.Dir is empty")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: resolve %s: %w", opts.Dir, err)
	}
	binDir := opts.BinDir
	if binDir == "" {
		if binDir, err = FindBinDir(); err != nil {
			return nil, err
		}
	} else if !isExecutable(filepath.Join(binDir, "initdb")) || !isExecutable(filepath.Join(binDir, "postgres")) {
		return nil, fmt.Errorf("pgcluster: no initdb and postgres in %s: %w", binDir, ErrNoBinaries)
	}
	as, err := serverUser()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pgcluster: create %s: %w", dir, err)
	}
	if err := as.makeTraversable(dir, log); err != nil {
		return nil, err
	}
	if err := as.give(dir); err != nil {
		return nil, err
	}

	c := &Cluster{
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		sockDir: dir,
		port:    portFor(dir),
		log:     log,
		exited:  make(chan struct{}),
	}
	if attached, err := c.attachOrClearStalePID(); err != nil || attached {
		return c, err
	}
	if len(c.socketPath()) > maxSocketPath {
		// A deep data directory (t.TempDir under a long test name) would overflow sun_path.
		short, err := os.MkdirTemp("", "hpg")
		if err != nil {
			return nil, fmt.Errorf("pgcluster: socket directory: %w", err)
		}
		if err := as.give(short); err != nil {
			os.RemoveAll(short)
			return nil, err
		}
		c.sockDir, c.ownSockDir = short, true
	}

	if err := c.initdb(ctx, binDir, as, opts.Fsync); err != nil {
		c.removeSockDir()
		return nil, err
	}
	c.binDir, c.as, c.opts = binDir, as, opts
	if err := c.startRetrying(ctx); err != nil {
		c.removeSockDir()
		return nil, err
	}
	return c, nil
}

// startRetrying starts the server, retrying for a few seconds while a crashed server's
// processes still hold its shared memory.
func (c *Cluster) startRetrying(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		if c.ownSockDir {
			// A failed attempt stops the server, which removes our socket directory.
			if err := os.MkdirAll(c.sockDir, 0o700); err != nil {
				return fmt.Errorf("pgcluster: socket directory: %w", err)
			}
			if err := c.as.give(c.sockDir); err != nil {
				return err
			}
		}
		err := c.start(ctx, c.binDir, c.as, c.opts)
		if err == nil {
			return nil
		}
		// After a crash of the postmaster (SIGKILL, OOM), its backends notice and exit within
		// moments, but until the last one has, PostgreSQL refuses to start on their shared
		// memory. Give them a few seconds.
		if attempt < 25 && strings.Contains(err.Error(), "pre-existing shared memory block") && ctx.Err() == nil {
			c.log.Warn("postgres: a crashed server's processes still hold its shared memory; retrying", "dir", c.dir, "attempt", attempt)
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
			}
			c.mu.Lock()
			c.exited = make(chan struct{})
			c.mu.Unlock()
			continue
		}
		return err
	}
}

// Restart starts the server again after it exited unexpectedly (a crash, a kill), on the same
// socket, so that URLs and pools made for it stay valid. PostgreSQL recovers from its WAL as
// after any crash: committed transactions are there, uncommitted ones are not.
func (c *Cluster) Restart(ctx context.Context) error {
	if c.attached {
		return errors.New("pgcluster: restart: this process did not start the server")
	}
	select {
	case <-c.Exited():
	default:
		return errors.New("pgcluster: restart: the server is still running")
	}
	// A killed postmaster leaves postmaster.pid naming a dead pid.
	pidFile := filepath.Join(c.dataDir, "postmaster.pid")
	if b, err := os.ReadFile(pidFile); err == nil {
		pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
		if pid > 0 && c.isOurPostmaster(pid) {
			return fmt.Errorf("pgcluster: restart: a postmaster (pid %d) runs on %s already", pid, c.dataDir)
		}
		if err := os.Remove(pidFile); err != nil {
			return fmt.Errorf("pgcluster: remove stale %s: %w", pidFile, err)
		}
	}
	// A fresh channel for the new server; every failed start closes it again.
	c.mu.Lock()
	c.exited = make(chan struct{})
	c.mu.Unlock()
	if err := c.startRetrying(ctx); err != nil {
		return err
	}
	c.log.Info("postgres restarted", "dir", c.dir)
	return nil
}

// URL returns a connection URL for database db on this cluster (unix socket, superuser).
func (c *Cluster) URL(db string) string {
	q := url.Values{}
	q.Set("host", c.sockDir)
	q.Set("port", strconv.Itoa(c.port))
	q.Set("sslmode", "disable")
	return (&url.URL{Scheme: "postgres", User: url.User(Superuser), Path: "/" + db, RawQuery: q.Encode()}).String()
}

// Dir is the cluster directory given in Options (absolute).
func (c *Cluster) Dir() string { return c.dir }

// CreateDatabase creates database name unless it exists.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("pgcluster: connect: %w", err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database
		return nil
	}
	if err != nil {
		return fmt.Errorf("pgcluster: create database %s: %w", name, err)
	}
	return nil
}

// Stop shuts the server down with a fast shutdown (SIGINT: roll back open transactions,
// checkpoint, exit) and waits for it. If ctx ends first it escalates to an immediate shutdown
// (SIGQUIT), which the next start recovers from like a crash.
func (c *Cluster) Stop(ctx context.Context) error {
	if c.attached {
		return nil
	}
	defer c.removeSockDir()
	select {
	case <-c.Exited():
		return nil
	default:
	}
	if err := c.proc.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("pgcluster: signal postgres: %w", err)
	}
	select {
	case <-c.Exited():
		c.log.Info("postgres stopped", "dir", c.dir)
		return nil
	case <-ctx.Done():
	}
	_ = c.proc.Signal(syscall.SIGQUIT)
	select {
	case <-c.Exited():
	case <-time.After(5 * time.Second):
		_ = c.proc.Kill()
		<-c.Exited()
	}
	return fmt.Errorf("pgcluster: fast shutdown did not finish in time, forced an immediate shutdown: %w", ctx.Err())
}

// PID is the postmaster's process id (0 for an attached cluster). The server runs in a process
// group of its own, -PID, which fault-injection tests signal to freeze the whole cluster.
func (c *Cluster) PID() int {
	if c.attached || c.proc == nil {
		return 0
	}
	return c.proc.Pid
}

// Attached reports whether Start found the server already running (started by another
// process) and connected to it instead; Stop then leaves it running.
func (c *Cluster) Attached() bool { return c.attached }

// Exited is closed when the server process has exited (after Stop, or if it died); never for
// an attached cluster.
func (c *Cluster) Exited() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exited
}

func (c *Cluster) socketPath() string {
	return filepath.Join(c.sockDir, ".s.PGSQL."+strconv.Itoa(c.port))
}

func (c *Cluster) logPath() string { return filepath.Join(c.dir, "postgres.log") }

func (c *Cluster) removeSockDir() {
	if c.ownSockDir {
		os.RemoveAll(c.sockDir)
	}
}

// portFor derives the port number from the directory. Nothing listens on TCP; the number only
// names the socket file and seeds PostgreSQL's System V key choice, so distinct clusters
// started side by side rarely probe the same keys.
func portFor(dir string) int {
	h := fnv.New32a()
	h.Write([]byte(dir))
	return 20000 + int(h.Sum32()%40000)
}

// initdb creates the cluster when data/ holds none yet. A data directory without PG_VERSION is
// what an interrupted initdb leaves; it holds nothing worth keeping, so it is cleared.
func (c *Cluster) initdb(ctx context.Context, binDir string, as *runAs, fsync bool) error {
	if _, err := os.Stat(filepath.Join(c.dataDir, "PG_VERSION")); err == nil {
		return nil
	}
	if err := os.RemoveAll(c.dataDir); err != nil {
		return fmt.Errorf("pgcluster: clear incomplete data directory: %w", err)
	}
	started := time.Now()
	args := []string{"-D", c.dataDir, "-U", Superuser, "--auth=trust", "--encoding=UTF8", "--locale=C"}
	if !fsync {
		args = append(args, "--no-sync")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"), args...)
	cmd.Dir = c.dir
	cmd.Env = serverEnv()
	cmd.SysProcAttr = as.sysProcAttr()
	cmd.SysProcAttr.Pdeathsig = 0 // short-lived; no need for a locked thread
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgcluster: initdb %s: %w\n%s", c.dataDir, err, tail(out, 2000))
	}
	c.log.Info("postgres cluster initialised", "dir", c.dataDir, "took", time.Since(started).Round(time.Millisecond))
	return nil
}

// attachOrClearStalePID deals with a postmaster.pid found in the data directory.
//
// If the server it names is alive on this directory, another Huddle process (say `huddle serve`
// while `huddle migrate` or `huddle audit` starts) owns it: attach to it, and leave stopping it
// to its owner. Servers do not outlive their owner: they get a parent-death signal.
//
// If the pid is dead, or now belongs to another program after a crash and a reboot, the file is
// stale: remove it, since PostgreSQL refuses to start while the pid it names is alive.
// leaving reports whether postmaster.pid's lines say the server is shutting down: its status
// line says so, or its socket is already gone.
func leaving(lines []string) bool {
	if len(lines) >= 8 && strings.TrimSpace(lines[7]) == "stopping" {
		return true
	}
	if len(lines) >= 5 {
		port, sockDir := strings.TrimSpace(lines[3]), strings.TrimSpace(lines[4])
		if _, err := os.Stat(filepath.Join(sockDir, ".s.PGSQL."+port)); errors.Is(err, os.ErrNotExist) {
			return true
		}
	}
	return false
}

func (c *Cluster) attachOrClearStalePID() (attached bool, err error) {
	pidFile := filepath.Join(c.dataDir, "postmaster.pid")
	b, err := os.ReadFile(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pgcluster: read %s: %w", pidFile, err)
	}
	// Lines: pid, data dir, start time, port, socket dir, listen address, shmem key, status.
	lines := strings.Split(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(lines[0]))
	if pid > 0 && c.isOurPostmaster(pid) && leaving(lines) {
		// A postmaster on its way out: its owner died (kill -9 of huddle serve; Pdeathsig asks
		// the server to stop) and it is shutting down, socket already gone. Attaching would
		// fail; wait for it to finish, then start anew.
		c.log.Info("waiting for the previous postgres of this directory to finish stopping", "pid", pid, "dir", c.dir)
		deadline := time.Now().Add(2 * time.Minute)
		for c.isOurPostmaster(pid) {
			if time.Now().After(deadline) {
				return false, fmt.Errorf("pgcluster: postgres (pid %d) on %s did not finish stopping", pid, c.dataDir)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := os.Stat(pidFile); errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
	}
	if pid > 0 && c.isOurPostmaster(pid) && len(lines) >= 5 {
		port, err := strconv.Atoi(strings.TrimSpace(lines[3]))
		sockDir := strings.TrimSpace(lines[4])
		if err == nil && sockDir != "" {
			c.port, c.sockDir, c.attached = port, sockDir, true
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.waitReady(ctx); err != nil {
				return true, fmt.Errorf("pgcluster: attach to running postgres (pid %d) on %s: %w", pid, c.dataDir, err)
			}
			c.log.Info("attached to the postgres already serving this directory", "pid", pid, "dir", c.dir)
			return true, nil
		}
	}
	c.log.Warn("removing stale postmaster.pid from a crashed run", "dir", c.dataDir, "pid", pid)
	if err := os.Remove(pidFile); err != nil {
		return false, fmt.Errorf("pgcluster: remove stale %s: %w", pidFile, err)
	}
	return false, nil
}

// isOurPostmaster reports whether pid is a live process whose working directory is our data
// directory: the postmaster chdirs there, so this tells it apart from a reused pid.
func (c *Cluster) isOurPostmaster(pid int) bool {
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil && bytes.Contains(stat, []byte(") Z ")) { // a zombie holds no files
		return false
	}
	return cwd == c.dataDir
}

func (c *Cluster) start(ctx context.Context, binDir string, as *runAs, opts Options) error {
	settings := [][2]string{
		{"listen_addresses", ""},
		{"unix_socket_directories", c.sockDir},
		{"port", strconv.Itoa(c.port)},
		{"max_connections", "200"},
		// An idle-in-transaction session holds back pg_snapshot_xmin and so stalls the
		// gap-safe relay for everyone; cut such sessions off.
		{"idle_in_transaction_session_timeout", "60s"},
		{"log_min_messages", "warning"},
		{"log_line_prefix", "%m [%p] "},
	}
	if !opts.Fsync {
		settings = append(settings, [][2]string{
			{"fsync", "off"}, {"synchronous_commit", "off"}, {"full_page_writes", "off"},
		}...)
	}
	for k, v := range opts.Settings {
		settings = append(settings, [2]string{k, v})
	}
	args := []string{"-D", c.dataDir}
	for _, kv := range settings {
		args = append(args, "-c", kv[0]+"="+kv[1])
	}

	logFile, err := os.OpenFile(c.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("pgcluster: open log: %w", err)
	}
	logStart, _ := logFile.Seek(0, 2)

	started := time.Now()
	startErr := make(chan error, 1)
	c.mu.Lock()
	exited := c.exited // closed by this start's waiter, even if a restart replaces the field
	c.mu.Unlock()
	// The forking thread must outlive the server, or Pdeathsig would stop it early: lock this
	// goroutine to its thread until the server exits (the thread then ends with it).
	go func() {
		runtime.LockOSThread()
		cmd := exec.Command(filepath.Join(binDir, "postgres"), args...)
		cmd.Dir = c.dir
		cmd.Env = serverEnv()
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = as.sysProcAttr()
		err := cmd.Start()
		logFile.Close()
		if err != nil {
			startErr <- err
			close(exited)
			return
		}
		c.proc = cmd.Process
		startErr <- nil
		c.waitErr = cmd.Wait()
		close(exited)
	}()
	if err := <-startErr; err != nil {
		return fmt.Errorf("pgcluster: start postgres: %w", err)
	}

	if err := c.waitReady(ctx); err != nil {
		_ = c.Stop(context.Background())
		return fmt.Errorf("pgcluster: postgres in %s did not become ready: %w\n%s", c.dir, err, c.logSince(logStart))
	}
	version, _ := serverVersion(c.dataDir)
	c.log.Info("postgres ready", "dir", c.dir, "version", version, "socket", c.socketPath(),
		"as", userName(as), "took", time.Since(started).Round(time.Millisecond))
	return nil
}

// waitReady polls until the server answers a query, it exits, or ctx ends.
func (c *Cluster) waitReady(ctx context.Context) error {
	for {
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(attempt, c.URL("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case <-c.Exited():
			return fmt.Errorf("postgres exited: %v", c.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func (c *Cluster) logSince(offset int64) string {
	b, err := os.ReadFile(c.logPath())
	if err != nil || offset > int64(len(b)) {
		return ""
	}
	return tail(b[offset:], 2000)
}

func userName(as *runAs) string {
	if as == nil {
		return "self"
	}
	return as.name
}

// serverEnv is a minimal environment: PG* variables of the caller (PGDATA, PGPORT, …) must not
// leak into our server.
func serverEnv() []string {
	env := []string{"LC_ALL=C", "LANG=C"}
	if p := os.Getenv("PATH"); p != "" {
		env = append(env, "PATH="+p)
	}
	return env
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}
