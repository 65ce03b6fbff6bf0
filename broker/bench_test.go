package broker

import (
	"context"
	"testing"
)

// BenchmarkBrokerRoundTrip measures an acked publish (fsync), a pull and an
// AckSync of 2 KiB messages with 16 workers, through the provisioned users
// and permissions and, in the same run, on a bare unprovisioned stream.
//
//	go test ./broker -run '^$' -bench BrokerRoundTrip -benchtime 5000x
func BenchmarkBrokerRoundTrip(b *testing.B) {
	const concurrency, size = 16, 2048
	for _, bc := range []struct {
		name string
		env  func(context.Context, int) (*roundTripEnv, error)
	}{
		{"bare", newBareEnv},
		{"provisioned", newProvisionedEnv},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			e, err := bc.env(ctx, concurrency)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			b.SetBytes(size)
			b.ResetTimer()
			r, err := e.run(ctx, b.N, size)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(r.PerSecond(), "msg/s")
		})
	}
}

// BenchmarkBrokerRoundTripCompare runs the bare and provisioned round trips
// in alternating chunks and reports both rates and their ratio.
//
//	go test ./broker -run '^$' -bench BrokerRoundTripCompare -benchtime 5000x
func BenchmarkBrokerRoundTripCompare(b *testing.B) {
	bare, prov, err := CompareRoundTrip(context.Background(), b.N, 16, 2048)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(bare.PerSecond(), "bare-msg/s")
	b.ReportMetric(prov.PerSecond(), "provisioned-msg/s")
	b.ReportMetric(prov.PerSecond()/bare.PerSecond(), "provisioned/bare")
}

func TestRoundTripFunctions(t *testing.T) {
	ctx := context.Background()
	for name, f := range map[string]func(context.Context, int, int, int) (Result, error){
		"bare": BareRoundTrip, "provisioned": ProvisionedRoundTrip,
	} {
		t.Run(name, func(t *testing.T) {
			r, err := f(ctx, 40, 4, 512)
			if err != nil {
				t.Fatal(err)
			}
			if r.Messages != 40 || r.Concurrency != 4 || r.Elapsed <= 0 {
				t.Fatalf("result %+v", r)
			}
		})
	}
	t.Run("compare", func(t *testing.T) {
		bare, prov, err := CompareRoundTrip(ctx, 300, 4, 512)
		if err != nil {
			t.Fatal(err)
		}
		if bare.Messages != 300 || prov.Messages != 300 {
			t.Fatalf("bare %+v, provisioned %+v", bare, prov)
		}
	})
}
