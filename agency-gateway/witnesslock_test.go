package gateway_test

import (
	"context"
	"slices"
	"testing"
	"time"

	gateway "github.com/rujukan/rujukan/agency-gateway"
)

// TestWitnessWhileReceiptsArrive: the witness loop sends checkpoints all
// the time (every few milliseconds) while receipts for statements arrive,
// which are looked up among the checkpoints sent. Neither waits for the
// other: every statement is answered and its delivery noted.
func TestWitnessWhileReceiptsArrive(t *testing.T) {
	c := mustCoreOpts(t, gateway.Options{WitnessInterval: 2 * time.Millisecond, WitnessBurst: 1})
	for range 15 {
		acc := c.mustSend("police", "statement-request", srSend, "", request("shelter", c.clock.Now().Add(72*time.Hour)))
		c.waitStatus("shelter", srRead, acc.ID, "delivered")
		if _, err := c.gws["shelter"].GetStatementRequest(context.Background(), c.staff("shelter"), acc.ID); err != nil {
			t.Fatal(err)
		}
		c.mustSend("shelter", "consent", srConsent, acc.ID, map[string]any{"given": true, "purposes": []string{"statement"},
			"method": "written", "person": map[string]any{"age": 24}})
		c.mustSend("shelter", "statement", srResponse, acc.ID, map[string]any{"statement": map[string]any{
			"text": "He took our passports at the harbour.", "language": "id", "taken_at": c.clock.Now().UTC().Format(time.RFC3339),
			"taken_by": "shelter/officer-2"}})
		c.waitStatus("police", srRead, acc.ID, "answered")
		deadline := time.Now().Add(10 * time.Second)
		for !slices.Contains(events(c.item("shelter", srRead, acc.ID)), "statement-delivered") {
			if time.Now().After(deadline) {
				t.Fatalf("the statement's delivered receipt was not applied at the shelter: %v", events(c.item("shelter", srRead, acc.ID)))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
