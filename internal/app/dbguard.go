package app

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// The database watchdog. A frozen Postgres (SIGSTOP, a stuck disk, a partition) does not
// refuse connections: queries just wait. Request deadlines bound each request, but every
// request would still wait its full deadline, and those already waiting would keep their
// connections. The watchdog pings Postgres on a connection of its own (a busy pool cannot
// delay it) and, after a few missed answers, declares the database lost: requests in flight
// end at once and new ones answer 503 until a ping succeeds again (issue 14: a frozen
// Postgres answers 503 within 5 s and recovers by itself).
const (
	guardEvery   = 500 * time.Millisecond
	guardTimeout = time.Second
	// guardMisses consecutive failures declare the database lost: one slow answer on a
	// loaded machine is not an outage. Worst case to detect: about 2 × (1 s + 0.5 s).
	guardMisses = 2
)

// errDatabaseLost is the cause of a lost epoch's context.
var errDatabaseLost = errors.New("the database is unreachable")

type dbGuard struct {
	cfg *pgx.ConnConfig
	log *slog.Logger

	mu     sync.Mutex
	epoch  context.Context // ends when the database is declared lost
	cancel context.CancelCauseFunc
}

func newDBGuard(cfg *pgx.ConnConfig, log *slog.Logger) *dbGuard {
	g := &dbGuard{cfg: cfg, log: log}
	g.epoch, g.cancel = context.WithCancelCause(context.Background())
	return g
}

// Lost returns the current epoch's context: done while the database is lost.
func (g *dbGuard) Lost() context.Context {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.epoch
}

// Err is nil while the database answers.
func (g *dbGuard) Err() error { return context.Cause(g.Lost()) }

func (g *dbGuard) setLost(lost bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case lost && g.epoch.Err() == nil:
		g.log.Error("database unreachable: answering 503 until it is back", "err", err)
		g.cancel(errDatabaseLost)
	case !lost && g.epoch.Err() != nil:
		g.log.Info("database reachable again")
		g.epoch, g.cancel = context.WithCancelCause(context.Background())
	}
}

// run pings until ctx ends.
func (g *dbGuard) run(ctx context.Context) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	misses := 0
	t := time.NewTicker(guardEvery)
	defer t.Stop()
	for {
		err := func() error {
			pctx, cancel := context.WithTimeout(ctx, guardTimeout)
			defer cancel()
			if conn == nil || conn.IsClosed() {
				c, err := pgx.ConnectConfig(pctx, g.cfg)
				if err != nil {
					return err
				}
				conn = c
			}
			_, err := conn.Exec(pctx, "SELECT 1")
			return err
		}()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if conn != nil {
				conn.Close(context.Background()) // a timed-out connection is broken anyway
				conn = nil
			}
			if misses++; misses >= guardMisses {
				g.setLost(true, err)
			}
		} else {
			misses = 0
			g.setLost(false, nil)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
