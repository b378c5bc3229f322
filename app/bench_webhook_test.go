package app

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"artifactstore/store"
)

// benchWebhookPublish measures the publish rate of 4 KiB packages (32
// producers, one-request form) while a webhook subscription to every event
// points at a blackholed receiver (accepts the connection, never answers),
// against the same service without the subscription. Runs alternate which
// side goes first; the row gives the median of the per-run ratios and each
// side's spread.
func benchWebhookPublish(t testing.TB, rep *benchReport, env *testEnv, perRun, runs int) {
	const producers = 32
	ctx := context.Background()
	hole := blackhole(t)
	stamp := time.Now().UnixNano()
	var seq atomic.Int64
	// publishRun's time runs until the manifest records of its packages
	// are written, as in the publish rows, and it starts with none
	// pending: otherwise each run would pay for the records of the run
	// before it, which is the other side's every other time.
	publishRun := func() time.Duration {
		var next atomic.Int64
		var failed atomic.Int64
		var wg sync.WaitGroup
		waitRecords(t, env)
		start := time.Now()
		for p := 0; p < producers; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(perRun) {
					if err := benchFormPublish(env, "small-hooked", fmt.Sprintf("hook-%d-%d", stamp, seq.Add(1))); err != nil {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		waitRecords(t, env)
		d := time.Since(start)
		if failed.Load() > 0 {
			t.Fatalf("%d publishes failed", failed.Load())
		}
		return d
	}
	withHook := func() time.Duration {
		if _, err := env.svc.Webhooks.Add(ctx, store.Subscription{ID: "bench-blackhole", URL: hole}, true); err != nil {
			t.Fatal(err)
		}
		d := publishRun()
		sts, err := env.svc.Webhooks.Statuses(ctx)
		if err != nil || len(sts) != 1 || sts[0].LagEvents < uint64(perRun) {
			t.Fatalf("the blackholed subscription should lag by every event: %v %+v", err, sts)
		}
		if err := env.svc.Webhooks.Remove(ctx, "bench-blackhole"); err != nil {
			t.Fatal(err)
		}
		return d
	}
	var base, hook []float64
	for i := 0; i < runs; i++ {
		if i%2 == 0 {
			base = append(base, float64(perRun)/publishRun().Seconds())
			hook = append(hook, float64(perRun)/withHook().Seconds())
		} else {
			hook = append(hook, float64(perRun)/withHook().Seconds())
			base = append(base, float64(perRun)/publishRun().Seconds())
		}
	}
	// Each run with the webhook is paired with the run without it next to
	// it (the one before or after, as the order alternates).
	mb, mh := medianF(base), medianF(hook)
	ratios := ratiosOf(hook, base)
	ratio := medianF(ratios)
	rep.add(benchRow{Name: "publish rate, 4 KiB packages, 32 producers, webhook to a blackholed receiver",
		Ours:     fmt.Sprintf("%.0f /s (%.0f..%.0f)", mh, minOf(hook), maxOf(hook)),
		Baseline: fmt.Sprintf("%.0f /s (%.0f..%.0f) (same service, no webhook)", mb, minOf(base), maxOf(base)),
		Ratio:    ratioText(ratio), Target: ">= 0.90", Verdict: verdict(ratio >= 0.90),
		Note: fmt.Sprintf("one-request form; each run lasts until its packages' manifest records are written, and starts with none pending; median of the ratios of %d alternating runs of %d packages each; ratios %s", runs, perRun, floats(ratios, "%.2f"))})
}

func minOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs {
		m = min(m, x)
	}
	return m
}

func maxOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

// BenchmarkWebhookPublish runs only the webhook row at full size:
// go test -run '^$' -bench '^BenchmarkWebhookPublish$' -benchtime 1x ./app
func BenchmarkWebhookPublish(b *testing.B) {
	dir := b.TempDir()
	env := startService(b, benchLocalYAML(dir, ""))
	rep := &benchReport{}
	benchWebhookPublish(b, rep, env, fullSizes.publishes/3, 6)
	fmt.Println(rep.table())
}
