package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/config"
	"github.com/huddle-chat/huddle/internal/memberstreams"
	"github.com/huddle-chat/huddle/internal/migrations"
	"github.com/huddle-chat/huddle/internal/natsbroker"
	"github.com/huddle-chat/huddle/internal/pgcluster"
)

// DatabaseName is the database Huddle uses inside its managed cluster.
const DatabaseName = "huddle"

// Database is a connection pool on Huddle's database, plus the managed cluster when Huddle runs
// its own (the embedded default).
type Database struct {
	Pool    *pgxpool.Pool
	URL     string
	cluster *pgcluster.Cluster // nil for an external database
	log     *slog.Logger
}

// OpenDatabase connects to HUDDLE_DATABASE_URL or, when unset, starts (or attaches to, when
// `huddle serve` runs already) the managed cluster in the data directory. CLI commands use it
// as well as serve. It does not migrate; see Migrate.
func OpenDatabase(ctx context.Context, cfg config.Config, log *slog.Logger) (*Database, error) {
	db := &Database{URL: cfg.DatabaseURL, log: log}
	if cfg.EmbeddedPostgres() {
		c, err := pgcluster.Start(ctx, pgcluster.Options{Dir: cfg.PostgresDir(), Fsync: true, Log: log.With("component", "postgres")})
		if err != nil {
			return nil, err
		}
		db.cluster = c
		if err := c.CreateDatabase(ctx, DatabaseName); err != nil {
			db.Close(context.Background())
			return nil, err
		}
		db.URL = c.URL(DatabaseName)
	}
	pcfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		db.Close(context.Background())
		return nil, fmt.Errorf("database url: %w", err)
	}
	// pgxpool defaults to max(4, cores) connections; the relay and the LISTENers hold
	// connections for good, and SSE, commands and projectors need their own.
	if !strings.Contains(db.URL, "pool_max_conns") {
		pcfg.MaxConns = 40
	}
	pcfg.ConnConfig.RuntimeParams["application_name"] = "huddle"
	db.Pool, err = pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		db.Close(context.Background())
		return nil, fmt.Errorf("connect database: %w", err)
	}
	if err := pingUntil(ctx, db.Pool, 30*time.Second); err != nil {
		db.Close(context.Background())
		return nil, err
	}
	return db, nil
}

// BoundedPool opens a second, smaller pool on the same database whose connections end any
// statement (and any wait for a lock) after timeout, server-side: what serves HTTP requests,
// which give up at that deadline anyway. Migrations, the relay, the projectors and rebuilds
// keep Pool, unbounded. The caller closes it.
func (db *Database) BoundedPool(ctx context.Context, timeout time.Duration) (*pgxpool.Pool, error) {
	pcfg := db.Pool.Config()
	pcfg.MaxConns = max(pcfg.MaxConns/2, 4)
	ms := strconv.FormatInt(timeout.Milliseconds(), 10)
	pcfg.ConnConfig.RuntimeParams["statement_timeout"] = ms
	pcfg.ConnConfig.RuntimeParams["lock_timeout"] = ms
	pcfg.ConnConfig.RuntimeParams["application_name"] = "huddle-requests"
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connect database (request pool): %w", err)
	}
	return pool, nil
}

// pingUntil waits for the database: in docker-compose Huddle may start before Postgres.
func pingUntil(ctx context.Context, pool *pgxpool.Pool, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		err := pool.Ping(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("database not reachable: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// restartBackoff is the first wait before restarting a crashed managed cluster; it doubles
// on each failed attempt up to maxRestartBackoff. Not zero: a server that dies at once on
// start (a full disk, a corrupt file) must not be restarted in a tight loop.
const (
	restartBackoff    = 500 * time.Millisecond
	maxRestartBackoff = 30 * time.Second
)

// supervise restarts the managed cluster this process started whenever it dies (a crash, an
// OOM kill), waiting first before the first attempt and doubling the wait after each failed
// one, until ctx ends. Meanwhile the database watchdog answers 503 and /readyz is not ready;
// the pools reconnect by themselves once it is back, and PostgreSQL's crash recovery keeps
// exactly the committed transactions. An external or attached database is not ours to
// restart: supervise then just waits for ctx.
func (db *Database) supervise(ctx context.Context, first time.Duration) {
	if db.cluster == nil || db.cluster.Attached() {
		<-ctx.Done()
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-db.cluster.Exited():
		}
		backoff := first
		for attempt := 1; ; attempt++ {
			db.log.Error("the managed PostgreSQL server exited; restarting it", "attempt", attempt, "in", backoff,
				"log", filepath.Join(db.cluster.Dir(), "postgres.log"))
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			err := db.cluster.Restart(rctx)
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			db.log.Error("restarting PostgreSQL failed", "err", err)
			backoff = min(2*backoff, maxRestartBackoff)
		}
	}
}

// Close closes the pool and stops the managed cluster (if this process started it).
func (db *Database) Close(ctx context.Context) error {
	if db.Pool != nil {
		db.Pool.Close()
	}
	if db.cluster != nil {
		return db.cluster.Stop(ctx)
	}
	return nil
}

// Migrate brings the schema up to date and repairs the store after a dump/restore into
// another cluster. Several instances may run it at once: migrations serialise on an advisory
// lock and the repair on a table lock. `huddle serve` and `huddle migrate` both call it; steps
// that must run on every start belong here (migrations, restore repair, the member-stream carry-over
// of ADR 0013).
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	applied, err := migrations.Up(ctx, pool)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, name := range applied {
		log.Info("migration applied", "name", name)
	}
	repaired, err := eventstore.RepairAfterRestore(ctx, pool)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if repaired {
		log.Warn("event store repaired after a restore into a new cluster (transaction ids rewritten)")
	}
	rep, err := memberstreams.CarryOver(ctx, eventstore.New(pool))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if !rep.AlreadyDone {
		log.Info("member streams scoped by clinic (ADR 0013)", "legacy_streams", rep.LegacyStreams, "carried_over", rep.CarriedOver)
	}
	return nil
}

// NATSURL is where a CLI command finds NATS: HUDDLE_NATS_URL, else the URL the running
// `huddle serve` recorded in the data directory with the service user's credentials from the
// data directory (readable only by the user who runs serve).
func NATSURL(cfg config.Config) (string, error) {
	if !cfg.EmbeddedNATS() {
		return cfg.NATSURL, nil
	}
	b, err := os.ReadFile(cfg.NATSURLFile())
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("no NATS to connect to: start `huddle serve` (it records its embedded NATS URL in %s) or set HUDDLE_NATS_URL", cfg.NATSURLFile())
	}
	if err != nil {
		return "", err
	}
	up, err := natsbroker.ReadCredentials(filepath.Join(cfg.DataDir, natsbroker.ServiceCredentialsFile))
	if err != nil {
		return "", fmt.Errorf("NATS credentials: %w (run as the user who runs `huddle serve`)", err)
	}
	return natsbroker.WithUser(strings.TrimSpace(string(b)), up), nil
}
