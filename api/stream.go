package api

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/huddle-chat/huddle/live"
)

// streamBatch bounds how many feed entries one read sends before checking for cancellation.
const streamBatch = 200

// stream serves GET /v1/stream: the caller's live feed as Server-Sent Events. Every event has
// an `id:` (the feed sequence); reconnecting with Last-Event-ID resumes right after it. Without
// Last-Event-ID the stream starts at "now". A Last-Event-ID older than the retention window,
// newer than anything the server holds, or not an id at all gets a `reset` event: refetch
// state, then carry on.
func (s *Server) stream(c echo.Context) error {
	if s.Live == nil || s.Feed == nil {
		return problem(http.StatusServiceUnavailable, "unavailable", "Service Unavailable", "live stream is not configured")
	}
	a := actorOf(c)
	to := live.Target{ClinicID: a.ClinicID, UserID: a.UserID}
	if c.Request().ProtoMajor == 1 {
		if served, err := s.streamParked(c, to); served {
			return err
		}
	}
	return s.streamInHandler(c, to)
}

// streamHeaders are the response's headers beyond what middleware set.
func streamHeaders(h http.Header) {
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set("X-Accel-Buffering", "no")
}

// startCursor is where a stream starts in the user's feed, and the reset frame to send first
// when Last-Event-ID cannot be honoured (nil otherwise).
func startCursor(c echo.Context, oldest, newest int64) (cursor int64, reset []byte) {
	resumeFrom, resuming, valid := lastEventID(c)
	if !resuming {
		return newest, nil
	}
	lost := oldest > 0 && resumeFrom < oldest-1
	if !valid || lost || resumeFrom > newest {
		var b bytes.Buffer
		appendSSE(&b, newest, live.KindReset, live.ResetBody)
		return newest, b.Bytes()
	}
	return resumeFrom, nil
}

// streamParked serves the stream on a connection taken over from net/http (stream_parked.go).
// served is false when the connection cannot be taken over; nothing was written then.
func (s *Server) streamParked(c echo.Context, to live.Target) (served bool, err error) {
	// Watch before reading the feed: an entry committed between the read and the subscription
	// would otherwise wait for the next heartbeat. Wake-ups until the stream is parked only
	// queue (running is true); the replay then runs as a feed read (reread).
	p := &parkedStream{s: s, to: to, running: true, reread: true}
	unwatch, err := s.Live.WatchFunc(to, p.wake)
	if err != nil {
		return true, invalid(err.Error())
	}
	p.unwatch = unwatch
	oldest, newest, err := s.Feed.Bounds(c.Request().Context(), to)
	if err != nil {
		unwatch()
		return true, err
	}
	streamHeaders(c.Response().Header())
	conn, ok := hijackStream(c.Response(), c.Response().Header())
	if !ok {
		unwatch()
		return false, nil
	}
	res := c.Response()
	res.Status, res.Committed = http.StatusOK, true // for the access log; net/http no longer writes
	if conn == nil {
		unwatch()
		return true, nil
	}
	p.conn = conn
	cursor, reset := startCursor(c, oldest, newest)
	p.cursor = cursor
	if err := writeWithin(conn, append([]byte("retry: 3000\n\n"), reset...)); err != nil {
		p.close()
		return true, nil
	}
	p.park()
	return true, nil
}

// streamInHandler serves the stream from the handler's goroutine, for connections that cannot
// be taken over (HTTP/2).
func (s *Server) streamInHandler(c echo.Context, to live.Target) error {
	ctx := c.Request().Context()
	wake, stop, err := s.Live.Watch(to)
	if err != nil {
		return invalid(err.Error())
	}
	defer stop()
	oldest, newest, err := s.Feed.Bounds(ctx, to)
	if err != nil {
		return err
	}

	w := c.Response()
	streamHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	cursor, reset := startCursor(c, oldest, newest)
	if _, err := w.Write(append([]byte("retry: 3000\n\n"), reset...)); err != nil {
		return nil
	}
	w.Flush()

	heartbeat := time.NewTicker(s.heartbeat())
	defer heartbeat.Stop()
	for {
		if cursor, err = s.sendFeed(ctx, to, cursor, func(frames []byte) error {
			if _, err := w.Write(frames); err != nil {
				return err
			}
			w.Flush()
			return nil
		}); err != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-heartbeat.C:
			// A comment line keeps proxies from closing an idle stream; reading the feed again
			// on each beat also covers a lost NATS ping.
			if _, err := fmt.Fprint(w, ": heartbeat\n\n"); err != nil {
				return nil
			}
			w.Flush()
		}
	}
}

// sendFeed writes every entry of to's feed after cursor, a batch of frames at a time, and returns
// the cursor it got to. A failed read is logged (unless ctx ended) and ends the pass: the next
// wake-up or heartbeat reads again. Only a failed write is returned: the stream is gone.
func (s *Server) sendFeed(ctx context.Context, to live.Target, cursor int64, write func(frames []byte) error) (int64, error) {
	var frames bytes.Buffer
	for {
		entries, err := s.Feed.After(ctx, to, cursor, streamBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.Logger.Warn("live stream read failed", "user", to.UserID, "err", err)
			}
			return cursor, nil
		}
		if len(entries) == 0 {
			return cursor, nil
		}
		frames.Reset()
		for _, e := range entries {
			appendSSE(&frames, e.Seq, e.Kind, e.Body)
		}
		if err := write(frames.Bytes()); err != nil {
			return cursor, err
		}
		cursor = entries[len(entries)-1].Seq
		if len(entries) < streamBatch {
			return cursor, nil
		}
	}
}

func (s *Server) heartbeat() time.Duration {
	if s.StreamHeartbeat > 0 {
		return s.StreamHeartbeat
	}
	return 15 * time.Second
}

// lastEventID reads the Last-Event-ID header: resuming when it is set, valid when it is an id
// this server could have sent. An invalid one is not a 400: a browser's EventSource stops
// reconnecting for good on an error status, while a reset event tells it to refetch and carry on.
func lastEventID(c echo.Context) (id int64, resuming, valid bool) {
	raw := c.Request().Header.Get("Last-Event-ID")
	if raw == "" {
		return 0, false, true
	}
	v, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || v < 0 {
		return 0, true, false
	}
	return v, true, true
}
