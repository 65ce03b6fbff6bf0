package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/agency-gateway/run"
	"github.com/rujukan/rujukan/broker"
	"github.com/rujukan/rujukan/cli"
	"github.com/rujukan/rujukan/cli/clitest"
	"github.com/rujukan/rujukan/crypto"
	"go.yaml.in/yaml/v3"
)

// network is the development network with every part started and stopped
// by hand: the broker in this process, each gateway in this process or as
// a real child process that can be killed.
type network struct {
	t          testing.TB
	data       string
	brokerPort int
	broker     *broker.Server
	ports      map[string]int
	mports     map[string]int // metrics listeners
	inproc     map[string]*run.Running
	procs      map[string]*exec.Cmd
	tokens     map[string]string
	// tweak, when set, changes every gateway's configuration.
	tweak func(*gateway.Config)
}

func newNetwork(t testing.TB) *network {
	t.Helper()
	n := &network{t: t, data: t.TempDir(), brokerPort: clitest.FreePort(t), ports: map[string]int{}, mports: map[string]int{},
		inproc: map[string]*run.Running{}, procs: map[string]*exec.Cmd{}, tokens: map[string]string{}}
	if err := cli.InitDevNetwork(n.data); err != nil {
		t.Fatal(err)
	}
	for _, a := range cli.DevAgencies {
		n.ports[a.ID] = clitest.FreePort(t)
		n.mports[a.ID] = clitest.FreePort(t)
		tok, err := cli.MintDevToken(cli.TokenConfig{Data: n.data, Agency: a.ID, Subject: "tester-" + a.ID, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		n.tokens[a.ID] = tok
	}
	t.Cleanup(n.close)
	return n
}

func (n *network) brokerURL() string { return "nats://127.0.0.1:" + strconv.Itoa(n.brokerPort) }

func (n *network) url(id string) string { return "http://127.0.0.1:" + strconv.Itoa(n.ports[id]) }

func (n *network) startBroker() {
	n.t.Helper()
	authority, err := crypto.ParseAuthorityKey("@" + filepath.Join(n.data, "authority", "authority.pub"))
	if err != nil {
		n.t.Fatal(err)
	}
	signed, err := os.ReadFile(filepath.Join(n.data, "network.json"))
	if err != nil {
		n.t.Fatal(err)
	}
	cfg := broker.DefaultConfig()
	cfg.Listen = "127.0.0.1:" + strconv.Itoa(n.brokerPort)
	cfg.DataDir = filepath.Join(n.data, "broker")
	cfg.Directory = signed
	cfg.Authority = authority
	cfg.Logger = quietLogger(n.t)
	b, err := broker.New(cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		n.t.Fatal(err)
	}
	n.broker = b
}

func (n *network) stopBroker() {
	if n.broker != nil {
		n.broker.Close()
		n.broker = nil
	}
}

func (n *network) config(id string) gateway.Config {
	gc := cli.DevGatewayConfig(n.data, id, n.brokerURL())
	gc.HTTP.Listen = "127.0.0.1:" + strconv.Itoa(n.ports[id])
	gc.Metrics.Listen = "127.0.0.1:" + strconv.Itoa(n.mports[id])
	if n.tweak != nil {
		n.tweak(&gc)
	}
	return gc
}

// metricsURL is the base URL of a gateway's metrics listener.
func (n *network) metricsURL(id string) string {
	return "http://127.0.0.1:" + strconv.Itoa(n.mports[id])
}

// startGateway runs a gateway in this process.
func (n *network) startGateway(id string) {
	n.t.Helper()
	n.startGatewayWith(id, n.config(id), gateway.Options{})
}

// startGatewayWith runs a gateway in this process with its config and
// options changed by the test.
func (n *network) startGatewayWith(id string, cfg gateway.Config, opt gateway.Options) {
	n.t.Helper()
	opt.Logger = quietLogger(n.t)
	r, err := run.Start(context.Background(), cfg, opt)
	if err != nil {
		n.t.Fatal(err)
	}
	n.inproc[id] = r
}

func (n *network) stopGateway(id string) {
	if r := n.inproc[id]; r != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.Close(ctx)
		delete(n.inproc, id)
	}
}

// spawnGateway runs a gateway as a child process (`rujukan gateway
// --config`) and waits until its API answers.
func (n *network) spawnGateway(id string) {
	n.t.Helper()
	raw, err := yaml.Marshal(n.config(id))
	if err != nil {
		n.t.Fatal(err)
	}
	path := filepath.Join(n.data, id+".yaml")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		n.t.Fatal(err)
	}
	cmd := clitest.Command("gateway", "--config", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.procs[id] = cmd
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(n.ports[id]), 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
		if cmd.ProcessState != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.t.Fatalf("gateway %s did not start: %s", id, stderr.String())
}

// kill sends SIGKILL to a gateway process and reaps it.
func (n *network) kill(id string) {
	if cmd := n.procs[id]; cmd != nil {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		delete(n.procs, id)
	}
}

func (n *network) close() {
	for id := range n.procs {
		n.kill(id)
	}
	for id := range n.inproc {
		n.stopGateway(id)
	}
	n.stopBroker()
}

// listAll returns every referral id of one box, with its status.
func listAll(t testing.TB, base, token, box string) map[string]string {
	t.Helper()
	out := map[string]string{}
	cursor := ""
	for {
		r := call(t, "GET", fmt.Sprintf("%s/v1/referrals?box=%s&limit=200&cursor=%s", base, box, cursor), token, nil)
		if r.Status != 200 {
			t.Fatalf("list %s: %d %s", box, r.Status, r.Raw)
		}
		for _, x := range r.JSON["items"].([]any) {
			m := x.(map[string]any)
			id := m["id"].(string)
			if _, dup := out[id]; dup {
				t.Fatalf("list %s returned %s twice", box, id)
			}
			out[id] = m["status"].(string)
		}
		cursor = r.str("next_cursor")
		if cursor == "" {
			return out
		}
	}
}

func count(m map[string]string, status string) int {
	n := 0
	for _, s := range m {
		if s == status {
			n++
		}
	}
	return n
}

// deliveredOne starts the broker and the iom and shelter gateways in this
// process and delivers one referral from iom to the shelter.
func deliveredOne(t *testing.T) (*network, string) {
	t.Helper()
	n := newNetwork(t)
	n.startBroker()
	n.startGateway("iom")
	n.startGateway("shelter")
	r := call(t, "POST", n.url("iom")+"/v1/referrals", n.tokens["iom"], sampleReferral("shelter"))
	id := r.str("id")
	waitStatus(t, n.url("iom"), n.tokens["iom"], id, "delivered")
	return n, id
}
