package api

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/huddle-chat/huddle/live"
)

// An idle live stream served the plain way costs what net/http keeps per connection: the
// handler's goroutine and the connection's background reader (two stacks), a 4 KiB read and a
// 4 KiB write buffer and a chunked writer: ~38 KiB measured (BenchmarkIdleStreams), far too much
// for the tens of thousands of streams one instance should hold. So an HTTP/1.x stream takes its
// connection over from net/http (Hijack) and, once the handshake and any replay are written,
// parks it: what remains is the socket, its cursor in the feed, a heartbeat timer and a hub
// entry. A wake-up or a heartbeat runs one short drain on a fresh goroutine, which reads the
// feed after the cursor and writes the frames straight to the socket. A client that went away
// is noticed at the next write (every heartbeat at the latest), as it was before: the
// connection's background read only ended the handler, it did not free more.
//
// The response is sent with "Connection: close" and no length or chunking: its body runs until
// the connection closes, which is what an event stream is. HTTP/2 cannot hand its connection
// over; there the stream stays in its handler (streamInHandler).

// streamWriteTimeout bounds one write to a parked stream's socket: a client that stops reading
// is dropped rather than holding a drain forever.
const streamWriteTimeout = 10 * time.Second

// parkedStreams is every parked stream of a Server, so shutdown can end them: net/http forgets a
// connection once it is hijacked.
type parkedStreams struct {
	ctx  context.Context // ends at EndStreams; bounds every drain's feed read
	end  context.CancelFunc
	mu   sync.Mutex
	open map[*parkedStream]struct{}
}

func newParkedStreams() *parkedStreams {
	ctx, cancel := context.WithCancel(context.Background())
	return &parkedStreams{ctx: ctx, end: cancel, open: map[*parkedStream]struct{}{}}
}

// add registers p, or reports false when the streams already ended.
func (ps *parkedStreams) add(p *parkedStream) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.ctx.Err() != nil {
		return false
	}
	ps.open[p] = struct{}{}
	return true
}

func (ps *parkedStreams) remove(p *parkedStream) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	delete(ps.open, p)
}

// Len reports how many streams are parked.
func (ps *parkedStreams) Len() int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return len(ps.open)
}

// closeAll ends every parked stream and refuses new ones.
func (ps *parkedStreams) closeAll() {
	ps.mu.Lock()
	ps.end()
	open := make([]*parkedStream, 0, len(ps.open))
	for p := range ps.open {
		open = append(open, p)
	}
	ps.mu.Unlock()
	for _, p := range open {
		p.close()
	}
}

// EndStreams closes every live stream this server took over from net/http (http.Server's
// Shutdown does not see them) and makes later ones close as soon as they are handed over.
// Clients reconnect, elsewhere if need be, and resume with Last-Event-ID.
func (s *Server) EndStreams() { s.parked.closeAll() }

// parkedStream is one live stream whose connection Huddle holds itself.
type parkedStream struct {
	s    *Server
	conn net.Conn
	to   live.Target

	mu      sync.Mutex
	cursor  int64
	running bool // a drain is running; what arrives meanwhile waits in the fields below
	pushed  []live.Entry
	reread  bool // read the feed: a bare ping, a heartbeat, or too much pushed
	beat    bool // a heartbeat is due
	closed  bool
	timer   *time.Timer
	unwatch func()
}

// hijackStream takes the connection over from net/http and writes the response head (with the
// headers middleware has set, such as X-Request-Id). ok is false when the connection cannot be
// taken over (HTTP/2, a test's recorder): serve the stream in the handler then.
func hijackStream(rw http.ResponseWriter, header http.Header) (net.Conn, bool) {
	conn, buf, err := http.NewResponseController(rw).Hijack()
	if err != nil {
		return nil, false
	}
	// Whatever the client pipelined after its request is not ours to answer.
	_ = buf
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	for k, vs := range header {
		if k == "Content-Length" || k == "Transfer-Encoding" || k == "Connection" {
			continue
		}
		for _, v := range vs {
			fmt.Fprintf(&head, "%s: %s\r\n", k, v)
		}
	}
	head.WriteString("Connection: close\r\n\r\n")
	if err := writeWithin(conn, head.Bytes()); err != nil {
		_ = conn.Close()
		return nil, true
	}
	return conn, true
}

func writeWithin(conn net.Conn, b []byte) error {
	_ = conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	_, err := conn.Write(b)
	return err
}

// park hands p to wake-ups and heartbeats; the handler's goroutine returns after this. It runs
// the drains that wake-ups asked for while the handler was still replaying (p.running is true
// until then).
func (p *parkedStream) park() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.timer = time.AfterFunc(p.s.heartbeat(), p.heartbeatDue)
	p.mu.Unlock()
	if !p.s.parked.add(p) {
		p.close()
		return
	}
	p.run()
}

// maxPushed bounds the entries a busy stream keeps from pings; beyond it, it reads the feed.
const maxPushed = 256

// wake is the hub's callback with a ping's entries (nil: read the feed). It must not block.
func (p *parkedStream) wake(entries []live.Entry) { p.schedule(false, entries) }

// heartbeatDue also re-reads the feed, which covers a lost ping.
func (p *parkedStream) heartbeatDue() { p.schedule(true, nil) }

func (p *parkedStream) schedule(beat bool, entries []live.Entry) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	switch {
	case beat:
		p.beat, p.reread = true, true
	case entries == nil || len(p.pushed)+len(entries) > maxPushed:
		p.reread, p.pushed = true, nil
	case !p.reread:
		p.pushed = append(p.pushed, entries...)
	}
	if p.running {
		p.mu.Unlock()
		return
	}
	p.running = true
	p.mu.Unlock()
	go p.run()
}

// run drains until no wake-up or heartbeat is left, then leaves the stream idle.
func (p *parkedStream) run() {
	for {
		p.mu.Lock()
		beat, cursor, pushed, reread := p.beat, p.cursor, p.pushed, p.reread
		p.beat, p.pushed, p.reread = false, nil, false
		p.mu.Unlock()

		var err error
		if !reread {
			var ok bool
			if cursor, ok, err = p.writePushed(cursor, pushed); err == nil && !ok {
				reread = true
			}
		}
		if reread && err == nil {
			cursor, err = p.drain(cursor, beat)
		}

		p.mu.Lock()
		p.cursor = cursor
		if err != nil || p.closed {
			p.mu.Unlock()
			p.close()
			return
		}
		if beat {
			p.timer.Reset(p.s.heartbeat())
		}
		if !p.reread && !p.beat && len(p.pushed) == 0 {
			p.running = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
	}
}

// writePushed writes the entries pings carried when, past what was sent already, they follow on
// from cursor without a gap: the common case, at no database read. ok is false when they do
// not (a ping was lost or overtaken): read the feed instead.
func (p *parkedStream) writePushed(cursor int64, pushed []live.Entry) (next int64, ok bool, err error) {
	var frames bytes.Buffer
	next = cursor
	for _, e := range pushed {
		switch {
		case e.Seq <= next:
			continue // sent already (the replay or the feed got there first)
		case e.Seq != next+1:
			return cursor, false, nil
		}
		appendSSE(&frames, e.Seq, e.Kind, e.Body)
		next = e.Seq
	}
	if frames.Len() > 0 {
		if err := writeWithin(p.conn, frames.Bytes()); err != nil {
			return cursor, true, err
		}
	}
	return next, true, nil
}

// drain writes every feed entry after cursor, then a heartbeat comment when one is due. A failed
// feed read is logged and retried at the next wake-up or heartbeat (the stream stays); only a
// failed write ends the stream.
func (p *parkedStream) drain(cursor int64, beat bool) (int64, error) {
	ctx, cancel := context.WithTimeout(p.s.parked.ctx, streamWriteTimeout)
	defer cancel()
	cursor, err := p.s.sendFeed(ctx, p.to, cursor, func(frames []byte) error { return writeWithin(p.conn, frames) })
	if err != nil {
		return cursor, err
	}
	if err := p.s.parked.ctx.Err(); err != nil {
		return cursor, err // shutting down
	}
	if beat {
		if err := writeWithin(p.conn, []byte(": heartbeat\n\n")); err != nil {
			return cursor, err
		}
	}
	return cursor, nil
}

// close ends the stream once: the client sees the connection close and reconnects.
func (p *parkedStream) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
	}
	p.mu.Unlock()
	if p.unwatch != nil {
		p.unwatch()
	}
	_ = p.conn.Close()
	p.s.parked.remove(p)
}

// appendSSE appends one event frame.
func appendSSE(b *bytes.Buffer, id int64, event string, data []byte) {
	b.WriteString("id: ")
	b.WriteString(strconv.FormatInt(id, 10))
	b.WriteString("\nevent: ")
	b.WriteString(event)
	b.WriteString("\ndata: ")
	b.Write(data)
	b.WriteString("\n\n")
}
