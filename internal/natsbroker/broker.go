// Package natsbroker runs the embedded NATS server of the embedded default and builds the
// Watermill publisher and subscribers Huddle uses on any NATS (embedded or a cluster).
//
// NATS is transport, not the record: the event store in Postgres is. So the HUDDLE_EVENTS stream
// keeps a bounded window (7 days by default) and JetStream's default lazy fsync (every two
// minutes) is acceptable; operators who want every write synced set SyncAlways.
package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// StreamName is the JetStream stream the relay publishes every event into.
const StreamName = "HUDDLE_EVENTS"

// StreamSubjects are the subjects HUDDLE_EVENTS captures: huddle.events.<clinic>.<category>.<Type>.
const StreamSubjects = "huddle.events.>"

// Options configure the embedded server.
type Options struct {
	// StoreDir is where JetStream keeps its files (required).
	StoreDir string
	// ListenHost is the TCP host for clients; default 127.0.0.1 (loopback only).
	ListenHost string
	// ListenPort is the TCP port for clients: 0 picks a free port, -1 opens no TCP listener (then
	// only in-process connections through Connect work).
	ListenPort int
	// SyncAlways fsyncs every JetStream write before acking it (slower; default is JetStream's
	// periodic sync).
	SyncAlways bool
	// ServerName names the server in logs and JetStream metadata; default "huddle-embedded".
	ServerName string
	// Credentials are the users' passwords (see auth.go); nil reads them from (or creates them
	// in) StoreDir, which suits tests: ClientURL and IntegratorURL carry them.
	Credentials *Credentials
	// Log receives the server's lifecycle events; nil discards them.
	Log *slog.Logger
}

// Broker is a running embedded NATS server with JetStream.
type Broker struct {
	ns    *server.Server
	log   *slog.Logger
	creds Credentials
}

// Start starts the embedded server and returns once it accepts connections. The context bounds
// the wait for readiness.
func Start(ctx context.Context, opts Options) (*Broker, error) {
	if opts.StoreDir == "" {
		return nil, errors.New("natsbroker: Options.StoreDir is empty")
	}
	if err := os.MkdirAll(opts.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("natsbroker: create store dir: %w", err)
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var creds Credentials
	if opts.Credentials != nil {
		creds = *opts.Credentials
	} else {
		// Kept in the store directory, so that a server restarted on it (an outage in a
		// test) accepts the clients of the one before.
		var err error
		if creds, err = LoadOrCreateCredentials(opts.StoreDir); err != nil {
			return nil, err
		}
	}
	sopts := &server.Options{
		// Every client authenticates (the port is reachable by every process on the host).
		Users:      creds.users(),
		ServerName: opts.ServerName,
		JetStream:  true,
		StoreDir:   opts.StoreDir,
		SyncAlways: opts.SyncAlways,
		Host:       opts.ListenHost,
		NoSigs:     true, // signals belong to the host process, which shuts us down in order
		NoLog:      true,
		// Cap JetStream's own memory use; the stream is file-backed.
		JetStreamMaxMemory: 64 << 20,
	}
	if sopts.ServerName == "" {
		sopts.ServerName = "huddle-embedded"
	}
	if sopts.Host == "" {
		sopts.Host = "127.0.0.1"
	}
	switch {
	case opts.ListenPort < 0:
		sopts.DontListen = true
	case opts.ListenPort == 0:
		sopts.Port = server.RANDOM_PORT // nats-server reads 0 as its default 4222
	default:
		sopts.Port = opts.ListenPort
	}
	if sopts.Port > 0 {
		// nats-server reports a busy port only by never becoming ready; say so at once.
		addr := net.JoinHostPort(sopts.Host, strconv.Itoa(sopts.Port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("natsbroker: cannot listen on %s: %w", addr, err)
		}
		l.Close()
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("natsbroker: configure server: %w", err)
	}
	started := time.Now()
	ns.Start()
	wait := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl)
	}
	if !ns.ReadyForConnections(wait) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("natsbroker: server on %s not ready within %v (is port %d free?)", opts.StoreDir, wait, opts.ListenPort)
	}
	b := &Broker{ns: ns, log: log, creds: creds}
	log.Info("nats ready", "url", b.URL(), "store", opts.StoreDir, "took", time.Since(started).Round(time.Millisecond))
	return b, nil
}

// URL is the nats:// URL clients connect to over TCP, without credentials (meaningless with
// ListenPort -1). This is what the data directory's nats.url records.
func (b *Broker) URL() string { return b.ns.ClientURL() }

// ClientURL is URL carrying the service user's credentials: what Huddle's own clients use.
// Keep it out of logs and files (Redact).
func (b *Broker) ClientURL() string { return WithUser(b.URL(), b.creds.Service) }

// IntegratorURL is URL carrying the read-only integrator user's credentials.
func (b *Broker) IntegratorURL() string { return WithUser(b.URL(), b.creds.Integrator) }

// Server exposes the embedded server (for in-process connections and fault injection in tests).
func (b *Broker) Server() *server.Server { return b.ns }

// Connect opens a client connection in-process, which works even without a TCP listener.
func (b *Broker) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.UserInfo(b.creds.Service.User, b.creds.Service.Password)}, opts...)
	nc, err := nats.Connect("", append(opts, nats.InProcessServer(b.ns))...)
	if err != nil {
		return nil, fmt.Errorf("natsbroker: connect in-process: %w", err)
	}
	return nc, nil
}

// Shutdown stops the server and waits until it has.
func (b *Broker) Shutdown() {
	b.ns.Shutdown()
	b.ns.WaitForShutdown()
	b.log.Info("nats stopped")
}
