package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/api"
	"github.com/huddle-chat/huddle/internal/app"
	"github.com/huddle-chat/huddle/internal/commands"
	"github.com/huddle-chat/huddle/internal/config"
	"github.com/huddle-chat/huddle/internal/testenv"
)

// instance is one running Huddle (composition root, relay, projectors, HTTP) on the given
// database and NATS, driven over HTTP as a client would; several share one store in a
// multi-instance deployment. startInstance returns once it is ready.
type instance struct {
	stop func()
	*scenario
}

func startInstance(t *testing.T, dbURL, natsURL string, secret []byte) *instance {
	t.Helper()
	return startInstanceWith(t, dbURL, natsURL, secret, func(*config.Config) {})
}

// startInstanceWith is startInstance with settings changed by set.
func startInstanceWith(t *testing.T, dbURL, natsURL string, secret []byte, set func(*config.Config)) *instance {
	t.Helper()
	cfg := config.Config{
		DataDir: t.TempDir(), DatabaseURL: dbURL, NATSURL: natsURL, HTTPAddr: "127.0.0.1:0",
		StreamMaxAge: 24 * time.Hour, StreamMaxBytes: 256 << 20, StreamReplicas: 1,
		MaxFileBytes: 1 << 20, ShutdownTimeout: 10 * time.Second, JWTSecret: secret,
	}
	set(&cfg)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.Start(ctx, cfg, testenv.Logger(t))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("instance stopped with: %v", err)
		}
	}
	t.Cleanup(stop)
	in := &instance{stop: stop, scenario: &scenario{t: t, base: "http://" + a.Addr().String(), secret: secret, app: a}}
	// Wait for /readyz, i.e. for the projectors to consume: events stored before that are
	// applied by the engine's bootstrap rebuild, which (rightly) writes no live feed entries.
	in.waitReady()
	return in
}

// TestTwoInstances_ShareTheStoreOneRelayAndExactReadModels runs the docker-compose topology in
// one process: two stateless instances on one database and one NATS. Writes through either are
// read through the other; exactly one relay is active and the other takes over when it stops;
// and the read models both instances built equal a rebuild from the store.
func TestTwoInstances_ShareTheStoreOneRelayAndExactReadModels(t *testing.T) {
	_, dbURL := testenv.Postgres(t)
	broker := testenv.NATS(t)
	secret := []byte("instances-secret-instances-secret-instances")
	a := startInstance(t, dbURL, broker.ClientURL(), secret)
	// startInstance returns once ready, so the second starts after the first created the shared
	// durable consumers: the embedded nats-server (v2.15.2) has a data race when two clients
	// create consumers at the same instant, which -race reports. Production runs NATS out of
	// process.
	b := startInstance(t, dbURL, broker.ClientURL(), secret)

	admin := a.token("root", api.RoleAdmin)
	a.must(a.do("PUT", "/v1/admin/rooms/r1", admin, map[string]any{"name": "Room"}), 200, "")
	users := []string{"ann", "bob", "cat"}
	for _, u := range users {
		b.must(b.do("PUT", "/v1/admin/users/"+u, admin, map[string]any{"name": "User " + u, "email": u + "@clinic.test"}), 200, "")
		a.must(a.do("PUT", "/v1/admin/rooms/r1/members/"+u, admin, nil), 204, "")
	}
	group := b.must(b.do("POST", "/v1/conversations", b.token("ann", api.RoleStaff), map[string]any{"participant_ids": []string{"bob", "cat"}, "title": "Ward"}), 201, "").str("id")
	var sent []string
	for i := 0; i < 30; i++ {
		via := []*instance{a, b}[i%2]
		user := users[i%3]
		r := via.must(via.do("POST", "/v1/conversations/"+group+"/messages", via.token(user, api.RoleStaff), map[string]any{"text": fmt.Sprint("message ", i)}), 201, "")
		sent = append(sent, r.str("id"))
		// The next write's instance reads its predecessor's writes (read-your-writes across
		// instances, through the shared store and read models).
		a.pos, b.pos = via.pos, via.pos
	}
	for _, in := range []*instance{a, b} {
		got := ids(in.messages(in.token("cat", api.RoleStaff), group))
		if !slices.Equal(got, sent) {
			t.Fatalf("instance %s shows messages %v, want %v", in.base, got, sent)
		}
	}
	if a.app.Relay.Active() == b.app.Relay.Active() {
		t.Fatalf("relays active: a=%v b=%v, want exactly one", a.app.Relay.Active(), b.app.Relay.Active())
	}

	// Stop the active relay's instance: the other takes over and events keep flowing.
	active, standby := a, b
	if b.app.Relay.Active() {
		active, standby = b, a
	}
	active.stop()
	r := standby.must(standby.do("POST", "/v1/conversations/"+group+"/messages", standby.token("bob", api.RoleStaff), map[string]any{"text": "after failover"}), 201, "")
	sent = append(sent, r.str("id"))
	standby.pos = r.header.Get("Huddle-Position")
	if got := ids(standby.messages(standby.token("ann", api.RoleStaff), group)); !slices.Equal(got, sent) {
		t.Fatalf("after failover: %v", got)
	}
	// The read above does not show the relay took over: the projectors read the store, and
	// NATS only wakes them (ADR 0011).
	for deadline := time.Now().Add(30 * time.Second); !standby.app.Relay.Active(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the standby relay did not take over")
		}
	}

	// What the two instances applied, interleaved, equals a rebuild from the store.
	before := standby.summaries(users, group)
	if err := standby.app.Engine.Rebuild(context.Background(), nil, nil); err != nil {
		t.Fatal(err)
	}
	if after := standby.summaries(users, group); !slices.Equal(before, after) {
		t.Fatalf("read models differ from a rebuild:\nlive:    %v\nrebuilt: %v", before, after)
	}
}

// waitReady waits for /readyz: migrations ran, relay and projectors are up.
func (in *instance) waitReady() {
	in.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(in.base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			in.t.Fatalf("%s not ready: %v", in.base, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// summaries renders what each user sees of the group: the list entry and every message.
func (in *instance) summaries(users []string, group string) []string {
	var out []string
	for _, u := range users {
		tok := in.token(u, api.RoleStaff)
		r := in.must(in.do("GET", "/v1/conversations/"+group, tok, nil), 200, "")
		out = append(out, fmt.Sprintf("%s: %s", u, r.body))
		out = append(out, fmt.Sprintf("%s: %v", u, in.messages(tok, group)))
		out = append(out, fmt.Sprintf("%s: %s", u, in.must(in.do("GET", "/v1/unread", tok, nil), 200, "").body))
	}
	return out
}

// TestTwoInstances_HotGroupAndDeactivation sends into one group through two instances at once
// (their sequencers race for the same stream: conflicts must be retried, never answered 500),
// and deactivates a user on one instance: the other refuses the user's token within
// commands.DirectoryMaxAge.
func TestTwoInstances_HotGroupAndDeactivation(t *testing.T) {
	_, dbURL := testenv.Postgres(t)
	broker := testenv.NATS(t)
	secret := []byte("instances-secret-instances-secret-instances")
	a := startInstance(t, dbURL, broker.ClientURL(), secret)
	b := startInstance(t, dbURL, broker.ClientURL(), secret)
	admin := a.token("root", api.RoleAdmin)
	a.must(a.do("PUT", "/v1/admin/rooms/r1", admin, map[string]any{"name": "Room"}), 200, "")
	users := []string{"ann", "bob", "cat", "dan"}
	for _, u := range users {
		a.must(a.do("PUT", "/v1/admin/users/"+u, admin, map[string]any{"name": "User " + u, "email": u + "@clinic.test"}), 200, "")
		a.must(a.do("PUT", "/v1/admin/rooms/r1/members/"+u, admin, nil), 204, "")
	}
	group := a.must(a.do("POST", "/v1/conversations", a.token("ann", api.RoleStaff), map[string]any{"participant_ids": []string{"bob", "cat", "dan"}, "title": "Ward"}), 201, "").str("id")

	const senders, each = 16, 15
	var mu sync.Mutex
	answers := map[int]int{}
	var wg sync.WaitGroup
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			via := []*instance{a, b}[i%2]
			tok := via.token(users[i%len(users)], api.RoleStaff)
			for n := range each {
				body, _ := json.Marshal(map[string]any{"text": fmt.Sprintf("%d-%d", i, n)})
				req, _ := http.NewRequest("POST", via.base+"/v1/conversations/"+group+"/messages", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+tok)
				status := 0
				if res, err := http.DefaultClient.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					status = res.StatusCode
				}
				mu.Lock()
				answers[status]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if answers[201] != senders*each {
		t.Fatalf("answers %v, want %d × 201", answers, senders*each)
	}
	stats := []any{a.app.Server.Commands.Stats(), b.app.Server.Commands.Stats()}
	t.Logf("sequencers: %+v", stats)

	// Deactivated on a, refused on b within the directory cache's age.
	bob := b.token("bob", api.RoleStaff)
	b.must(b.do("POST", "/v1/conversations/"+group+"/messages", bob, map[string]any{"text": "before"}), 201, "")
	a.must(a.do("DELETE", "/v1/admin/users/bob", admin, nil), 204, "")
	deactivated := time.Now()
	for {
		r := b.do("POST", "/v1/conversations/"+group+"/messages", bob, map[string]any{"text": "after"})
		if r.status == http.StatusForbidden && r.str("code") == "unknown_user" {
			break
		}
		if r.status != http.StatusCreated {
			t.Fatalf("unexpected answer while waiting: %d %s", r.status, r.body)
		}
		// DirectoryMaxAge (1 s) plus slack for a loaded CI machine.
		if time.Since(deactivated) > commands.DirectoryMaxAge+time.Second {
			t.Fatalf("instance b still accepts bob's token %v after the deactivation", time.Since(deactivated))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
