// Package config reads Huddle's configuration from HUDDLE_* environment variables.
//
// With nothing set Huddle runs its embedded default: all state under HUDDLE_DATA_DIR, a managed
// local Postgres cluster and an in-process NATS server. Setting HUDDLE_DATABASE_URL or
// HUDDLE_NATS_URL swaps either for an external one.
package config

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Var documents one environment variable (README table, docker-compose test).
type Var struct {
	Name, Default, Doc string
}

// Vars lists every variable Load reads.
var Vars = []Var{
	{"HUDDLE_DATA_DIR", "./huddle-data", "Where the embedded default keeps its state: postgres/, nats/, the dev JWT secret, nats.url, the NATS credentials (nats-huddle.auth, nats-integrator.auth; 0600)."},
	{"HUDDLE_DATABASE_URL", "(embedded)", "PostgreSQL URL of an external server; unset runs a managed local cluster in the data dir."},
	{"HUDDLE_NATS_URL", "(embedded)", "NATS URL(s) of an external server or cluster, comma-separated, with the user: nats://huddle:<password>@host:4222; unset runs NATS in-process."},
	{"HUDDLE_HTTP_ADDR", "127.0.0.1:8080", "HTTP listen address."},
	{"HUDDLE_JWT_SECRET", "(generated)", "HS256 secret for bearer tokens, at least 32 bytes; unset: generated once into <data dir>/jwt-secret (dev mode)."},
	{"HUDDLE_NATS_LISTEN", "127.0.0.1:4222", "Client address of the embedded NATS server (port 0: random); the URL (no credentials) is written to <data dir>/nats.url."},
	{"HUDDLE_NATS_SYNC_ALWAYS", "false", "Embedded NATS: fsync every JetStream write (the event store in Postgres is the record either way)."},
	{"HUDDLE_STREAM_MAX_AGE", "168h", "Retention of the HUDDLE_EVENTS JetStream stream."},
	{"HUDDLE_STREAM_MAX_BYTES", "10737418240", "Size cap of the HUDDLE_EVENTS stream in bytes (-1: none)."},
	{"HUDDLE_STREAM_REPLICAS", "1", "Replicas of HUDDLE_EVENTS (3 on a three-node NATS cluster)."},
	{"HUDDLE_MAX_FILE_BYTES", "26214400", "Largest file upload in bytes (25 MiB)."},
	{"HUDDLE_PROJECTION_WORKERS", "8", "NATS messages each projection's consumer takes in at once on this instance (1–32). Messages only wake the projection's reader, which applies what the store holds in batches (ADR 0011)."},
	{"HUDDLE_LOG_LEVEL", "info", "debug, info, warn or error."},
	{"HUDDLE_SHUTDOWN_TIMEOUT", "20s", "How long a graceful shutdown may take before connections are cut."},
	// Request bounds and the per-user rate limit (issue 14; api/limits.go, api/ratelimit.go).
	{"HUDDLE_REQUEST_TIMEOUT", "10s", "Deadline of each HTTP request but the live stream and file/audit transfers (10 min): body read, response write, every database statement; past it, 503 unavailable."},
	{"HUDDLE_RATE_PER_USER", "20", "Commands per second each clinic+user may send on average (token bucket); 0 turns the limit off (bench, load tests)."},
	{"HUDDLE_RATE_BURST", "60", "Commands a user may send at once before HUDDLE_RATE_PER_USER applies; past it, 429 rate_limited with Retry-After."},
	// Reminders of urgent messages (issue 17; reminders/, ADR 0016).
	{"HUDDLE_URGENT_REMIND_EVERY", "2m", "Interval (at least 100ms) of the reminder events a recipient's stream gets until they acknowledge an urgent message."},
	{"HUDDLE_URGENT_REMIND_MAX", "10", "Most reminders per recipient and urgent message; 0 turns reminders off."},
}

// IsVar reports whether Load reads the variable name.
func IsVar(name string) bool {
	for _, v := range Vars {
		if v.Name == name {
			return true
		}
	}
	return false
}

// Config is the parsed configuration.
type Config struct {
	DataDir string
	// DatabaseURL is empty for the embedded cluster.
	DatabaseURL string
	// NATSURL is empty for the embedded server.
	NATSURL  string
	HTTPAddr string
	// NATSListen is the embedded NATS client address (host:port, port may be 0).
	NATSListen     string
	NATSSyncAlways bool
	StreamMaxAge   time.Duration
	StreamMaxBytes int64
	StreamReplicas int
	MaxFileBytes   int64
	// ProjectionWorkers is projections.Engine.Workers.
	ProjectionWorkers int
	LogLevel          slog.Level
	ShutdownTimeout   time.Duration
	// RequestTimeout, RatePerUser and RateBurst are api.Deps' fields of the same names.
	RequestTimeout time.Duration
	RatePerUser    float64
	RateBurst      int
	// RemindEvery and RemindMax schedule the reminders of urgent messages (reminders.Scheduler);
	// RemindMax 0 (the zero Config's) runs no scheduler.
	RemindEvery time.Duration
	RemindMax   int
	// JWTSecret signs and verifies tokens; JWTSecretFile is set when it came from the data dir.
	JWTSecret     []byte
	JWTSecretFile string
}

// EmbeddedPostgres reports whether Huddle runs its own Postgres cluster.
func (c Config) EmbeddedPostgres() bool { return c.DatabaseURL == "" }

// EmbeddedNATS reports whether Huddle runs NATS in-process.
func (c Config) EmbeddedNATS() bool { return c.NATSURL == "" }

// PostgresDir is the managed cluster's directory.
func (c Config) PostgresDir() string { return filepath.Join(c.DataDir, "postgres") }

// NATSDir is the embedded JetStream store.
func (c Config) NATSDir() string { return filepath.Join(c.DataDir, "nats") }

// NATSURLFile is where serve records the embedded NATS client URL, for `huddle tail` and
// integrators on this machine.
func (c Config) NATSURLFile() string { return filepath.Join(c.DataDir, "nats.url") }

const minSecretLen = 32

// Load reads the environment. When HUDDLE_JWT_SECRET is unset it reads the dev secret from the
// data dir, creating it (0600) on first use. Errors name the variable and what is expected.
func Load() (Config, error) { return load(os.Getenv) }

// LoadExisting is Load for commands that must use the server's secret rather than make one
// (huddle token): a secret created in the wrong directory would sign tokens the server rejects,
// so without HUDDLE_JWT_SECRET or an existing dev secret it fails, saying where it looked.
func LoadExisting() (Config, error) { return loadWith(os.Getenv, existingSecret) }

func load(getenv func(string) string) (Config, error) { return loadWith(getenv, devSecret) }

func loadWith(getenv func(string) string, secret func(path string) ([]byte, error)) (Config, error) {
	get := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	var errs []error
	bad := func(name, value, want string) {
		errs = append(errs, fmt.Errorf("%s=%q: %s", name, value, want))
	}
	c := Config{
		DatabaseURL: get("HUDDLE_DATABASE_URL", ""),
		NATSURL:     get("HUDDLE_NATS_URL", ""),
		HTTPAddr:    get("HUDDLE_HTTP_ADDR", "127.0.0.1:8080"),
		NATSListen:  get("HUDDLE_NATS_LISTEN", "127.0.0.1:4222"),
	}

	dir, err := filepath.Abs(get("HUDDLE_DATA_DIR", "./huddle-data"))
	if err != nil {
		bad("HUDDLE_DATA_DIR", get("HUDDLE_DATA_DIR", ""), err.Error())
	}
	c.DataDir = dir

	if c.DatabaseURL != "" {
		if _, err := pgxpool.ParseConfig(c.DatabaseURL); err != nil {
			bad("HUDDLE_DATABASE_URL", redact(c.DatabaseURL), "not a PostgreSQL URL or DSN ("+err.Error()+")")
		}
	}
	if c.NATSURL != "" {
		for _, u := range strings.Split(c.NATSURL, ",") {
			p, err := url.Parse(strings.TrimSpace(u))
			if err != nil || p.Host == "" || !(p.Scheme == "nats" || p.Scheme == "tls" || p.Scheme == "ws" || p.Scheme == "wss") {
				bad("HUDDLE_NATS_URL", redact(u), "want nats://host:port (comma-separated for a cluster)")
			}
		}
	}
	if _, port, err := net.SplitHostPort(c.HTTPAddr); err != nil || !validPort(port) {
		bad("HUDDLE_HTTP_ADDR", c.HTTPAddr, "want host:port, e.g. 127.0.0.1:8080 or :8080")
	}
	if _, port, err := net.SplitHostPort(c.NATSListen); err != nil || !validPort(port) {
		bad("HUDDLE_NATS_LISTEN", c.NATSListen, "want host:port, e.g. 127.0.0.1:4222 (port 0 picks a free one)")
	}

	parseBool := func(name string, dst *bool) {
		v := get(name, "false")
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad(name, v, "want true or false")
		}
		*dst = b
	}
	parseInt := func(name, def string, min int64, dst *int64) {
		v := get(name, def)
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < min {
			bad(name, v, fmt.Sprintf("want an integer ≥ %d", min))
		}
		*dst = n
	}
	parseDuration := func(name, def string, dst *time.Duration) {
		v := get(name, def)
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			bad(name, v, "want a positive duration like 30s, 10m or 168h")
		}
		*dst = d
	}
	parseBool("HUDDLE_NATS_SYNC_ALWAYS", &c.NATSSyncAlways)
	parseDuration("HUDDLE_STREAM_MAX_AGE", "168h", &c.StreamMaxAge)
	parseInt("HUDDLE_STREAM_MAX_BYTES", "10737418240", -1, &c.StreamMaxBytes)
	if c.StreamMaxBytes == 0 {
		bad("HUDDLE_STREAM_MAX_BYTES", "0", "want a positive size in bytes, or -1 for no cap")
	}
	var replicas int64
	parseInt("HUDDLE_STREAM_REPLICAS", "1", 1, &replicas)
	c.StreamReplicas = int(replicas)
	parseInt("HUDDLE_MAX_FILE_BYTES", strconv.Itoa(25<<20), 1, &c.MaxFileBytes)
	var workers int64
	parseInt("HUDDLE_PROJECTION_WORKERS", "8", 1, &workers)
	if workers > 32 {
		bad("HUDDLE_PROJECTION_WORKERS", strconv.FormatInt(workers, 10), "want 1 to 32")
	}
	c.ProjectionWorkers = int(workers)
	parseDuration("HUDDLE_SHUTDOWN_TIMEOUT", "20s", &c.ShutdownTimeout)
	parseDuration("HUDDLE_REQUEST_TIMEOUT", "10s", &c.RequestTimeout)
	rate := get("HUDDLE_RATE_PER_USER", "20")
	if r, err := strconv.ParseFloat(rate, 64); err != nil || r < 0 || math.IsInf(r, 0) || math.IsNaN(r) {
		bad("HUDDLE_RATE_PER_USER", rate, "want a number of commands per second ≥ 0 (0: no limit)")
	} else {
		c.RatePerUser = r
	}
	var burst int64
	parseInt("HUDDLE_RATE_BURST", "60", 1, &burst)
	c.RateBurst = int(burst)
	parseDuration("HUDDLE_URGENT_REMIND_EVERY", "2m", &c.RemindEvery)
	if c.RemindEvery > 0 && c.RemindEvery < 100*time.Millisecond {
		// The scheduler polls at half the interval: shorter would keep a core busy for nothing.
		bad("HUDDLE_URGENT_REMIND_EVERY", c.RemindEvery.String(), "want at least 100ms (minutes in production, e.g. 2m)")
	}
	var remindMax int64
	parseInt("HUDDLE_URGENT_REMIND_MAX", "10", 0, &remindMax)
	if remindMax > 1000 {
		bad("HUDDLE_URGENT_REMIND_MAX", strconv.FormatInt(remindMax, 10), "want 0 to 1000 (0: no reminders)")
	}
	c.RemindMax = int(remindMax)

	level := get("HUDDLE_LOG_LEVEL", "info")
	if err := c.LogLevel.UnmarshalText([]byte(level)); err != nil {
		bad("HUDDLE_LOG_LEVEL", level, "want debug, info, warn or error")
	}

	if s := getenv("HUDDLE_JWT_SECRET"); s != "" {
		if len(s) < minSecretLen {
			errs = append(errs, fmt.Errorf("HUDDLE_JWT_SECRET: %d bytes is too short for HS256, want at least %d (e.g. `openssl rand -hex 32`)", len(s), minSecretLen))
		}
		c.JWTSecret = []byte(s)
	}
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("configuration: %w", errors.Join(errs...))
	}
	if c.JWTSecret == nil {
		c.JWTSecretFile = filepath.Join(c.DataDir, "jwt-secret")
		if c.JWTSecret, err = secret(c.JWTSecretFile); err != nil {
			// The data dir is what to fix (or HUDDLE_JWT_SECRET to set), so name both.
			return Config{}, fmt.Errorf("configuration: HUDDLE_DATA_DIR=%q: no usable dev JWT secret (HUDDLE_JWT_SECRET is unset): %w", c.DataDir, err)
		}
	}
	return c, nil
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 0 && n <= 65535
}

// devSecret reads the dev-mode secret, creating it on first use. O_EXCL makes two instances
// starting at once agree on one secret: the loser reads the winner's.
func devSecret(path string) ([]byte, error) {
	for range 50 {
		b, err := os.ReadFile(path)
		if err == nil {
			s := strings.TrimSpace(string(b))
			if len(s) >= minSecretLen {
				return []byte(s), nil
			}
			// Being written by a concurrent first start; or truncated.
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			f.Close()
			return nil, err
		}
		secret := hex.EncodeToString(raw)
		if _, err := f.WriteString(secret + "\n"); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		return []byte(secret), nil
	}
	return nil, fmt.Errorf("%s holds fewer than %d bytes: delete it to generate a new one", path, minSecretLen)
}

// existingSecret reads the dev secret that huddle serve created, and never creates one.
func existingSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist: huddle serve creates it on its first start; "+
			"run this command where the server runs, or set HUDDLE_DATA_DIR to the server's data "+
			"directory (or HUDDLE_JWT_SECRET to its secret)", path)
	}
	if err != nil {
		return nil, err
	}
	if s := strings.TrimSpace(string(b)); len(s) >= minSecretLen {
		return []byte(s), nil
	}
	return nil, fmt.Errorf("%s holds fewer than %d bytes: delete it and restart huddle serve", path, minSecretLen)
}

// redact hides a password in a URL for error messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
