package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/openapi"
	"github.com/rujukan/rujukan/agency-gateway/staff"
	"github.com/rujukan/rujukan/cli"
)

// MustDev starts the development network (broker and four gateways) in
// this process, on random loopback ports, with its data in a temporary
// directory.
func MustDev(t testing.TB) (*cli.DevStack, string) {
	t.Helper()
	data := t.TempDir()
	st, err := cli.StartDev(context.Background(), cli.DevConfig{Data: data, RandPorts: true, Logger: quietLogger(t), Argon: testArgon})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return st, data
}

// metrics reads GET /metrics from a gateway's metrics listener (not the
// API, so not in the API description).
func metrics(t testing.TB, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Errorf("metrics: %d %s", resp.StatusCode, raw)
	}
	return string(raw)
}

// response is an HTTP answer with its body decoded as JSON.
type response struct {
	Status int
	Header http.Header
	Raw    []byte
	JSON   map[string]any
}

func (r response) str(key string) string {
	s, _ := r.JSON[key].(string)
	return s
}

// call makes one request and checks the answer against the OpenAPI
// description.
func call(t testing.TB, method, url, token string, body any) response {
	t.Helper()
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd, ctype = strings.NewReader(b), "application/json"
	case []byte:
		rd, ctype = bytes.NewReader(b), "application/json"
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd, ctype = bytes.NewReader(raw), "application/json"
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	json.Unmarshal(raw, &r.JSON)
	path := req.URL.Path
	if err := openapi.Check(method, path, resp.StatusCode, resp.Header.Get("Content-Type"), raw); err != nil {
		t.Errorf("%s %s -> %d does not match the API description: %v\n%s", method, path, resp.StatusCode, err, raw)
	}
	return r
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not happen within %s; last state: %s", what, timeout, last)
}

// statusOf returns the status of a referral at one gateway.
func statusOf(t testing.TB, base, token, id string) (string, response) {
	t.Helper()
	r := call(t, "GET", base+"/v1/referrals/"+id, token, nil)
	return r.str("status"), r
}

func waitStatus(t testing.TB, base, token, id, want string) response {
	t.Helper()
	var last response
	eventually(t, fmt.Sprintf("referral %s reaching %s", id, want), 20*time.Second, func() (bool, string) {
		var s string
		s, last = statusOf(t, base, token, id)
		return s == want, s
	})
	return last
}

// sampleReferral is a valid referral body to agency to.
func sampleReferral(to string) map[string]any {
	purpose := "services"
	if to == "police" {
		purpose = "law-enforcement"
	}
	return map[string]any{
		"to":       to,
		"priority": "urgent",
		"person": map[string]any{"pseudonym": "V-2026-0042", "sex": "female", "age": 17, "nationality": "ID",
			"languages": []string{"id", "sas"}},
		"exploitation": []string{"sexual", "labour"},
		"identified":   map[string]any{"date": "2026-11-20", "place": "Lombok International Airport", "by": "iom"},
		"needs":        []string{"shelter", "medical", "psychosocial"},
		"risk":         "high",
		"consent": map[string]any{"given": true, "purposes": []string{purpose}, "method": "guardian",
			"witness": "social worker S. Rahma", "recorded_at": "2026-11-20T09:00:00Z"},
		"notes": "free text",
	}
}

// callType sends a raw body with an explicit content type.
func callType(t testing.TB, method, url, token, body, ctype string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	json.Unmarshal(raw, &r.JSON)
	return r
}

// testArgon makes the dev accounts' password hashes cheap: the tests start
// many networks, and the cost of a hash is not what they test.
var testArgon = staff.Params{Time: 1, Memory: 8 << 10, Threads: 1}
