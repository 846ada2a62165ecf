//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/huddle-chat/huddle/internal/natsbroker"
	"github.com/huddle-chat/huddle/internal/testenv"
)

var (
	natsBuildOnce sync.Once
	natsBin       string
	natsBuildErr  error
)

// natsServerBinary builds nats-server from the module Huddle already depends on (the version
// the embedded broker runs), once per test run.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	natsBuildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "huddle-chaos-nats-")
		if err != nil {
			natsBuildErr = err
			return
		}
		natsBin = filepath.Join(dir, "nats-server")
		out, err := exec.Command("go", "build", "-o", natsBin, "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err != nil {
			natsBuildErr = fmt.Errorf("go build nats-server: %v\n%s", err, out)
		}
	})
	if natsBuildErr != nil {
		t.Fatal(natsBuildErr)
	}
	return natsBin
}

// natsNode is one nats-server process of a JetStream cluster.
type natsNode struct {
	name      string
	port      int
	routePort int
	cmd       *exec.Cmd
	exited    chan struct{}
	log       *lockedBuffer
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// natsCluster starts n nats-server processes routed to each other, JetStream on each, every
// client and route authenticated as user/password. It returns the nodes and the client URL
// list (with the credentials) Huddle takes in HUDDLE_NATS_URL.
func natsCluster(t *testing.T, n int, user, password string) ([]*natsNode, string) {
	t.Helper()
	bin := natsServerBinary(t)
	nodes := make([]*natsNode, n)
	for i := range nodes {
		nodes[i] = &natsNode{name: fmt.Sprintf("n%d", i+1), port: freePort(t), routePort: freePort(t), log: &lockedBuffer{}}
	}
	var urls []string
	for _, node := range nodes {
		var routes []string
		for _, other := range nodes {
			if other != node {
				routes = append(routes, fmt.Sprintf("%q", fmt.Sprintf("nats-route://%s:%s@127.0.0.1:%d", user, password, other.routePort)))
			}
		}
		dir := t.TempDir()
		conf := fmt.Sprintf(`server_name: %s
host: 127.0.0.1
port: %d
jetstream { store_dir: %q, max_memory_store: 64MB, max_file_store: 1GB }
authorization { users: [ { user: %q, password: %q } ] }
cluster {
  name: huddle-chaos
  host: 127.0.0.1
  port: %d
  authorization { user: %q, password: %q }
  routes: [ %s ]
}
`, node.name, node.port, filepath.Join(dir, "js"), user, password, node.routePort, user, password, strings.Join(routes, ", "))
		confPath := filepath.Join(dir, "nats.conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		node.cmd = exec.Command(bin, "-c", confPath)
		node.cmd.Stdout, node.cmd.Stderr = node.log, node.log
		if err := node.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		node.exited = make(chan struct{})
		go func(cmd *exec.Cmd, exited chan struct{}) { _ = cmd.Wait(); close(exited) }(node.cmd, node.exited)
		t.Cleanup(func() {
			_ = node.cmd.Process.Kill()
			<-node.exited
			if t.Failed() {
				t.Logf("nats %s log (tail):\n%s", node.name, tail(node.log.String(), 20))
			}
		})
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", node.port))
	}
	return nodes, natsbroker.WithUser(strings.Join(urls, ","), natsbroker.UserPass{User: user, Password: password})
}

// streamLeader provisions HUDDLE_EVENTS with three replicas (retrying while the cluster elects
// its JetStream meta leader) and returns the name of the stream's leader.
func streamLeader(t *testing.T, url string) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := natsbroker.EnsureStream(ctx, url, natsbroker.StreamConfig{Replicas: 3, MaxBytes: 256 << 20})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster did not take a three-replica stream: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	for {
		info, err := js.StreamInfo(natsbroker.StreamName)
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" && len(info.Cluster.Replicas) == 2 {
			return info.Cluster.Leader
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader with two replicas for %s: %+v %v", natsbroker.StreamName, info, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestChaos_JetStreamClusterLosesANode runs huddle serve on a three-node JetStream cluster
// (nats-server processes, HUDDLE_STREAM_REPLICAS=3) with four staff posting, then kills -9
// the node leading HUDDLE_EVENTS. The two left elect a new leader and keep the stream;
// Huddle's clients reconnect to them. Recovery is from the kill until a message written after
// it is on NATS. Every acknowledged message must be in the store, the read models and the
// JetStream stream exactly once.
func TestChaos_JetStreamClusterLosesANode(t *testing.T) {
	const user, password = "huddle", "chaos-cluster-password"
	nodes, natsURL := natsCluster(t, 3, user, password)
	leader := streamLeader(t, natsURL)
	_, dbURL := testenv.Postgres(t)
	s := newServer(t, "HUDDLE_DATABASE_URL="+dbURL, "HUDDLE_NATS_URL="+natsURL,
		"HUDDLE_STREAM_REPLICAS=3", "HUDDLE_STREAM_MAX_BYTES=268435456")
	s.start()
	group := s.ward(staff)
	l := s.startLoad(group, staff, 100)

	time.Sleep(3 * time.Second)
	var victim *natsNode
	for _, n := range nodes {
		if n.name == leader {
			victim = n
		}
	}
	if victim == nil {
		t.Fatalf("stream leader %q is none of the nodes", leader)
	}
	ackedBefore := l.acked.Load()
	_ = victim.cmd.Process.Kill()
	<-victim.exited
	killed := time.Now()
	published := s.probeUntilPublished(group, natsURL, time.Minute)
	recovery := published.Sub(killed)
	time.Sleep(3 * time.Second)
	ackedAfter := l.acked.Load() - ackedBefore
	l.stop()

	lost, doubled := l.verify(t)
	var rmMissing, rmDoubled, natsMissing, natsDoubled int
	for deadline := time.Now().Add(time.Minute); ; {
		rmMissing, rmDoubled = l.missingOrDoubled(l.readModel(t))
		natsMissing, natsDoubled = l.missingOrDoubled(streamMessages(t, natsURL))
		if rmMissing+natsMissing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	newLeader := streamLeader(t, natsURL)
	t.Logf("chaos JetStream cluster: stream leader %s killed, %s leads now; read model missing %d doubled %d; NATS stream missing %d doubled %d; %d acknowledged after the kill",
		leader, newLeader, rmMissing, rmDoubled, natsMissing, natsDoubled, ackedAfter)
	if ackedAfter == 0 {
		t.Error("nothing was acknowledged after the kill")
	}
	report(t, "three-node JetStream cluster, stream leader killed", l, lost+rmMissing+natsMissing, doubled+rmDoubled+natsDoubled, []time.Duration{recovery})
	// nats-server's Raft elects a new leader 4–9 s after the old one went silent; a publish
	// waits 2 s for its ack before the relay tries again.
	if recovery > 20*time.Second {
		t.Errorf("messages reached NATS again %v after the node died, want under 20 s", recovery)
	}
}
