package lifecycle

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"artifactstore/store"
)

// TestEventBytesBoundedByPruning measures what a daily verification of
// every location costs in the event log, per million locations and day,
// without pruning and with the default ages (verification events 72h),
// and checks that pruning bounds it. The clock is injected: eight
// simulated days run in seconds.
func TestEventBytesBoundedByPruning(t *testing.T) {
	const locations, days = 500, 7
	now := time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	path := filepath.Join(t.TempDir(), "r.db")
	st, err := store.Open(path, store.Options{NoSync: true, Now: clock, BatchDelay: 50 * time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	pkgs := make([]store.Package, locations)
	digests := make([]string, locations)
	for i := range pkgs {
		digests[i] = fmt.Sprintf("sha256:%064x", i+1)
		pkgs[i] = store.Package{Name: fmt.Sprintf("p%d", i), Version: "1", Producer: "ci", RetentionClass: "ci",
			Files: []store.File{{Path: "f", Size: 4096, Digest: digests[i], MediaType: "application/octet-stream"}}}
	}
	if err := st.ImportPackages(ctx, pkgs, "local"); err != nil {
		t.Fatal(err)
	}
	m := New(st, nil, nil, Options{Now: clock, Events: EventPolicy{MaxAge: 30 * 24 * time.Hour, VerificationMaxAge: 72 * time.Hour, SummaryMaxAge: 365 * 24 * time.Hour}})
	perMillion := func(b int64) float64 { return float64(b) / locations * 1e6 / 1e9 } // GB per 1M locations
	var perDay int64
	var peak int64
	var sizes []int64
	for day := 0; day < days; day++ {
		// A daily quick run: one location_verified event per location.
		var wg sync.WaitGroup
		work := make(chan string)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for d := range work {
					if err := st.RecordVerdict(ctx, store.Verdict{Digest: d, Backend: "local", Mode: store.ModeQuick,
						Verdict: store.StatusVerified, At: clock(), Duration: 150 * time.Microsecond, RunID: "0123456789abcdef"}); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		for _, d := range digests {
			work <- d
		}
		close(work)
		wg.Wait()
		n, b, err := st.EventBytes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if day == 0 {
			perDay = b
			t.Logf("one daily verification: %d events, %d bytes (%.0f bytes/event) = %.2f GB per million locations per day without pruning",
				n, b, float64(b)/float64(n), perMillion(b))
		}
		rep, err := m.PruneEvents(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, after, _ := st.EventBytes(ctx)
		peak = max(peak, after)
		fi, _ := os.Stat(path)
		sizes = append(sizes, fi.Size())
		t.Logf("day %d: events %.2f GB/1M locations before pruning, %.2f after (pruned %d, horizon %d); database file %d bytes",
			day, perMillion(b), perMillion(after), rep.Deleted, rep.Horizon, fi.Size())
		mu.Lock()
		now = now.Add(24 * time.Hour)
		mu.Unlock()
	}
	// Without pruning the log would hold days x perDay; with a 72h age it
	// holds at most four days of verdicts.
	if peak > 4*perDay+perDay/10 {
		t.Fatalf("event bytes after pruning peaked at %d, more than 4 days of %d", peak, perDay)
	}
	t.Logf("steady state with pruning: %.2f GB per million locations (%d days without pruning would be %.2f GB and growing)",
		perMillion(peak), days, perMillion(perDay*days))
	// bbolt reuses the freed pages: the file stops growing.
	if last, mid := sizes[days-1], sizes[4]; last > mid+mid/4 {
		t.Fatalf("database file still growing with pruning: day 4 %d bytes, day %d %d bytes", mid, days-1, last)
	}
}
