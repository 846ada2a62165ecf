// Command integrator is an example of a system that reacts to Huddle's events (a paging system,
// an EHR bridge, analytics). It needs nothing of Huddle's code: only NATS and the documented
// message format (docs/events.md).
//
// It keeps its own durable JetStream consumer, so after a restart it resumes where it left off;
// it acks each message only after handling it (at-least-once) and drops repeats by event id.
//
// The embedded NATS of `huddle serve` requires a user: connect as the read-only integrator, whose
// password serve generated into HUDDLE_DATA_DIR/nats-integrator.auth ("integrator:<password>"):
//
//	go run ./examples/integrator --nats nats://integrator:<password>@127.0.0.1:4222 --clinic c1
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

func main() {
	url := flag.String("nats", nats.DefaultURL, "NATS URL with user and password (huddle serve records its embedded one in HUDDLE_DATA_DIR/nats.url, the integrator's credentials in nats-integrator.auth)")
	clinic := flag.String("clinic", "*", "clinic id to follow (* for all)")
	durable := flag.String("durable", "example-integrator", "durable consumer name: keep it to resume after restarts")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *url, *clinic, *durable, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// message is the payload of MessageSent and FileShared (docs/schemas).
type message struct {
	MessageID string `json:"message_id"`
	SenderID  string `json:"sender_id"`
	Text      string `json:"text"`
	Name      string `json:"name"`
}

// run consumes new messages and files until ctx ends, printing one line per event.
func run(ctx context.Context, url, clinic, durable string, out io.Writer) error {
	nc, err := nats.Connect(url, nats.Name(durable))
	if err != nil {
		return fmt.Errorf("connect %s: %w", url, err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return err
	}
	subject := "huddle.events." + clinic + ".conversation.>"
	// A pull consumer of our own: durable, explicit acks, redelivery after 30 s unacked.
	sub, err := js.PullSubscribe(subject, durable, nats.BindStream("HUDDLE_EVENTS"),
		nats.AckExplicit(), nats.AckWait(30*time.Second), nats.DeliverAll())
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", subject, err)
	}
	seen := map[string]bool{} // event ids handled (a real integrator would persist these)
	for ctx.Err() == nil {
		msgs, err := sub.Fetch(50, nats.MaxWait(500*time.Millisecond))
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("fetch: %w", err)
		}
		for _, m := range msgs {
			id := m.Header.Get("ce-id")
			if !seen[id] {
				if err := handle(m, out); err != nil {
					// Not acked: JetStream redelivers it after AckWait.
					log.Printf("event %s: %v", id, err)
					continue
				}
				seen[id] = true
			}
			if err := m.Ack(); err != nil {
				return fmt.Errorf("ack %s: %w", id, err)
			}
		}
	}
	return nil
}

func handle(m *nats.Msg, out io.Writer) error {
	typ := m.Header.Get("ce-type")
	if typ != "MessageSent" && typ != "FileShared" {
		return nil
	}
	var msg message
	if err := json.Unmarshal(m.Data, &msg); err != nil {
		return fmt.Errorf("decode %s: %w", typ, err)
	}
	what := fmt.Sprintf("text %q", msg.Text)
	if typ == "FileShared" {
		what = fmt.Sprintf("file %q", msg.Name)
	}
	_, err := fmt.Fprintf(out, "%s %s v%s: %s sent %s\n", m.Header.Get("ce-source"), m.Header.Get("ce-subject"),
		m.Header.Get("huddle-stream-version"), msg.SenderID, what)
	return err
}
