package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rujukan/rujukan/cli"
	"github.com/rujukan/rujukan/cli/clitest"
	"go.yaml.in/yaml/v3"
)

// brokerID names the broker among the processes.
const brokerID = "broker"

// network is the development network with the broker and each gateway a
// process of its own, on random loopback ports, with its data in a
// temporary folder; any process can be killed and started again on the
// same data and ports.
type network struct {
	t      testing.TB
	data   string
	ports  map[string]int // API port of each gateway; the broker's client port
	tokens map[string]string
	http   *http.Client

	mu    sync.Mutex
	procs map[string]*proc
	// exits are processes that ended without being killed or stopped.
	exits []string
}

// proc is one running process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	// ending is set before the test kills or stops it.
	ending bool
}

// agencies are the gateways of the network.
var agencies = func() []string {
	var out []string
	for _, a := range cli.DevAgencies {
		out = append(out, a.ID)
	}
	return out
}()

func newNetwork(t testing.TB) *network {
	t.Helper()
	n := &network{t: t, data: t.TempDir(), ports: map[string]int{}, tokens: map[string]string{},
		procs: map[string]*proc{}, http: &http.Client{Timeout: 20 * time.Second}}
	if err := cli.InitDevNetwork(n.data); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(n.data, "logs"), 0o700); err != nil {
		t.Fatal(err)
	}
	n.ports[brokerID] = clitest.FreePort(t)
	for _, id := range agencies {
		n.ports[id] = clitest.FreePort(t)
		tok, err := cli.MintDevToken(cli.TokenConfig{Data: n.data, Agency: id, Subject: "chaos-" + id, TTL: 24 * time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		n.tokens[id] = tok
		gc := cli.DevGatewayConfig(n.data, id, "nats://127.0.0.1:"+strconv.Itoa(n.ports[brokerID]))
		gc.HTTP.Listen = "127.0.0.1:" + strconv.Itoa(n.ports[id])
		gc.Metrics.Listen = "127.0.0.1:" + strconv.Itoa(clitest.FreePort(t))
		raw, err := yaml.Marshal(gc)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(n.configPath(id), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(n.close)
	return n
}

func (n *network) configPath(id string) string { return filepath.Join(n.data, id+".yaml") }

func (n *network) logPath(id string) string { return filepath.Join(n.data, "logs", id+".log") }

func (n *network) url(id string) string { return "http://127.0.0.1:" + strconv.Itoa(n.ports[id]) }

// command is the process of id: `rujukan broker` or `rujukan gateway`.
func (n *network) command(id string) *exec.Cmd {
	if id == brokerID {
		return clitest.Command("broker", "--network", filepath.Join(n.data, "network.json"),
			"--authority", "@"+filepath.Join(n.data, "authority", "authority.pub"),
			"--data", filepath.Join(n.data, "broker"), "--listen", "127.0.0.1:"+strconv.Itoa(n.ports[brokerID]),
			"--log-level", "warn")
	}
	cmd := clitest.Command("gateway", "--config", n.configPath(id))
	cmd.Env = append(cmd.Env, "RUJUKAN_LOG=warn")
	return cmd
}

// start runs process id (its log appended to logs/ID.log) and waits
// until it answers: the broker's port accepts connections, a gateway's
// /healthz answers 200.
func (n *network) start(id string) error {
	logf, err := os.OpenFile(n.logPath(id), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== start %s\n", time.Now().UTC().Format(time.RFC3339Nano))
	cmd := n.command(id)
	cmd.Stdout, cmd.Stderr = logf, logf
	dieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	n.mu.Lock()
	n.procs[id] = p
	n.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		n.mu.Lock()
		if !p.ending {
			n.exits = append(n.exits, fmt.Sprintf("%s (pid %d) exited on its own: %v", id, cmd.Process.Pid, err))
		}
		n.mu.Unlock()
		close(p.done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited while starting; its log ends:\n%s", id, n.logTail(id, 30))
		default:
		}
		if n.up(id) {
			if id == brokerID {
				time.Sleep(200 * time.Millisecond) // provisioning follows the listener
			}
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer within 30 s; its log ends:\n%s", id, n.logTail(id, 30))
}

// up reports whether process id answers.
func (n *network) up(id string) bool {
	if id == brokerID {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(n.ports[id]), 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	resp, err := n.http.Get(n.url(id) + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// kill sends SIGKILL to process id and reaps it.
func (n *network) kill(id string) { n.end(id, syscall.SIGKILL) }

// stop sends SIGTERM to process id and waits for it to end (SIGKILL after
// 20 s).
func (n *network) stop(id string) { n.end(id, syscall.SIGTERM) }

func (n *network) end(id string, sig syscall.Signal) {
	n.mu.Lock()
	p := n.procs[id]
	delete(n.procs, id)
	if p != nil {
		p.ending = true
	}
	n.mu.Unlock()
	if p == nil {
		return
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// running reports whether the test started process id and has not ended
// it.
func (n *network) running(id string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.procs[id] != nil
}

// unexpectedExits are the processes that ended without the test ending
// them.
func (n *network) unexpectedExits() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.exits...)
}

func (n *network) close() {
	for _, id := range agencies {
		n.stop(id)
	}
	n.stop(brokerID)
}

// logTail is the last lines of process id's log.
func (n *network) logTail(id string, lines int) string {
	raw, _ := os.ReadFile(n.logPath(id))
	all := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// stuck returns the gateways whose API does not answer a list within
// 10 s, and makes each dump its goroutines into its log (SIGQUIT ends it)
// and returns the frames of this module's code.
func (n *network) stuck() map[string]string {
	out := map[string]string{}
	for _, id := range agencies {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", n.url(id)+"/v1/referrals?box=inbox&limit=1", nil)
		req.Header.Set("Authorization", "Bearer "+n.tokens[id])
		resp, err := n.http.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			continue
		}
		n.end(id, syscall.SIGQUIT)
		out[id] = n.logGrep(id, 300, "goroutine ", "rujukan/rujukan")
	}
	return out
}

// logGrep is the first lines of process id's log holding any of words.
func (n *network) logGrep(id string, lines int, words ...string) string {
	raw, _ := os.ReadFile(n.logPath(id))
	var out []string
	for _, l := range strings.Split(string(raw), "\n") {
		for _, w := range words {
			if strings.Contains(l, w) && len(out) < lines {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// errDown is a request that got no answer: the gateway is dead or
// restarting. A message sent that way is not accepted.
var errDown = errors.New("no answer")

// call makes one API request at gateway id as its staff. The error wraps
// errDown when there was no HTTP answer.
func (n *network) call(id, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(raw)
	}
	return n.send(id, method, path, rd, map[string]string{"Content-Type": "application/json"})
}

// send makes one API request with a raw body and headers.
func (n *network) send(id, method, path string, body io.Reader, header map[string]string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(context.Background(), method, n.url(id)+path, body)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	req.Header.Set("Authorization", "Bearer "+n.tokens[id])
	resp, err := n.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %s %s at %s: %v", errDown, method, path, id, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %s %s at %s: %v", errDown, method, path, id, err)
	}
	return resp.StatusCode, raw, nil
}

// get reads a JSON answer that must be 200 into v.
func (n *network) get(id, path string, v any) error {
	status, raw, err := n.call(id, "GET", path, nil)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("GET %s at %s: %d %s", path, id, status, raw)
	}
	return json.Unmarshal(raw, v)
}
