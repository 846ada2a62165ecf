package testenv

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/huddle-chat/huddle/internal/migrations"
	"github.com/huddle-chat/huddle/internal/pgcluster"
)

// DurablePostgres starts a cluster of its own with production durability (fsync and
// synchronous_commit on, as the embedded default runs) and returns a pool of at most maxConns
// on a migrated database in it, and its URL; both are gone when tb ends. For benchmarks:
// the shared test cluster runs with fsync off, which flatters every write figure.
func DurablePostgres(tb testing.TB, maxConns int32) (*pgxpool.Pool, string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pgcluster.Start(ctx, pgcluster.Options{Dir: filepath.Join(tb.TempDir(), "pg"), Fsync: true})
	if err != nil {
		tb.Fatalf("testenv: durable cluster: %v", err)
	}
	tb.Cleanup(func() { _ = c.Stop(context.Background()) })
	if err := c.CreateDatabase(ctx, "huddle"); err != nil {
		tb.Fatal(err)
	}
	url := c.URL("huddle")
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	if _, err := migrations.Up(ctx, pool); err != nil {
		tb.Fatalf("testenv: migrate durable cluster: %v", err)
	}
	return pool, url
}
