package api

import (
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

	resumeFrom, resuming, valid := lastEventID(c)
	ctx := c.Request().Context()
	// Watch before reading the feed: an entry committed between the read and the subscription
	// would otherwise wait for the next heartbeat.
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
	h := w.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 3000\n\n"); err != nil {
		return nil
	}

	cursor := newest
	if resuming {
		lost := oldest > 0 && resumeFrom < oldest-1
		if !valid || lost || resumeFrom > newest {
			if err := writeSSE(w, newest, live.KindReset, live.ResetBody); err != nil {
				return nil
			}
		} else {
			cursor = resumeFrom
		}
	}
	w.Flush()

	heartbeat := time.NewTicker(s.heartbeat())
	defer heartbeat.Stop()
	for {
		for {
			entries, err := s.Feed.After(ctx, to, cursor, streamBatch)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				s.Logger.Warn("live stream read failed", "user", a.UserID, "err", err)
				break
			}
			for _, e := range entries {
				if err := writeSSE(w, e.Seq, e.Kind, e.Body); err != nil {
					return nil
				}
				cursor = e.Seq
			}
			w.Flush()
			if len(entries) < streamBatch {
				break
			}
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

func writeSSE(w *echo.Response, id int64, event string, data []byte) error {
	_, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", id, event, data)
	return err
}
