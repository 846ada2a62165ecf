package natsbroker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// StreamConfig bounds the HUDDLE_EVENTS stream. Zero values take the defaults.
type StreamConfig struct {
	// MaxAge drops messages older than this; default 7 days. Older history comes from the store.
	MaxAge time.Duration
	// MaxBytes caps the stream's size (oldest dropped first); default 10 GiB, -1 unlimited.
	MaxBytes int64
	// Duplicates is the window in which a repeated Nats-Msg-Id is dropped; default 10 minutes.
	// The relay re-publishes after a crash well within it.
	Duplicates time.Duration
	// Replicas is the number of copies in a NATS cluster; default 1.
	Replicas int
}

// Defaults for StreamConfig.
const (
	DefaultMaxAge     = 7 * 24 * time.Hour
	DefaultMaxBytes   = 10 << 30
	DefaultDuplicates = 10 * time.Minute
)

func (c StreamConfig) withDefaults() StreamConfig {
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Duplicates == 0 {
		c.Duplicates = DefaultDuplicates
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	return c
}

func (c StreamConfig) nats() *nats.StreamConfig {
	return &nats.StreamConfig{
		Name:        StreamName,
		Description: "Huddle domain events (transport; the Postgres event store is the record)",
		Subjects:    []string{StreamSubjects},
		Storage:     nats.FileStorage,
		Retention:   nats.LimitsPolicy,
		Discard:     nats.DiscardOld,
		MaxAge:      c.MaxAge,
		MaxBytes:    c.MaxBytes,
		Duplicates:  c.Duplicates,
		Replicas:    c.Replicas,
	}
}

// EnsureStream creates HUDDLE_EVENTS, or updates its limits to cfg when it exists. Several
// instances may call it at once: a lost creation race is followed by an update.
func EnsureStream(ctx context.Context, url string, cfg StreamConfig) error {
	nc, err := nats.Connect(url, nats.Name("huddle-provisioner"))
	if err != nil {
		return fmt.Errorf("ensure stream: connect %s: %w", Redact(url), err)
	}
	defer nc.Close()
	return EnsureStreamConn(ctx, nc, cfg)
}

// EnsureStreamConn is EnsureStream on an existing connection.
func EnsureStreamConn(ctx context.Context, nc *nats.Conn, cfg StreamConfig) error {
	js, err := nc.JetStream()
	if err != nil {
		return fmt.Errorf("ensure stream: jetstream: %w", err)
	}
	want := cfg.withDefaults().nats()
	for attempt := 0; ; attempt++ {
		_, err = js.StreamInfo(StreamName, nats.Context(ctx))
		switch {
		case errors.Is(err, nats.ErrStreamNotFound):
			_, err = js.AddStream(want, nats.Context(ctx))
			if errors.Is(err, nats.ErrStreamNameAlreadyInUse) && attempt == 0 {
				continue // another instance created it just now; update instead
			}
		case err == nil:
			_, err = js.UpdateStream(want, nats.Context(ctx))
		}
		if err != nil {
			return fmt.Errorf("ensure stream %s: %w", StreamName, err)
		}
		return nil
	}
}
