package app

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"artifactstore/internal/client"
	"artifactstore/internal/verify"
	"artifactstore/store"
)

// benchVerifiedReads measures what verified downloads cost: a full GET of
// a local object hashed as it streams (the default), against the same GET
// served unhashed through sendfile (a location inside
// verify.trusted_read_window). Two services on this machine, each with its
// own copy of the same-sized, distinct content, page cache warm; the
// figure is the median of runs per-run ratios, with their spread.
func benchVerifiedReads(t testing.TB, rep *benchReport, dir string, size int64, runs int) {
	cfg := func(name, window string) string {
		return benchLocalYAML(filepath.Join(dir, "vr-"+name), "  trusted_read_window: "+window+"\n")
	}
	hashed := startService(t, cfg("hashed", "0s"))
	trusted := startService(t, cfg("trusted", "1000h"))
	defer hashed.stop()
	defer trusted.stop()
	ctx := context.Background()
	put := func(env *testEnv, seed uint64) string {
		sum := patternSHA(seed, size)
		br, err := env.c.Begin(ctx, client.Manifest{Name: "bench-vr", Version: fmt.Sprint(seed), Producer: "bench", RetentionClass: "bench",
			Files: []client.File{{Path: "f", Size: size, SHA256: sum}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := env.c.Upload(ctx, br.UploadID, sum, size, newPattern(seed, size)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := env.c.Commit(ctx, br.UploadID); err != nil {
			t.Fatal(err)
		}
		return env.url + client.FilePath("bench-vr", fmt.Sprint(seed), "f")
	}
	best := func(env *testEnv, url string) time.Duration {
		var d time.Duration
		for i := 0; i < 3; i++ { // the first GET also warms the page cache
			if x := timedGET(t, url, env.token, size); i == 0 || x < d {
				d = x
			}
		}
		return d
	}
	var hus, tus []string
	for i := 0; i < runs; i++ {
		seed := uint64(time.Now().UnixNano())
		hus, tus = append(hus, put(hashed, seed)), append(tus, put(trusted, seed+1))
	}
	// Every location verified: only the window decides the path.
	for _, env := range []*testEnv{hashed, trusted} {
		if _, err := env.svc.Verify.Run(ctx, "local", store.ModeDeep, verify.Hooks{}); err != nil {
			t.Fatal(err)
		}
	}
	var runsOf pairedRuns
	for i := 0; i < runs; i++ {
		hu, tu := hus[i], tus[i]
		var h, tr time.Duration
		if i%2 == 0 { // alternate the order
			h, tr = best(hashed, hu), best(trusted, tu)
		} else {
			tr, h = best(trusted, tu), best(hashed, hu)
		}
		runsOf.add(h, tr)
	}
	rep.add(benchRow{Name: "verified download, local (hashed vs sendfile)", Ours: fmt.Sprintf("%.0f MB/s", mbps(size, medianD(runsOf.ours))),
		Baseline: fmt.Sprintf("%.0f MB/s (same GET unhashed, sendfile: trusted_read_window)", mbps(size, medianD(runsOf.base))),
		Ratio:    fmt.Sprintf("%.2f", runsOf.ratio()), Target: "report", Verdict: "cost of verified reads",
		Note: fmt.Sprintf("%d MiB, best of 3 GETs each run; %s", size>>20, runsOf.spread(size))})
}

// BenchmarkVerifiedReads runs only this row at the full size (256 MiB,
// five runs), without the whole `make bench`:
//
//	go test -run '^$' -bench '^BenchmarkVerifiedReads$' -benchtime 1x ./app
func BenchmarkVerifiedReads(b *testing.B) {
	rep := &benchReport{}
	benchVerifiedReads(b, rep, b.TempDir(), fullSizes.s3Object, 5)
	fmt.Println(rep.table())
}
