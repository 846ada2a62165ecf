package api

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/huddle-chat/huddle/internal/live"
)

// streamBatch bounds how many feed entries one read sends before checking for cancellation.
const streamBatch = 200

// stream serves GET /v1/stream: the caller's live feed as Server-Sent Events. Every event has
// an `id:` (the feed sequence); reconnecting with Last-Event-ID resumes right after it. Without
// Last-Event-ID the stream starts at "now". A Last-Event-ID older than the retention window (or
// newer than anything the server holds) gets a `reset` event: refetch state, then carry on.
func (s *Server) stream(c echo.Context) error {
	if s.Live == nil || s.Feed == nil {
		return problem(http.StatusServiceUnavailable, "unavailable", "Service Unavailable", "live stream is not configured")
	}
	a := actorOf(c)
	to := live.Target{ClinicID: a.ClinicID, UserID: a.UserID}

	resumeFrom, resuming, err := lastEventID(c)
	if err != nil {
		return err
	}
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
		if lost || resumeFrom > newest {
			if err := writeSSE(w, newest, live.KindReset, []byte(`{"reason":"the stream cannot resume from Last-Event-ID; refetch your state"}`)); err != nil {
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

func lastEventID(c echo.Context) (int64, bool, error) {
	raw := c.Request().Header.Get("Last-Event-ID")
	if raw == "" {
		return 0, false, nil
	}
	v, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || v < 0 {
		return 0, false, invalid("header Last-Event-ID: must be a non-negative integer event id")
	}
	return v, true, nil
}

func writeSSE(w *echo.Response, id int64, event string, data []byte) error {
	_, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", id, event, data)
	return err
}
