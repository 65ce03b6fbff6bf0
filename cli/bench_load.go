package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The bench's load generator runs as a process of its own (`rujukan
// bench-load`, which `rujukan help` does not list), so that the CPU time
// the bench reads of its own process and of the gateways' is the broker's
// and the gateways' alone: the HTTP client, the pacing ticker and the
// JSON of the requests are not a referral's cost.

func init() {
	register(Command{
		Name:    "bench-load",
		Summary: "the load generator of `rujukan bench` (run by it)",
		Run:     runBenchLoad,
		Hidden:  true,
	})
}

// loadTokenEnv carries the bearer token to the load generator, which keeps
// it out of the process list.
const loadTokenEnv = "RUJUKAN_BENCH_TOKEN"

// load is one run of the load generator.
type load struct {
	URL string
	// Kind is what each POST sends: "referral" (benchBody) or
	// "statement-request".
	Kind string
	// N POSTs from C clients, Rate per second when > 0, else as fast as
	// they go.
	N, C, Rate int
	Token      string
}

// sentItem is one accepted POST: the id the gateway gave it, when it was
// posted and how long the 202 took.
type sentItem struct {
	id       string
	start    time.Time
	accepted time.Duration
}

// selfCommand starts this program again with args; tests replace it (the
// test binary is not the rujukan program).
var selfCommand = func(ctx context.Context, args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.CommandContext(ctx, exe, args...), nil
}

// run starts the load generator as a child process, waits for it, and
// returns what it sent. The child writes nothing until it is done, so
// that reading its output does not wake this process while it measures.
func (l load) run(ctx context.Context) ([]sentItem, error) {
	cmd, err := selfCommand(ctx, "bench-load", "-url", l.URL, "-kind", l.Kind,
		"-n", strconv.Itoa(l.N), "-c", strconv.Itoa(l.C), "-rate", strconv.Itoa(l.Rate))
	if err != nil {
		return nil, err
	}
	cmd.Env = append(cmd.Env, os.Environ()...)
	cmd.Env = append(cmd.Env, loadTokenEnv+"="+l.Token)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("bench: load generator: %s", firstLine(msg))
	}
	return parseSent(&stdout)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// parseSent reads the load generator's output: one line per accepted POST,
// "ID START_UNIX_NANO ACCEPTED_NANO".
func parseSent(r io.Reader) ([]sentItem, error) {
	var all []sentItem
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			return nil, fmt.Errorf("bench: load generator wrote %q", sc.Text())
		}
		start, err1 := strconv.ParseInt(f[1], 10, 64)
		acc, err2 := strconv.ParseInt(f[2], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("bench: load generator wrote %q: %w", sc.Text(), err)
		}
		all = append(all, sentItem{f[0], time.Unix(0, start), time.Duration(acc)})
	}
	return all, sc.Err()
}

func runBenchLoad(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet(env, "bench-load")
	var l load
	fs.StringVar(&l.URL, "url", "", "where to POST")
	fs.StringVar(&l.Kind, "kind", "referral", "what to POST: referral or statement-request")
	fs.IntVar(&l.N, "n", 0, "POSTs")
	fs.IntVar(&l.C, "c", 1, "concurrent clients")
	fs.IntVar(&l.Rate, "rate", 0, "POSTs per second (0: as fast as they go)")
	if err := fs.Parse(args); err != nil {
		return ErrUsage
	}
	l.Token = env.Getenv(loadTokenEnv)
	if l.URL == "" || l.Token == "" || l.N <= 0 || l.C <= 0 || l.Rate < 0 {
		return fmt.Errorf("bench-load: -url, -n > 0, -c > 0 and %s are needed", loadTokenEnv)
	}
	var body []byte
	switch l.Kind {
	case "referral":
		body = benchBody
	case "statement-request":
		body = []byte(`{"to":"shelter","pseudonym":"V-2026-0042","legal_basis":"LP/B/123/XI/2026/NTB","purpose":"investigation",` +
			`"questions":["Where were you recruited?","Who kept your passport?"],"due":"` +
			time.Now().Add(30*24*time.Hour).UTC().Format(time.RFC3339) + `"}`)
	default:
		return fmt.Errorf("bench-load: -kind %q is neither referral nor statement-request", l.Kind)
	}
	all, err := l.send(ctx, body)
	w := bufio.NewWriter(env.Stdout)
	for _, s := range all {
		fmt.Fprintf(w, "%s %d %d\n", s.id, s.start.UnixNano(), int64(s.accepted))
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return fmt.Errorf("bench-load: %w", err)
	}
	return nil
}

// send POSTs body l.N times from l.C clients, paced at l.Rate when > 0,
// and returns what was accepted, or an error if any POST failed.
func (l load) send(ctx context.Context, body []byte) ([]sentItem, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: l.C + 8}, Timeout: 30 * time.Second}
	jobs := make(chan struct{})
	go func() {
		defer close(jobs)
		var tick <-chan time.Time
		if l.Rate > 0 {
			t := time.NewTicker(time.Second / time.Duration(l.Rate))
			defer t.Stop()
			tick = t.C
		}
		for range l.N {
			if tick != nil {
				select {
				case <-tick:
				case <-ctx.Done():
					return
				}
			}
			select {
			case jobs <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}()
	var (
		mu   sync.Mutex
		all  = make([]sentItem, 0, l.N)
		errs []error
		wg   sync.WaitGroup
	)
	for range l.C {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				id, start, err := post(client, l.URL, l.Token, body)
				accepted := time.Since(start)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					all = append(all, sentItem{id, start, accepted})
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return all, fmt.Errorf("%d of %d POSTs failed; first: %w", len(errs), l.N, errs[0])
	}
	if err := ctx.Err(); err != nil {
		return all, err
	}
	return all, nil
}

// post sends body to url with the bearer token and returns the id of the
// accepted item and when the POST started.
func post(c *http.Client, url, token string, body []byte) (string, time.Time, error) {
	start := time.Now()
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		return "", start, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return "", start, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusAccepted {
		return "", start, fmt.Errorf("POST answered %d: %s", resp.StatusCode, raw)
	}
	var acc struct{ ID string }
	if err := json.Unmarshal(raw, &acc); err != nil || acc.ID == "" || strings.ContainsAny(acc.ID, " \t\r\n") {
		return "", start, fmt.Errorf("POST answered %s", raw)
	}
	return acc.ID, start, nil
}
