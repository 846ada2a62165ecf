// Package app is Huddle's composition root: it starts (or connects to) Postgres and NATS,
// migrates, wires the event store, relay, projections, command handler and HTTP API, serves,
// and shuts everything down in order. `huddle serve` and the end-to-end tests use it.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/huddle-chat/huddle/api"
	"github.com/huddle-chat/huddle/directory"
	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/inbox"
	"github.com/huddle-chat/huddle/internal/audit"
	"github.com/huddle-chat/huddle/internal/blobs"
	"github.com/huddle-chat/huddle/internal/commands"
	"github.com/huddle-chat/huddle/internal/config"
	"github.com/huddle-chat/huddle/internal/natsbroker"
	"github.com/huddle-chat/huddle/live"
	"github.com/huddle-chat/huddle/projections"
	"github.com/huddle-chat/huddle/reminders"
)

// Housekeeping: how long live-feed entries are kept for SSE resumption, after how long an
// upload that never completed (a crash mid-upload) is swept, and how long after its upload
// completed a file no message names is settled (ADR 0009). That grace must outlast any
// append still in flight, which takes milliseconds: an hour is plenty.
const (
	liveRetention     = 24 * time.Hour
	incompleteUpload  = time.Hour
	unsharedUpload    = time.Hour
	housekeepingEvery = 10 * time.Minute
)

// App is a built Huddle instance. Start builds it; Run serves until its context ends.
type App struct {
	cfg     config.Config
	log     *slog.Logger
	db      *Database
	reqPool *pgxpool.Pool // the HTTP paths' pool: statements bounded by the request timeout
	guard   *dbGuard
	broker  *natsbroker.Broker // nil when NATS is external
	natsURL string
	nc      *nats.Conn // live notifications
	pub     message.Publisher

	Metrics *prometheus.Registry
	Store   *eventstore.Store
	Relay   *eventstore.Relay
	Engine  *projections.Engine
	Server  *api.Server
	feed    *live.Feed
	blobs   *blobs.Store
	// Reminders fires the reminders of urgent messages (nil: HUDDLE_URGENT_REMIND_MAX is 0).
	Reminders *reminders.Scheduler

	// restartBackoff is the first wait before restarting a crashed managed Postgres.
	restartBackoff time.Duration

	ln        net.Listener
	lock      *os.File // the data directory's lock (embedded Postgres or NATS)
	closeOnce sync.Once
	closeErr  error
}

// Start brings up the infrastructure, migrates and wires every component, and binds the HTTP
// listener. Nothing is served and no background work runs until Run. On error everything
// started so far is stopped again.
func Start(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *App, err error) {
	started := time.Now()
	a := &App{cfg: cfg, log: log, Metrics: prometheus.NewRegistry(), restartBackoff: restartBackoff}
	defer func() {
		if err != nil {
			a.Close(context.Background())
		}
	}()
	a.Metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if cfg.EmbeddedPostgres() || cfg.EmbeddedNATS() {
		// Before touching anything in the directory: a second serve must change nothing.
		if a.lock, err = lockDataDir(cfg.DataDir); err != nil {
			return nil, err
		}
	}

	if a.db, err = OpenDatabase(ctx, cfg, log); err != nil {
		return nil, err
	}
	if err := Migrate(ctx, a.db.Pool, log); err != nil {
		return nil, err
	}
	registerPoolMetrics(a.Metrics, a.db.Pool)
	if err := a.startNATS(ctx); err != nil {
		return nil, err
	}

	wlog := watermill.NewSlogLogger(log.With("component", "watermill"))
	if a.reqPool, err = a.db.BoundedPool(ctx, cfg.RequestTimeout); err != nil {
		return nil, err
	}
	a.guard = newDBGuard(a.db.Pool.Config().ConnConfig.Copy(), log.With("component", "dbguard"))
	a.Store = eventstore.New(a.db.Pool, eventstore.WithLogger(log.With("component", "eventstore")))
	// Commands append through a store on the bounded pool: a request's statements end with it.
	// The relay, the projectors and their rebuilds keep the unbounded pool (a rebuild's COPY
	// of a large store may take minutes).
	cmdStore := eventstore.New(a.reqPool, eventstore.WithLogger(log.With("component", "eventstore")))
	if a.pub, err = natsbroker.NewPublisher(a.natsURL, wlog); err != nil {
		return nil, err
	}
	a.Relay = eventstore.NewRelay(a.Store, a.pub, eventstore.RelayConfig{}, log, a.Metrics)
	a.Engine = projections.NewEngine(a.db.Pool, a.Store, a.natsURL, log, a.Metrics,
		ReadModels(live.NewWriter(a.nc, log.With("component", "live")).AfterApply))
	a.Engine.Workers = max(cfg.ProjectionWorkers, 1)
	a.blobs = blobs.New(a.db.Pool)
	// ADAPT if internal/commands.New changes: the single line that builds the command handler.
	cmds := commands.New(cmdStore, a.blobs, commands.Options{MaxFileBytes: cfg.MaxFileBytes, Log: log.With("component", "commands")})
	commands.RegisterMetrics(a.Metrics, cmds)
	a.feed = live.NewFeed(a.db.Pool)
	if cfg.RemindMax > 0 && cfg.RemindEvery > 0 {
		a.Reminders = reminders.NewScheduler(a.db.Pool, live.NewNotifier(a.nc, log.With("component", "reminders")),
			cfg.RemindEvery, cfg.RemindMax, log.With("component", "reminders"))
		a.Metrics.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "huddle_reminders_fired_total",
			Help: "Reminder stream events of urgent messages this instance fired."},
			func() float64 { return float64(a.Reminders.Fired()) }))
	}
	a.Server = api.New(api.Deps{
		Logger:       log.With("component", "http"),
		JWTSecret:    cfg.JWTSecret,
		Commands:     cmds,
		Queries:      inbox.NewQueries(a.reqPool),
		Directory:    directory.New(a.reqPool),
		Projections:  a.Engine,
		Ready:        a.ready,
		Metrics:      a.Metrics,
		MaxFileBytes: cfg.MaxFileBytes,
		Live:         live.NewHub(a.nc),
		Audit:        audit.New(a.Store),
		Feed:         a.feed,

		RequestTimeout: cfg.RequestTimeout,
		DatabaseLost:   a.guard.Lost,
		RatePerUser:    cfg.RatePerUser,
		RateBurst:      cfg.RateBurst,
		DevSignIn:      cfg.JWTSecretFile != "", // the generated dev secret: no identity provider
	})

	if a.ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("listen on HUDDLE_HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	log.Info("huddle started", "http", "http://"+a.ln.Addr().String(), "nats", natsbroker.Redact(a.natsURL),
		"embedded_postgres", cfg.EmbeddedPostgres(), "embedded_nats", cfg.EmbeddedNATS(),
		"took", time.Since(started).Round(time.Millisecond))
	return a, nil
}

func (a *App) startNATS(ctx context.Context) error {
	a.natsURL = a.cfg.NATSURL
	if a.cfg.EmbeddedNATS() {
		host, portStr, _ := net.SplitHostPort(a.cfg.NATSListen) // validated by config
		port, _ := strconv.Atoi(portStr)
		creds, err := natsbroker.LoadOrCreateCredentials(a.cfg.DataDir)
		if err != nil {
			return err
		}
		b, err := natsbroker.Start(ctx, natsbroker.Options{
			Credentials: &creds,
			StoreDir:    a.cfg.NATSDir(),
			ListenHost:  host,
			ListenPort:  port,
			SyncAlways:  a.cfg.NATSSyncAlways,
			Log:         a.log.With("component", "nats"),
		})
		if err != nil {
			return fmt.Errorf("%w (HUDDLE_NATS_LISTEN=%s; use port 0 for a free one)", err, a.cfg.NATSListen)
		}
		a.broker = b
		a.natsURL = b.ClientURL()
		// The address only: the credentials are in their own 0600 files next to it.
		if err := os.WriteFile(a.cfg.NATSURLFile(), []byte(b.URL()+"\n"), 0o644); err != nil {
			return fmt.Errorf("record nats url: %w", err)
		}
	}
	streamCfg := natsbroker.StreamConfig{
		MaxAge:   a.cfg.StreamMaxAge,
		MaxBytes: a.cfg.StreamMaxBytes,
		Replicas: a.cfg.StreamReplicas,
	}
	// An external NATS cluster may still be forming (docker compose starts everything at
	// once; JetStream needs a quorum for a replicated stream): keep trying while ctx allows.
	for {
		err := natsbroker.EnsureStream(ctx, a.natsURL, streamCfg)
		if err == nil {
			break
		}
		if a.cfg.EmbeddedNATS() {
			return err
		}
		a.log.Warn("NATS not ready yet, retrying", "url", natsbroker.Redact(a.natsURL), "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-time.After(time.Second):
		}
	}
	var err error
	a.nc, err = nats.Connect(a.natsURL, nats.Name("huddle-live"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return fmt.Errorf("connect nats %s: %w", natsbroker.Redact(a.natsURL), err)
	}
	return nil
}

// ReadModels lists the read models the engine runs, in the order rebuild and status show them;
// after runs after each live batch of the inbox (the live feed's writer; none for a rebuild).
func ReadModels(after ...projections.AfterApply) []*projections.ReadModel {
	return []*projections.ReadModel{directory.ReadModel(), inbox.ReadModel(after...), reminders.ReadModel()}
}

// Addr is the HTTP listener's address (useful with port 0).
func (a *App) Addr() net.Addr { return a.ln.Addr() }

// NATSURL is the NATS client URL in use (embedded or external), with the service user's
// credentials when NATS is embedded: keep it out of logs (natsbroker.Redact).
func (a *App) NATSURL() string { return a.natsURL }

// DatabaseURL is the Postgres URL in use.
func (a *App) DatabaseURL() string { return a.db.URL }

// ready is /readyz: Postgres answers, NATS is connected, the relay and the projectors run.
// Migrations ran before serving started.
func (a *App) ready(ctx context.Context) error {
	var errs []error
	if err := a.guard.Err(); err != nil {
		errs = append(errs, fmt.Errorf("postgres: %w", err)) // a ping would wait out ctx
	} else if err := a.db.Pool.Ping(ctx); err != nil {
		errs = append(errs, fmt.Errorf("postgres: %w", err))
	}
	if !a.nc.IsConnected() {
		errs = append(errs, fmt.Errorf("nats: %s", a.nc.Status()))
	}
	if !a.Relay.Healthy() {
		errs = append(errs, errors.New("relay: not running"))
	}
	if !a.Engine.Healthy() {
		errs = append(errs, errors.New("projections: not running"))
	}
	return errors.Join(errs...)
}

// Run serves HTTP and runs the relay, the projectors and housekeeping until ctx ends, then
// shuts down gracefully: stop accepting, end SSE streams (clients resume elsewhere with
// Last-Event-ID), let other requests finish, stop the relay and projectors, and finally close
// pools and stop NATS and Postgres. It returns after everything stopped.
func (a *App) Run(ctx context.Context) error {
	defer a.Close(context.Background())

	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	g, gctx := errgroup.WithContext(work)
	g.Go(func() error { return supervise(gctx, a.log, "relay", a.Relay.Run) })
	g.Go(func() error { return supervise(gctx, a.log, "projections", a.Engine.Run) })
	g.Go(func() error { a.housekeeping(gctx); return nil })
	if a.Reminders != nil {
		g.Go(func() error { return supervise(gctx, a.log, "reminders", a.Reminders.Run) })
	}
	g.Go(func() error { a.guard.run(gctx); return nil })
	g.Go(func() error { a.db.supervise(gctx, a.restartBackoff); return nil })

	streams, endStreams := context.WithCancel(context.Background())
	defer endStreams()
	srv := &http.Server{
		Handler:           endStreamsOnShutdown(a.Server.Handler(), streams),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// No WriteTimeout and no ReadTimeout: the first cuts SSE streams, and the second's
		// read deadline, hit by the server's background read, cancels a long request's
		// context. Handlers bound their own work; body sizes are limited by the API.
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(a.ln) }()
	a.log.Info("serving", "addr", a.ln.Addr().String())

	var err error
	select {
	case <-ctx.Done():
		a.log.Info("shutting down")
	case err = <-serveErr:
		err = fmt.Errorf("http server: %w", err)
	case <-gctx.Done():
		err = fmt.Errorf("background work stopped: %w", context.Cause(gctx))
	}

	shutdownCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	endStreams()
	a.Server.EndStreams()
	if serr := srv.Shutdown(shutdownCtx); serr != nil {
		a.log.Warn("http shutdown incomplete, closing connections", "err", serr)
		srv.Close()
		if err == nil {
			err = fmt.Errorf("http shutdown: requests still running after HUDDLE_SHUTDOWN_TIMEOUT (%v): %w", a.cfg.ShutdownTimeout, serr)
		}
	}
	stopWork()
	if werr := g.Wait(); werr != nil && err == nil && !errors.Is(werr, context.Canceled) {
		err = werr
	}
	if cerr := a.Close(shutdownCtx); cerr != nil && err == nil {
		err = cerr
	}
	a.log.Info("stopped")
	return err
}

// supervise runs fn until ctx ends, restarting it with backoff when it fails (say NATS was
// unreachable when the projectors subscribed). Run functions return nil only when ctx ended.
func supervise(ctx context.Context, log *slog.Logger, name string, fn func(context.Context) error) error {
	backoff := 250 * time.Millisecond
	for {
		err := fn(ctx)
		if ctx.Err() != nil {
			return nil
		}
		log.Error("component stopped, restarting", "component", name, "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 15*time.Second)
	}
}

func (a *App) housekeeping(ctx context.Context) {
	t := time.NewTicker(housekeepingEvery)
	defer t.Stop()
	for {
		if n, err := a.feed.Prune(ctx, liveRetention); err != nil && ctx.Err() == nil {
			a.log.Warn("prune live feed", "err", err)
		} else if n > 0 {
			a.log.Info("pruned live feed", "entries", n)
		}
		if n, err := a.blobs.SweepIncomplete(ctx, time.Now().Add(-incompleteUpload)); err != nil && ctx.Err() == nil {
			a.log.Warn("sweep incomplete uploads", "err", err)
		} else if n > 0 {
			a.log.Info("swept incomplete uploads", "count", n)
		}
		if n, err := a.blobs.SweepUnshared(ctx, time.Now().Add(-unsharedUpload)); err != nil && ctx.Err() == nil {
			a.log.Warn("sweep unshared uploads", "err", err, "marked", n.Marked, "deleted", n.Deleted)
		} else if n.Marked > 0 || n.Deleted > 0 {
			a.log.Info("swept unshared uploads", "marked", n.Marked, "deleted", n.Deleted)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// endStreamsOnShutdown gives long-lived requests (SSE, text/event-stream) a context that ends
// when streams is cancelled: http.Server.Shutdown waits for requests to finish but never
// cancels them, so without this a connected client would hold shutdown until its timeout.
func endStreamsOnShutdown(h http.Handler, streams context.Context) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") == "text/event-stream" || r.URL.Path == "/v1/stream" {
			ctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			stop := context.AfterFunc(streams, cancel)
			defer stop()
			r = r.WithContext(ctx)
		}
		h.ServeHTTP(w, r)
	})
}

// Close releases everything Start acquired, in reverse order. Run calls it; call it yourself
// only when Run was never called. Safe to call more than once.
func (a *App) Close(ctx context.Context) error {
	a.closeOnce.Do(func() {
		var errs []error
		if a.ln != nil {
			a.ln.Close()
		}
		if a.pub != nil {
			a.pub.Close() // closes its own connection
		}
		if a.nc != nil {
			a.nc.Close()
		}
		if a.broker != nil {
			a.broker.Shutdown()
			os.Remove(a.cfg.NATSURLFile())
		}
		if a.reqPool != nil {
			a.reqPool.Close()
		}
		if a.db != nil {
			if err := a.db.Close(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if a.lock != nil {
			a.lock.Close() // releases the flock, last: everything in the directory is stopped
		}
		a.closeErr = errors.Join(errs...)
	})
	return a.closeErr
}

// registerPoolMetrics exposes the connection pool's use: a pool at its limit shows up as
// latency everywhere, and this names the cause.
func registerPoolMetrics(reg prometheus.Registerer, pool *pgxpool.Pool) {
	gauge := func(name, help string, f func(*pgxpool.Stat) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return f(pool.Stat()) })
	}
	reg.MustRegister(
		gauge("huddle_db_pool_acquired_connections", "Connections in use.", func(s *pgxpool.Stat) float64 { return float64(s.AcquiredConns()) }),
		gauge("huddle_db_pool_idle_connections", "Idle connections.", func(s *pgxpool.Stat) float64 { return float64(s.IdleConns()) }),
		gauge("huddle_db_pool_max_connections", "Pool size limit.", func(s *pgxpool.Stat) float64 { return float64(s.MaxConns()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "huddle_db_pool_empty_acquires_total",
			Help: "Acquires that had to wait for a connection."},
			func() float64 { return float64(pool.Stat().EmptyAcquireCount()) }),
	)
}
