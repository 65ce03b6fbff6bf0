package body

import (
	"os"
	"testing"
)

// BenchmarkParseReferral parses docs/examples/referral.json, the body the
// compose test sends.
func BenchmarkParseReferral(b *testing.B) {
	body, err := os.ReadFile("../../docs/examples/referral.json")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, errs := ParseReferral(body); errs != nil {
			b.Fatal(errs)
		}
	}
}
