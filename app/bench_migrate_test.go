package app

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"artifactstore/backends"
	"artifactstore/backends/local"
	"artifactstore/backends/s3/s3test"
	"artifactstore/internal/digest"
	"artifactstore/internal/replication"
	"artifactstore/store"
)

// benchMigrate measures a storage migration between Ceph RGW and the
// local disk (storage migrate --from rgw --to local, in the service: each
// object read through the digest check, written, read back, recorded)
// against a direct copy between the same two: minio-go GetObject piped
// into the local backend's Put (which checks the digest and fsyncs too),
// at the same concurrency. Each run moves its own distinct objects on
// both sides; the order alternates; the figure is the median of the
// per-run ratios, with their spread.
func benchMigrate(t testing.TB, rep *benchReport, dir string, srv s3test.Server, objects int, size int64, runs int) {
	const conc = 8
	bucket := srv.NewBucket(t)
	cfg := fmt.Sprintf("data_dir: %s/mig/data\nbackends:\n  local:\n    type: local\n    path: %s/mig/objects\n    key_prefix: artifacts\n%srouting:\n  default: rgw\nverify:\n  bytes_per_second: 0\n  deep:\n    interval: 0s\n  quick:\n    interval: 0s\n",
		dir, dir, s3BackendYAML("rgw", bucket))
	env := startService(t, cfg)
	defer env.stop()
	direct, err := local.New("direct", local.Config{Root: filepath.Join(dir, "mig-direct"), KeyPrefix: "artifacts"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	core := srv.Client(t)
	ctx := context.Background()
	// seed puts distinct objects on RGW and returns their digests;
	// with producer set, they are packages of that producer located there.
	seed := func(producer string, rng *rand.Rand) []digest.Digest {
		var ds []digest.Digest
		var pkgs []store.Package
		var mu sync.Mutex
		var failed error
		var wg sync.WaitGroup
		sem := make(chan struct{}, conc)
		for i := range objects {
			data := make([]byte, size)
			for j := 0; j < len(data); j += 8 {
				v := rng.Uint64()
				for k := 0; k < 8 && j+k < len(data); k++ {
					data[j+k] = byte(v >> (8 * k))
				}
			}
			d := digest.FromBytes(data)
			ds = append(ds, d)
			pkgs = append(pkgs, store.Package{Name: fmt.Sprintf("%s-%d", producer, i), Version: "1", Producer: producer, RetentionClass: "bench",
				Files: []store.File{{Path: "f", Size: size, Digest: d.String(), MediaType: "application/octet-stream"}}})
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if _, err := core.Client.PutObject(ctx, bucket.Bucket, backends.ObjectKey("artifacts", d), bytes.NewReader(data), size, minio.PutObjectOptions{}); err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if failed != nil {
			t.Fatalf("seeding RGW: %v", failed)
		}
		if producer != "" {
			if err := env.svc.Store.ImportPackages(ctx, pkgs, "rgw"); err != nil {
				t.Fatal(err)
			}
		}
		return ds
	}
	migrate := func(producer string) time.Duration {
		start := time.Now()
		run, err := env.svc.Replication.Migrate(ctx, replication.MigrateOptions{From: "rgw", To: "local", Producer: producer, Concurrency: conc}, nil)
		if err != nil || run.Copied != objects || run.Failed != 0 {
			t.Fatalf("migration: %+v %v", run, err)
		}
		return time.Since(start)
	}
	copyDirect := func(ds []digest.Digest) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		sem := make(chan struct{}, conc)
		var mu sync.Mutex
		var failed error
		for _, d := range ds {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				obj, err := core.Client.GetObject(ctx, bucket.Bucket, backends.ObjectKey("artifacts", d), minio.GetObjectOptions{})
				if err == nil {
					err = direct.Put(ctx, d, size, obj)
					obj.Close()
				}
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if failed != nil {
			t.Fatalf("direct copy: %v", failed)
		}
		return time.Since(start)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 5))
	var runsOf pairedRuns
	total := int64(objects) * size
	for i := range runs {
		producer := fmt.Sprintf("bench-mig-%d", i)
		seed(producer, rng)
		dds := seed("", rng)
		var m, d time.Duration
		if i%2 == 0 {
			m, d = migrate(producer), copyDirect(dds)
		} else {
			d, m = copyDirect(dds), migrate(producer)
		}
		runsOf.add(m, d)
	}
	med := runsOf.ratio()
	rep.add(benchRow{Name: "storage migration, ceph -> local", Ours: fmt.Sprintf("%.1f MB/s", mbps(total, medianD(runsOf.ours))),
		Baseline: fmt.Sprintf("%.1f MB/s (GetObject piped to the local backend's Put)", mbps(total, medianD(runsOf.base))),
		Ratio:    ratioText(med), Target: ">= 0.80", Verdict: verdict(med >= 0.8),
		Note: fmt.Sprintf("%d objects of %d KiB per run, concurrency %d both sides; ours also reads each copy back and records it; %s", objects, size>>10, conc, runsOf.spread(total))})
}

// BenchmarkMigrate runs only this row (Ceph RGW must run):
//
//	go test -run '^$' -bench '^BenchmarkMigrate$' -benchtime 1x ./app
func BenchmarkMigrate(b *testing.B) {
	rep := &benchReport{}
	for _, srv := range s3test.Servers(b) {
		if srv.Name == "ceph" {
			benchMigrate(b, rep, b.TempDir(), srv, 200, 1<<20, 5)
		}
	}
	fmt.Println(rep.table())
}
