package broker

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// TestClusterTLSAndSystemUser forms a 3-node cluster whose routes are
// mutual TLS with the broker's own server certificate (marked for servers
// only), checks that a server with a certificate from another CA does not
// become a node even with the secret, and that the operator's monitoring
// user gets every node's JetStream report and nothing that changes a node.
func TestClusterTLSAndSystemUser(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a 3-node cluster")
	}
	n := newTestNet(t, "iom", "shelter")
	signed := n.sign(t)
	ca, cert, key := writeCerts(t, t.TempDir())
	monitor, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	monitorPub, _ := monitor.PublicKey()
	const nodes = 3
	cfgs, urls := clusterConfigs(t, n, signed, "tls")
	for i := range cfgs {
		c := &cfgs[i]
		c.TLSCert, c.TLSKey, c.ClusterCA = cert, key, ca
		c.SystemUser = monitorPub
	}
	cfgs[0].Monitor = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	var srv [nodes]*Server
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() { srv[i], errs[i] = startNode(cfgs[i]) })
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
		t.Fatal(err) // no JetStream meta leader: the TLS routes did not form
	}
	if info, err := srv[0].js.Stream(t.Context(), "INBOX_shelter"); err != nil || info.CachedInfo().Config.Replicas != 3 {
		t.Fatalf("inbox over TLS routes: %v", err)
	}

	// The first node's monitoring endpoint names every inbox's leader.
	st, err := QueryStatus(t.Context(), cfgs[0].Monitor)
	if err != nil {
		t.Fatal(err)
	}
	if st.Server != "node-1" || st.Cluster != "rujukan-test" || st.Size != nodes {
		t.Errorf("status %+v", st)
	}
	var inboxes int
	for _, s := range st.Streams {
		if s.Name == "INBOX_shelter" || s.Name == "INBOX_iom" {
			inboxes++
			leads := false
			for i := range nodes {
				leads = leads || cfgs[i].ServerName == s.Leader && srv[i].ns.JetStreamIsStreamLeader(inboxAccount, s.Name)
			}
			if !leads || len(s.Replicas) != nodes-1 {
				t.Errorf("%s: leader %q (leads: %v), replicas %+v", s.Name, s.Leader, leads, s.Replicas)
			}
		}
	}
	if inboxes != 2 {
		t.Errorf("status lists %d of 2 inboxes: %+v", inboxes, st.Streams)
	}
	if _, err := QueryStatus(t.Context(), "10.0.0.1:8222"); !errors.Is(err, ErrConfig) {
		t.Errorf("status of a non-loopback endpoint: %v", err)
	}

	// A server with the secret but a certificate from another CA.
	_, otherCert, otherKey := writeCerts(t, t.TempDir())
	before := srv[0].ns.NumRoutes()
	rtls, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: otherCert, KeyFile: otherKey, CaFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	rtls.RootCAs = rtls.ClientCAs
	u, _ := url.Parse("nats-route://" + clusterUser + ":" + testClusterSecret + "@" + cfgs[0].ClusterListen)
	rogue, err := server.NewServer(&server.Options{ServerName: "rogue", Host: "127.0.0.1", Port: -1, NoSigs: true,
		Cluster: server.ClusterOpts{Name: "rujukan-test", Host: "127.0.0.1", Port: -1, TLSConfig: rtls, TLSTimeout: 2},
		Routes:  []*url.URL{u}})
	if err != nil {
		t.Fatal(err)
	}
	rogue.Start()
	t.Cleanup(func() { rogue.Shutdown(); rogue.WaitForShutdown() })
	time.Sleep(2 * time.Second)
	if got := srv[0].ns.NumRoutes(); got != before || rogue.NumRoutes() != 0 {
		t.Fatalf("a server with a foreign certificate routed: node has %d routes (had %d), rogue %d", got, before, rogue.NumRoutes())
	}

	// The monitoring user.
	var mu sync.Mutex
	var asyncErrs []string
	nc, err := nats.Connect(strings.Join(urls, ","), nats.Nkey(monitorPub, monitor.Sign), nats.RootCAs(ca),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			asyncErrs = append(asyncErrs, err.Error())
			mu.Unlock()
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.PublishRequest("$SYS.REQ.SERVER.PING.JSZ", inbox, nil); err != nil {
		t.Fatal(err)
	}
	servers := map[string]bool{}
	for len(servers) < nodes {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("JetStream reports from %d nodes: %v", len(servers), err)
		}
		for i := range nodes {
			if strings.Contains(string(m.Data), `"name":"`+cfgs[i].ServerName+`"`) {
				servers[cfgs[i].ServerName] = true
			}
		}
	}
	for _, subj := range []string{"$SYS.REQ.SERVER.PING.RELOAD", "$SYS.REQ.SERVER.PING.KICK", "$SYS.REQ.SERVER.PING.PROFILEZ",
		"$JS.API.META.LEADER.STEPDOWN", "$JS.API.SERVER.REMOVE", "rujukan.msg.shelter.iom"} {
		if err := nc.PublishRequest(subj, inbox, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		got := len(asyncErrs)
		all := strings.Join(asyncErrs, "\n")
		mu.Unlock()
		if got >= 6 {
			for _, subj := range []string{"RELOAD", "KICK", "PROFILEZ", "STEPDOWN", "SERVER.REMOVE", "rujukan.msg"} {
				if !strings.Contains(all, subj) {
					t.Errorf("no permission violation for %s:\n%s", subj, all)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d permission violations, want 6:\n%s", got, all)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := nats.Connect(urls[0], nats.RootCAs(ca), nats.UserInfo("admin", "admin")); err == nil {
		t.Fatal("a user without an nkey logged in")
	}
}
