package web

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
	"github.com/rujukan/rujukan/policy"
)

// BenchmarkPages renders the main pages with 10,000 referrals in the
// shelter's inbox and reports each page's p99 and size:
//
//	go test -run '^$' -bench Pages -benchtime 200x ./agency-gateway/web
func BenchmarkPages(b *testing.B) {
	const referrals = 10000
	n := mustNetwork(b)
	iom := policy.Principal{Agency: "iom", Subject: "bench", Scopes: policy.ScopesForKind("iom")}
	body, _ := json.Marshal(map[string]any{"to": "shelter", "priority": "urgent",
		"person":  map[string]any{"pseudonym": "V-2026-0042", "sex": "female", "age": 25},
		"needs":   []string{"shelter", "medical"},
		"risk":    "high",
		"consent": map[string]any{"given": true, "purposes": []string{"services"}, "method": "written", "recorded_at": "2026-11-20T09:00:00Z"},
		"notes":   "a note"})
	var wg sync.WaitGroup
	jobs := make(chan struct{})
	var last string
	var mu sync.Mutex
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				acc, err := n.gws["iom"].Send(context.Background(), iom, gateway.Draft{Kind: "referral", Action: policy.ActionReferralSend, Body: body})
				if err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				last = acc.ID
				mu.Unlock()
			}
		}()
	}
	for range referrals {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	shelter := policy.Principal{Agency: "shelter", Subject: "bench", Scopes: policy.ScopesForKind("shelter")}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if _, err := n.gws["shelter"].Item(shelter, policy.ActionReferralRead, last); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("referrals did not arrive")
		}
		time.Sleep(100 * time.Millisecond)
	}
	a := mustApp(b, n, "shelter")
	cw := a.client().signedIn(a, "cw")
	op := a.client().signedIn(a, "op")
	pages := []struct {
		name string
		c    *client
		path string
	}{
		{"inbox", cw, "/ui/referrals?box=inbox"},
		{"referral", cw, "/ui/referrals/" + last},
		{"deliveries", op, "/ui/deliveries?kind=referral&box=inbox"},
		{"audit", op, "/ui/audit"},
	}
	b.ResetTimer()
	for _, p := range pages {
		b.Run(p.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			size := 0
			for range b.N {
				start := time.Now()
				pg := p.c.get(p.path)
				lat = append(lat, time.Since(start))
				if pg.Code != http.StatusOK {
					b.Fatalf("%s: %d", p.path, pg.Code)
				}
				size = len(pg.Body)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(size)/1024, "KiB")
		})
	}
}
