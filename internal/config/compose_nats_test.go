package config

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/huddle-chat/huddle/internal/natsbroker"
)

// docker-compose's NATS nodes load deploy/nats.conf. Start a server from that file (without
// the cluster flags) and check what the issue asks: no connection without a user, and the
// integrator, whose permissions are the embedded server's, cannot publish events.
func TestCompose_NATSRequiresUsersAndIntegratorIsReadOnly(t *testing.T) {
	f := loadCompose(t)
	for _, name := range []string{"nats-1", "nats-2", "nats-3"} {
		s := f.Services[name]
		if !slices.Contains(s.Command, "--config") || !slices.ContainsFunc(s.Volumes, func(v string) bool {
			return strings.HasPrefix(v, "./deploy/nats.conf:")
		}) {
			t.Errorf("%s does not load deploy/nats.conf", name)
		}
	}
	env := map[string]string{}
	for k, v := range f.Services["nats-1"].Environment {
		env[k] = interpolate(v)
		t.Setenv(k, env[k]) // nats.conf reads its passwords from the environment
	}
	opts, err := server.ProcessConfigFile(filepath.Join(repoRoot, "deploy", "nats.conf"))
	if err != nil {
		t.Fatalf("deploy/nats.conf: %v", err)
	}
	var integrator *server.User
	for _, u := range opts.Users {
		if u.Username == natsbroker.IntegratorUser {
			integrator = u
		}
	}
	if integrator == nil {
		t.Fatal("deploy/nats.conf has no integrator user")
	}
	if want := natsbroker.IntegratorPermissions(); !reflect.DeepEqual(integrator.Permissions.Publish, want.Publish) ||
		!reflect.DeepEqual(integrator.Permissions.Subscribe, want.Subscribe) {
		t.Errorf("integrator permissions in deploy/nats.conf differ from the embedded server's:\n%+v\n%+v",
			integrator.Permissions, want)
	}

	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", server.RANDOM_PORT, 0
	opts.JetStream, opts.StoreDir, opts.NoLog, opts.NoSigs = true, t.TempDir(), true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server from deploy/nats.conf not ready")
	}
	if nc, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("connected without a user")
	}
	huddle := natsbroker.UserPass{User: natsbroker.ServiceUser, Password: env["HUDDLE_NATS_PASSWORD"]}
	if err := natsbroker.EnsureStream(t.Context(), natsbroker.WithUser(ns.ClientURL(), huddle), natsbroker.StreamConfig{MaxBytes: 1 << 20}); err != nil {
		t.Fatalf("huddle user cannot provision the stream: %v", err)
	}
	integ := natsbroker.UserPass{User: natsbroker.IntegratorUser, Password: env["HUDDLE_NATS_INTEGRATOR_PASSWORD"]}
	nc, err := nats.Connect(natsbroker.WithUser(ns.ClientURL(), integ))
	if err != nil {
		t.Fatalf("integrator: %v", err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	if _, err := js.Publish("huddle.events.c1.conversation.MessageSent", []byte(`{}`), nats.AckWait(2*time.Second)); err == nil {
		t.Fatal("the integrator published an event")
	}
	if _, err := js.StreamInfo(natsbroker.StreamName); err != nil {
		t.Fatalf("integrator stream info: %v", err)
	}
}
