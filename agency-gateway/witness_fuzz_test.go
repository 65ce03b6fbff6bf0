package gateway

import (
	"encoding/json"
	"testing"
)

// FuzzWitnessBodies: the bodies of checkpoint and cosignature envelopes
// come from other agencies; decoding never panics, and what decodes
// encodes and decodes to the same value.
func FuzzWitnessBodies(f *testing.F) {
	f.Add([]byte(`{"checkpoint":"rujukan.id/iom/audit\n3\nAAAA\n\n— x y\n","from":2,"proof":["AAAA"]}`))
	f.Add([]byte(`{"checkpoint":"c","signature":"s","need_from":4}`))
	f.Add([]byte(`{"checkpoint":"c"} {}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var cb checkpointBody
		if decodeStrict(raw, &cb) == nil {
			again, _ := json.Marshal(cb)
			var cb2 checkpointBody
			if err := decodeStrict(again, &cb2); err != nil || cb2.Checkpoint != cb.Checkpoint || cb2.From != cb.From || len(cb2.Proof) != len(cb.Proof) {
				t.Fatalf("checkpoint body does not round-trip: %q", raw)
			}
		}
		var sb cosignatureBody
		if decodeStrict(raw, &sb) == nil {
			again, _ := json.Marshal(sb)
			var sb2 cosignatureBody
			if err := decodeStrict(again, &sb2); err != nil || sb2 != sb {
				t.Fatalf("cosignature body does not round-trip: %q", raw)
			}
		}
	})
}
