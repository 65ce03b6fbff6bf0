package cli

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"
)

// DiskSync is how long the disk under the bench's data takes to make 4 KiB
// durable (write, fsync), measured in the same run. Every commit of a
// referral waits for it, the broker's and the gateways', one after the
// other: its tail is the floor of the latencies' tail.
type DiskSync struct {
	N   int           `json:"n"`
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

// Disk probe: diskSyncs writes and fsyncs, diskSyncPause apart (a paced
// load, as a gateway's commits at a low rate are).
const (
	diskSyncs     = 200
	diskSyncPause = 5 * time.Millisecond
)

// measureDiskSync measures DiskSync with a scratch file in dir.
func measureDiskSync(ctx context.Context, dir string) (DiskSync, error) {
	lat, err := diskSyncs4K(ctx, dir)
	if err != nil {
		return DiskSync{}, fmt.Errorf("bench: disk probe: %w", err)
	}
	slices.Sort(lat)
	return DiskSync{N: len(lat), P50: percentile(lat, 0.50), P99: percentile(lat, 0.99), Max: lat[len(lat)-1]}, nil
}

// diskSyncs4K writes 4 KiB and fsyncs it diskSyncs times, diskSyncPause
// apart, and returns how long each took.
func diskSyncs4K(ctx context.Context, dir string) ([]time.Duration, error) {
	f, err := os.CreateTemp(dir, "disk-probe-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	// The file is written whole and synced first: no write below allocates
	// a block or changes the size.
	const page, span = 4096, 256
	if _, err := f.Write(make([]byte, page*span)); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	buf := make([]byte, page)
	lat := make([]time.Duration, 0, diskSyncs)
	for i := range diskSyncs {
		t := time.Now()
		if _, err := f.WriteAt(buf, int64(i%span*page)); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t))
		select {
		case <-time.After(diskSyncPause):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return lat, nil
}
