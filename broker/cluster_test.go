package broker

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rujukan/rujukan/broker/client"
	"github.com/rujukan/rujukan/crypto"
)

func startNode(cfg Config) (*Server, error) {
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func TestClusterLeaderRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a 3-node cluster")
	}
	n := newTestNet(t, "iom", "shelter")
	// One sender publishes more messages than its default share of an
	// inbox, and nobody reads them: give it a much larger inbox to itself.
	n.setLimits("", &crypto.Limits{InboxMaxBytes: 64 << 30, SenderMaxBytes: 64 << 30})
	signed := n.sign(t)
	const nodes = 3
	cfgs, urls := clusterConfigs(t, n, signed, "nats")
	for i := range cfgs {
		cfgs[i].StartTimeout = 60 * time.Second
	}
	t0 := time.Now()
	var srv [nodes]*Server
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv[i], errs[i] = startNode(cfgs[i])
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, s := range srv {
			if s != nil {
				s.Close()
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	t.Logf("%s: cluster formed", time.Since(t0))
	ctx := context.Background()
	info, err := srv[0].js.Stream(ctx, client.StreamName("shelter"))
	if err != nil {
		t.Fatal(err)
	}
	if r := info.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("inbox has %d replicas, want 3", r)
	}

	url := strings.Join(urls, ",")
	var reconnects atomic.Int32
	sender := mustConnect(t, url, n.Agencies["iom"], client.WithTimeout(2*time.Second),
		client.OnStatus(func(up bool) {
			if up {
				reconnects.Add(1)
			}
		}))

	// Publish continuously, retrying each message until acked, as a gateway
	// does.
	var (
		mu    sync.Mutex
		acked []string
		stop  atomic.Bool
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for i := 0; !stop.Load(); i++ {
			id := fmt.Sprintf("env-%05d", i)
			for !stop.Load() {
				if err := sender.Publish(ctx, "shelter", id, []byte("body of "+id)); err == nil {
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	waitAcked := func(min int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			got := len(acked)
			mu.Unlock()
			if got >= min {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("only %d publishes acked, want %d", got, min)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }

	waitAcked(50)
	leader := -1
	for i, s := range srv {
		if s.ns.JetStreamIsStreamLeader(inboxAccount, client.StreamName("shelter")) {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no stream leader")
	}
	t.Logf("%s: stopping stream leader %s after %d acks", time.Since(t0), cfgs[leader].ServerName, count())
	srv[leader].Close()
	srv[leader] = nil
	waitAcked(count() + 50)
	t.Logf("%s: restarting %s after %d acks", time.Since(t0), cfgs[leader].ServerName, count())
	srv[leader], err = startNode(cfgs[leader])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: restarted", time.Since(t0))
	waitAcked(count() + 50)

	// Stop another node: the restarted one must now carry the quorum.
	other := (leader + 1) % nodes
	t.Logf("%s: stopping %s after %d acks", time.Since(t0), cfgs[other].ServerName, count())
	srv[other].Close()
	srv[other] = nil
	waitAcked(count() + 50)
	srv[other], err = startNode(cfgs[other])
	if err != nil {
		t.Fatal(err)
	}
	waitAcked(count() + 20)
	stop.Store(true)
	<-done
	if !sender.Connected() {
		t.Fatal("sender not connected at the end")
	}

	t.Logf("%s: fetching", time.Since(t0))
	rx := mustConnect(t, url, n.Agencies["shelter"])
	seen := drainAll(t, rx, acked, 60*time.Second)
	t.Logf("%s: fetched", time.Since(t0))
	for _, id := range acked {
		if seen[id] != 1 {
			t.Errorf("acknowledged message %s delivered %d times", id, seen[id])
		}
	}
	t.Logf("%d acked, %d delivered, sender (re)connected %d times", len(acked), len(seen), reconnects.Load())
}

// testClusterSecret is the route secret of the test clusters.
const testClusterSecret = "test-cluster-secret-0123456789abcdef"

// TestRogueRouteRefused: a server that knows the cluster's name and a
// node's route address, but not the cluster secret, does not become a node
// (and so receives no traffic); one with the secret does.
func TestRogueRouteRefused(t *testing.T) {
	n := newTestNet(t, "iom")
	cfg := n.config(t)
	cfg.ServerName = "node-1"
	cfg.ClusterName = "rujukan-test"
	cfg.ClusterSecret = testClusterSecret
	cfg.ClusterListen = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	// The node runs with the options the broker builds; JetStream is left
	// out because a one-node JetStream cluster never elects a leader.
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.name = cfg.ServerName
	opts, err := b.options(b.dir, nil, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	opts.JetStream = false
	node, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	node.Start()
	t.Cleanup(func() { node.Shutdown(); node.WaitForShutdown() })
	if !node.ReadyForConnections(10 * time.Second) {
		t.Fatal("node not ready")
	}
	rogue := func(name, userinfo string) *server.Server {
		u, _ := url.Parse("nats-route://" + userinfo + cfg.ClusterListen)
		rs, err := server.NewServer(&server.Options{ServerName: name, Host: "127.0.0.1", Port: -1, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "rujukan-test", Host: "127.0.0.1", Port: -1},
			Routes:  []*url.URL{u}})
		if err != nil {
			t.Fatal(err)
		}
		rs.Start()
		t.Cleanup(func() { rs.Shutdown(); rs.WaitForShutdown() })
		return rs
	}
	rogue("rogue", "")
	rogue("guesser", clusterUser+":wrong-secret-0123456789abcdefghijkl@")
	time.Sleep(2 * time.Second)
	if got := node.NumRoutes(); got != 0 {
		t.Fatalf("%d routes to servers without the secret", got)
	}
	rogue("insider", clusterUser+":"+testClusterSecret+"@")
	deadline := time.Now().Add(5 * time.Second)
	for node.NumRoutes() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if node.NumRoutes() == 0 {
		t.Fatal("a server with the secret could not join")
	}
}

// clusterConfigs returns the configurations of a 3-node cluster of the
// network n with directory signed, on free loopback ports, and the nodes'
// client URLs with the given scheme.
func clusterConfigs(t *testing.T, n *testNet, signed []byte, scheme string) ([3]Config, []string) {
	var cfgs [3]Config
	var routes, urls []string
	for i := range cfgs {
		cfgs[i] = DefaultConfig()
		cfgs[i].Listen = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		cfgs[i].ClusterListen = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		routes = append(routes, "nats-route://"+cfgs[i].ClusterListen)
		urls = append(urls, scheme+"://"+cfgs[i].Listen)
	}
	for i := range cfgs {
		c := &cfgs[i]
		c.ServerName = fmt.Sprintf("node-%d", i+1)
		c.ClusterName = "rujukan-test"
		c.ClusterSecret = testClusterSecret
		c.Routes = routes
		c.DataDir = t.TempDir()
		c.Directory = signed
		c.Authority = n.AuthPub
		c.Logger = testLogger(t)
	}
	return cfgs, urls
}
