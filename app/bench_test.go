package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	bolt "go.etcd.io/bbolt"

	"artifactstore/backends"
	"artifactstore/backends/s3/s3test"
	"artifactstore/internal/client"
	"artifactstore/internal/verify"
	"artifactstore/store"
)

// The benchmark harness. `make bench` runs BenchmarkReport once with full
// sizes and writes docs/PERFORMANCE.md; TestBenchHarnessSmoke runs every
// measurement with tiny sizes inside `make test` to prove the harness works.
// Every figure is a ratio to a baseline measured in the same run.

type benchSizes struct {
	upload, s3Object, verifyTotal, rssUpload int64
	publishes, millionPkgs                   int
}

var fullSizes = benchSizes{upload: 1 << 30, s3Object: 256 << 20, verifyTotal: 1 << 30, rssUpload: 10 << 30, publishes: 6000, millionPkgs: 1_000_000}
var smokeSizes = benchSizes{upload: 8 << 20, s3Object: 8 << 20, verifyTotal: 16 << 20, rssUpload: 32 << 20, publishes: 200, millionPkgs: 2000}

// benchRow is one line of the report.
type benchRow struct {
	Name, Ours, Baseline, Ratio, Target, Verdict, Note string
}

type benchReport struct {
	mu   sync.Mutex
	rows []benchRow
}

func (r *benchReport) add(row benchRow) {
	r.mu.Lock()
	r.rows = append(r.rows, row)
	r.mu.Unlock()
}

func mbps(bytes int64, d time.Duration) float64 { return float64(bytes) / d.Seconds() / 1e6 }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// pattern is a fast, incompressible body source: a random 1 MiB block
// repeated, so generating bytes costs nothing next to what is measured.
type pattern struct {
	block []byte
	left  int64
	off   int
}

func newPattern(seed uint64, n int64) *pattern {
	b := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(seed, 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return &pattern{block: b, left: n}
}

func (p *pattern) Read(buf []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	n := copy(buf, p.block[p.off:])
	if int64(n) > p.left {
		n = int(p.left)
	}
	p.off = (p.off + n) % len(p.block)
	p.left -= int64(n)
	return n, nil
}

func patternSHA(seed uint64, n int64) string {
	h := sha256.New()
	io.CopyBuffer(h, newPattern(seed, n), make([]byte, 1<<20))
	return hex.EncodeToString(h.Sum(nil))
}

// baselineServer receives an upload, hashes it and writes it to a file
// with a 1 MiB buffer, fsyncs, and answers: the floor of any durable upload.
func baselineServer(t testing.TB, dir string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			f, err := os.Open(filepath.Join(dir, "baseline.bin"))
			if err != nil {
				http.Error(w, err.Error(), 404)
				return
			}
			defer f.Close()
			st, _ := f.Stat()
			http.ServeContent(w, r, "baseline.bin", st.ModTime(), f)
			return
		}
		f, err := os.Create(filepath.Join(dir, "baseline.bin"))
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		h := sha256.New()
		_, err = io.CopyBuffer(io.MultiWriter(f, h), r.Body, make([]byte, 1<<20))
		if err == nil {
			err = f.Sync()
		}
		f.Close()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.WriteHeader(201)
		fmt.Fprint(w, hex.EncodeToString(h.Sum(nil)))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func timedPUT(t testing.TB, url, token string, body io.Reader, size int64) time.Duration {
	req, _ := http.NewRequest(http.MethodPut, url, body)
	req.ContentLength = size
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("PUT %s: %d", url, resp.StatusCode)
	}
	return time.Since(start)
}

func timedGET(t testing.TB, url, token string, want int64) time.Duration {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 1<<20))
	resp.Body.Close()
	if n != want {
		t.Fatalf("GET %s: %d bytes, want %d", url, n, want)
	}
	return time.Since(start)
}

// benchUploadDownload measures one upload and one download of size bytes
// through env against the baseline server, best of runs.
func benchUploadDownload(t testing.TB, rep *benchReport, env *testEnv, label string, size int64, runs int, direct func(seed uint64) (time.Duration, time.Duration)) {
	ctx := context.Background()
	var ours, base, oursDown, baseDown time.Duration
	for i := 0; i < runs; i++ {
		seed := uint64(time.Now().UnixNano())
		sum := patternSHA(seed, size)
		br, err := env.c.Begin(ctx, client.Manifest{Name: "bench-" + label, Version: fmt.Sprint(seed), Producer: "bench", RetentionClass: "bench",
			Files: []client.File{{Path: "big.bin", Size: size, SHA256: sum}}})
		if err != nil {
			t.Fatal(err)
		}
		d := timedPUT(t, env.url+"/v1/uploads/"+br.UploadID+"/blobs/sha256:"+sum, env.token, newPattern(seed, size), size)
		if _, _, err := env.c.Commit(ctx, br.UploadID); err != nil {
			t.Fatal(err)
		}
		dd := timedGET(t, env.url+client.FilePath("bench-"+label, fmt.Sprint(seed), "big.bin"), env.token, size)
		bu, bd := direct(seed)
		if i == 0 || d < ours {
			ours = d
		}
		if i == 0 || bu < base {
			base = bu
		}
		if i == 0 || dd < oursDown {
			oursDown = dd
		}
		if i == 0 || bd < baseDown {
			baseDown = bd
		}
	}
	return2 := func(name, baseName string, o, b time.Duration, target float64) {
		ratio := b.Seconds() / o.Seconds()
		rep.add(benchRow{Name: name, Ours: fmt.Sprintf("%.0f MB/s", mbps(size, o)), Baseline: fmt.Sprintf("%.0f MB/s (%s)", mbps(size, b), baseName),
			Ratio: fmt.Sprintf("%.2f", ratio), Target: fmt.Sprintf(">= %.2f", target), Verdict: verdict(ratio >= target),
			Note: fmt.Sprintf("%d MiB, best of %d", size>>20, runs)})
	}
	kind := "local"
	if label != "local" {
		kind = label
	}
	if label == "local" {
		return2("upload, "+kind, "HTTP receive + sha256 + write + fsync", ours, base, 0.85)
		return2("download, "+kind, "http.ServeContent of the same file", oursDown, baseDown, 0.90)
	} else {
		return2("upload, "+kind, "direct minio-go PutObject", ours, base, 0.90)
		return2("download, "+kind, "direct minio-go GetObject", oursDown, baseDown, 0.90)
	}
}

func runBenchmarks(t testing.TB, sz benchSizes, rep *benchReport, runs int) {
	dir := t.TempDir()
	cfg := fmt.Sprintf("data_dir: %s/data\nserver:\n  max_body_bytes: 21474836480\nbackends:\n  local:\n    type: local\n    path: %s/objects\n    key_prefix: artifacts\nrouting:\n  default: local\nverify:\n  deep:\n    interval: 0s\n  quick:\n    interval: 0s\n", dir, dir)
	env := startService(t, cfg)

	// 1-2. Local upload and download.
	base := baselineServer(t, dir)
	benchUploadDownload(t, rep, env, "local", sz.upload, runs, func(seed uint64) (time.Duration, time.Duration) {
		u := timedPUT(t, base+"/up", "", newPattern(seed, sz.upload), sz.upload)
		d := timedGET(t, base+"/down", "", sz.upload)
		os.Remove(filepath.Join(dir, "baseline.bin"))
		return u, d
	})

	// 3. S3: versitygw and Ceph RGW, through artifactstore vs direct.
	for _, srv := range s3test.Servers(t) {
		if srv.Name != "versitygw" && srv.Name != "ceph" {
			continue
		}
		bucket := srv.NewBucket(t)
		s3cfg := fmt.Sprintf("data_dir: %s/data-%s\nserver:\n  max_body_bytes: 21474836480\nbackends:\n%srouting:\n  default: %s\nverify:\n  deep:\n    interval: 0s\n  quick:\n    interval: 0s\n",
			dir, srv.Name, strings.ReplaceAll(s3BackendYAML(srv.Name, bucket), "multipart_threshold_bytes: 8388608\n    multipart_chunk_bytes: 5242880", "multipart_threshold_bytes: 16777216\n    multipart_chunk_bytes: 16777216"), srv.Name)
		senv := startService(t, s3cfg)
		core := srv.Client(t)
		benchUploadDownload(t, rep, senv, srv.Name, sz.s3Object, runs, func(seed uint64) (time.Duration, time.Duration) {
			key := fmt.Sprintf("direct/%d", seed)
			start := time.Now()
			_, err := core.Client.PutObject(context.Background(), bucket.Bucket, key, newPattern(seed, sz.s3Object), sz.s3Object,
				minio.PutObjectOptions{PartSize: 16 << 20, ContentType: "application/octet-stream"})
			if err != nil {
				t.Fatal(err)
			}
			u := time.Since(start)
			start = time.Now()
			obj, err := core.Client.GetObject(context.Background(), bucket.Bucket, key, minio.GetObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			io.CopyBuffer(io.Discard, obj, make([]byte, 1<<20))
			obj.Close()
			d := time.Since(start)
			core.RemoveObject(context.Background(), bucket.Bucket, key, minio.RemoveObjectOptions{})
			return u, d
		})
		senv.stop()
	}

	// 4. Verification throughput vs raw sha256 of the same files.
	benchVerify(t, rep, env, sz.verifyTotal)
	benchVerifiedReads(t, rep, dir, sz.s3Object, runs) // bench_integrity_test.go
	// 5. Publish rate of small packages from 32 producers.
	benchPublishRate(t, rep, env, sz.publishes)
	// 5b. The same with a webhook to a blackholed receiver (bench_webhook_test.go).
	benchWebhookPublish(t, rep, env, sz.publishes/3, runs)
	env.stop()
	// 6. Registry of many packages: lookup, list page, start-up.
	benchManyPackages(t, rep, dir, sz.millionPkgs)
	// 7. Peak RSS of a large streaming upload.
	benchRSS(t, rep, dir, sz.rssUpload)
	// 8. Every page of the web interface at a tenth of the packages.
	benchUI(t, rep, dir, sz.millionPkgs/10)
}

func benchVerify(t testing.TB, rep *benchReport, env *testEnv, total int64) {
	const files = 8
	per := total / files
	var paths []string
	for i := 0; i < files; i++ {
		seed := uint64(1000 + i)
		sum := patternSHA(seed, per)
		br, err := env.c.Begin(context.Background(), client.Manifest{Name: "bench-verify", Version: fmt.Sprint(i), Producer: "bench", RetentionClass: "bench",
			Files: []client.File{{Path: "f", Size: per, SHA256: sum}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := env.c.Upload(context.Background(), br.UploadID, sum, per, newPattern(seed, per)); err != nil {
			t.Fatal(err)
		}
		env.c.Commit(context.Background(), br.UploadID)
		paths = append(paths, filepath.Join(env.svc.Config.Backends["local"].Path, "artifacts", "sha256", sum[:2], sum[2:4], sum))
	}
	// Baseline: one core hashing the same files from disk.
	hashAll := func() time.Duration {
		start := time.Now()
		buf := make([]byte, 1<<20)
		for _, p := range paths {
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			io.CopyBuffer(sha256.New(), f, buf)
			f.Close()
		}
		return time.Since(start)
	}
	hashAll() // warm the page cache for both sides
	baseline := hashAll()
	only := func(conc int) time.Duration {
		eng := verify.New(env.svc.Store, map[string]backends.Backend{"local": env.svc.Backends["local"]}, verify.Options{Concurrency: conc})
		start := time.Now()
		rep, err := eng.Run(context.Background(), "local", store.ModeDeep, verify.Hooks{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.BytesRead < per*files {
			t.Fatalf("verified %d bytes, want at least %d", rep.BytesRead, per*files)
		}
		return time.Since(start)
	}
	for _, conc := range []int{1, 2} {
		d := only(conc)
		// The run re-reads everything the registry holds, including files
		// from earlier measurements: scale by the bytes actually read.
		st, _ := env.svc.Store.GetVerifyState(context.Background(), "local", store.ModeDeep)
		read := st.Last.BytesRead
		ours := float64(read) / d.Seconds()
		raw := float64(per*files) / baseline.Seconds()
		ratio := ours / raw
		target := 0.90
		if conc == 2 {
			target = 1.6
		}
		rep.add(benchRow{Name: fmt.Sprintf("deep verification, concurrency %d", conc), Ours: fmt.Sprintf("%.0f MB/s", ours/1e6),
			Baseline: fmt.Sprintf("%.0f MB/s (sha256 of the same files, 1 core)", raw/1e6), Ratio: fmt.Sprintf("%.2f", ratio),
			Target: fmt.Sprintf(">= %.2f", target), Verdict: verdict(ratio >= target), Note: fmt.Sprintf("%d MiB in %d files, page cache warm, no byte budget", read>>20, files)})
	}
}

func benchPublishRate(t testing.TB, rep *benchReport, env *testEnv, total int) {
	const producers = 32
	var next atomic.Int64
	var failed atomic.Int64
	run := func(fn func(i int64) error) time.Duration {
		next.Store(0)
		var wg sync.WaitGroup
		start := time.Now()
		for p := 0; p < producers; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1)
					if i > int64(total) {
						return
					}
					if err := fn(i); err != nil {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	stamp := time.Now().UnixNano()
	staged := run(func(i int64) error {
		data := make([]byte, 4096)
		binary := fmt.Sprintf("%d-%d", stamp, i)
		copy(data, binary)
		sum := sha256.Sum256(data)
		sh := hex.EncodeToString(sum[:])
		br, err := env.c.Begin(context.Background(), client.Manifest{Name: "small", Version: binary, Producer: "bench", RetentionClass: "bench",
			Files: []client.File{{Path: "f.bin", Size: 4096, SHA256: sh}}})
		if err != nil {
			return err
		}
		if err := env.c.Upload(context.Background(), br.UploadID, sh, 4096, bytes.NewReader(data)); err != nil {
			return err
		}
		_, _, err = env.c.Commit(context.Background(), br.UploadID)
		return err
	})
	form := run(func(i int64) error {
		data := make([]byte, 4096)
		version := fmt.Sprintf("form-%d-%d", stamp, i)
		copy(data, version)
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		fw, _ := mw.CreateFormField("manifest")
		fmt.Fprintf(fw, `{"name":"small","version":"%s","producer":"bench","retention_class":"bench"}`, version)
		part, _ := mw.CreateFormFile("file", "f.bin")
		part.Write(data)
		mw.Close()
		resp, err := env.post("/v1/packages", mw.FormDataContentType(), &buf)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return fmt.Errorf("form publish: %d", resp.StatusCode)
		}
		return nil
	})
	if failed.Load() > 0 {
		t.Fatalf("%d publishes failed", failed.Load())
	}
	// Baseline: the same 32 writers each writing a 4 KiB file with fsync
	// and a durable bbolt commit, grouped the way bbolt's Batch groups them.
	bdir := t.TempDir()
	db, err := bolt.Open(filepath.Join(bdir, "b.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.MaxBatchDelay = time.Millisecond
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists([]byte("b")); return err })
	base := run(func(i int64) error {
		p := filepath.Join(bdir, strconv.FormatInt(i, 10))
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		f.Write(make([]byte, 4096))
		f.Sync()
		f.Close()
		return db.Batch(func(tx *bolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte(p), []byte("x")) })
	})
	db.Close()
	brate := float64(total) / base.Seconds()
	for _, v := range []struct {
		name, note string
		d          time.Duration
	}{
		{"publish rate, 4 KiB packages, 32 producers, staged protocol", "begin+upload+commit: 3 requests each", staged},
		{"publish rate, 4 KiB packages, 32 producers, one-request form", "one multipart POST each", form},
	} {
		rate := float64(total) / v.d.Seconds()
		rep.add(benchRow{Name: v.name, Ours: fmt.Sprintf("%.0f /s", rate),
			Baseline: fmt.Sprintf("%.0f /s (file write+fsync and a batched bbolt commit per item)", brate), Ratio: fmt.Sprintf("%.2f", rate/brate),
			Target: ">= 1500 /s", Verdict: verdict(rate >= 1500), Note: fmt.Sprintf("%d packages, %s, durable before the reply", total, v.note)})
	}
}

func percentile(ds []time.Duration, p float64) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[int(float64(len(ds)-1)*p)]
}

func benchManyPackages(t testing.TB, rep *benchReport, dir string, n int) {
	dbDir := filepath.Join(dir, "many")
	cfgFile := writeLocalConfig(t, dbDir, filepath.Join(dbDir, "objects"), "verify:\n  deep:\n    interval: 0s\n  quick:\n    interval: 0s\n")
	cfg, err := LoadConfig(LoadOptions{File: cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(cfg.Database.Path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	buildStart := time.Now()
	const names = 1000
	const chunk = 20000
	digest := "sha256:" + strings.Repeat("ab", 32)
	for off := 0; off < n; off += chunk {
		var batch []store.Package
		for i := off; i < off+chunk && i < n; i++ {
			batch = append(batch, store.Package{Name: fmt.Sprintf("pkg-%04d", i%names), Version: fmt.Sprintf("1.%d.0", i/names), Producer: "bench", RetentionClass: "release",
				Labels: map[string]string{"team": "bench"}, Files: []store.File{{Path: "app.tar.gz", Size: 4096, Digest: digest, MediaType: "application/gzip"}}})
		}
		if err := st.ImportPackages(context.Background(), batch, "local"); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	build := time.Since(buildStart)

	// Start-up to ready, against opening the bbolt file alone.
	start := time.Now()
	svc, err := NewService(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Serve(ctx, ln) }()
	url := "http://" + ln.Addr().String()
	for {
		if resp, err := http.Get(url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		time.Sleep(time.Millisecond)
	}
	startup := time.Since(start)
	r := rand.New(rand.NewPCG(1, 2))
	lookups := make([]time.Duration, 0, 20000)
	rawLookups := make([]time.Duration, 0, 20000)
	for i := 0; i < 20000; i++ {
		k := r.IntN(n)
		name, version := fmt.Sprintf("pkg-%04d", k%names), fmt.Sprintf("1.%d.0", k/names)
		s := time.Now()
		if _, err := svc.Store.GetPackage(context.Background(), name, version); err != nil {
			t.Fatal(err)
		}
		lookups = append(lookups, time.Since(s))
		s = time.Now()
		svc.Store.DB().View(func(tx *bolt.Tx) error {
			v := tx.Bucket([]byte("packages")).Get([]byte(name + "\x00" + version))
			_ = append([]byte(nil), v...)
			return nil
		})
		rawLookups = append(rawLookups, time.Since(s))
	}
	lists := make([]time.Duration, 0, 2000)
	rawLists := make([]time.Duration, 0, 2000)
	for i := 0; i < 2000; i++ {
		k := r.IntN(n)
		name := fmt.Sprintf("pkg-%04d", k%names)
		s := time.Now()
		page, err := svc.Store.ListVersions(context.Background(), name, "", 100)
		if err != nil || len(page.Packages) != min(100, n/names) {
			t.Fatalf("list: %v, %d", err, len(page.Packages))
		}
		lists = append(lists, time.Since(s))
		s = time.Now()
		svc.Store.DB().View(func(tx *bolt.Tx) error {
			c := tx.Bucket([]byte("packages")).Cursor()
			prefix := []byte(name + "\x00")
			j := 0
			for k, v := c.Seek(prefix); k != nil && j < 100; k, v = c.Next() {
				_ = append([]byte(nil), v...)
				j++
			}
			return nil
		})
		rawLists = append(rawLists, time.Since(s))
	}
	cancel()
	<-done
	svc.Close()
	s := time.Now()
	db, err := bolt.Open(cfg.Database.Path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	rawOpen := time.Since(s)
	db.Close()
	size := int64(0)
	if fi, err := os.Stat(cfg.Database.Path); err == nil {
		size = fi.Size()
	}
	note := fmt.Sprintf("%d packages (%d names), %d MiB database built in %s", n, names, size>>20, build.Round(time.Second))
	p99, rp99 := percentile(lookups, 0.99), percentile(rawLookups, 0.99)
	rep.add(benchRow{Name: "lookup name@version, p99", Ours: p99.String(), Baseline: rp99.String() + " (raw bbolt Get)", Ratio: fmt.Sprintf("%.2f", rp99.Seconds()/p99.Seconds()),
		Target: "< 1ms", Verdict: verdict(p99 < time.Millisecond), Note: note})
	l99, rl99 := percentile(lists, 0.99), percentile(rawLists, 0.99)
	rep.add(benchRow{Name: "list page of 100 versions, p99", Ours: l99.String(), Baseline: rl99.String() + " (raw cursor over 100 records)", Ratio: fmt.Sprintf("%.2f", rl99.Seconds()/l99.Seconds()),
		Target: "< 5ms", Verdict: verdict(l99 < 5*time.Millisecond), Note: note})
	rep.add(benchRow{Name: "start-up to ready", Ours: startup.Round(time.Millisecond).String(), Baseline: rawOpen.Round(time.Millisecond).String() + " (bbolt open alone)",
		Ratio: fmt.Sprintf("%.2f", rawOpen.Seconds()/startup.Seconds()), Target: "< 300ms", Verdict: verdict(startup < 300*time.Millisecond), Note: note})
}

// benchRSS streams one large upload into a serve process and reads its
// peak RSS (VmHWM), against the baseline receiver in a process of its own.
func benchRSS(t testing.TB, rep *benchReport, dir string, size int64) {
	rdir := filepath.Join(dir, "rss")
	cfg := writeLocalConfig(t, rdir, filepath.Join(rdir, "objects"), "server:\n  max_body_bytes: 21474836480\n")
	p := startProc(t, cfg)
	c := clientFor(p)
	seed := uint64(42)
	sum := patternSHA(seed, size)
	br, err := c.Begin(context.Background(), client.Manifest{Name: "rss", Version: "1", Producer: "bench", RetentionClass: "bench",
		Files: []client.File{{Path: "huge.bin", Size: size, SHA256: sum}}})
	if err != nil {
		t.Fatal(err)
	}
	d := timedPUT(t, p.url+"/v1/uploads/"+br.UploadID+"/blobs/sha256:"+sum, p.token, newPattern(seed, size), size)
	ours := vmHWM(t, p.cmd.Process.Pid)
	if _, _, err := c.Commit(context.Background(), br.UploadID); err != nil {
		t.Fatal(err)
	}
	p.stop(t)
	os.RemoveAll(filepath.Join(rdir, "objects"))

	// The baseline receiver, as its own process: this test binary re-run
	// in baseline-server mode.
	cmd := exec.Command(os.Args[0], "-test.run=^TestBaselineReceiverProcess$")
	cmd.Env = append(os.Environ(), "ARTIFACTSTORE_BASELINE_DIR="+rdir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var url string
	fmt.Fscanln(out, &url)
	bd := timedPUT(t, url+"/up", "", newPattern(seed, size), size)
	base := vmHWM(t, cmd.Process.Pid)
	cmd.Process.Kill()
	cmd.Wait()
	os.Remove(filepath.Join(rdir, "baseline.bin"))
	rep.add(benchRow{Name: "peak RSS, streaming upload, local", Ours: fmt.Sprintf("%d MiB", ours>>20), Baseline: fmt.Sprintf("%d MiB (baseline receiver process)", base>>20),
		Ratio: fmt.Sprintf("%.2f", float64(base)/float64(ours)), Target: "< 100 MiB", Verdict: verdict(ours < 100<<20),
		Note: fmt.Sprintf("%d MiB upload at %.0f MB/s (baseline %.0f MB/s); S3: one part of multipart_chunk_bytes in flight, streamed, not buffered", size>>20, mbps(size, d), mbps(size, bd))})
}

// TestBaselineReceiverProcess is the baseline receiver when re-run by
// benchRSS (it prints its URL and serves until killed); otherwise it only
// checks that the baseline receiver stores and hashes what it receives.
func TestBaselineReceiverProcess(t *testing.T) {
	dir := os.Getenv("ARTIFACTSTORE_BASELINE_DIR")
	if dir == "" {
		d := t.TempDir()
		url := baselineServer(t, d)
		timedPUT(t, url+"/up", "", newPattern(1, 3<<20), 3<<20)
		b, err := os.ReadFile(filepath.Join(d, "baseline.bin"))
		if err != nil || int64(len(b)) != 3<<20 {
			t.Fatalf("baseline receiver stored %d bytes: %v", len(b), err)
		}
		return
	}
	fmt.Println(baselineServer(t, dir))
	select {}
}

func vmHWM(t testing.TB, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

func (r *benchReport) table() string {
	var b strings.Builder
	b.WriteString("| measurement | ours | baseline (same run) | ratio | target | verdict | notes |\n|---|---|---|---|---|---|---|\n")
	for _, row := range r.rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", row.Name, row.Ours, row.Baseline, row.Ratio, row.Target, row.Verdict, row.Note)
	}
	return b.String()
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return runtime.GOARCH
}

// BenchmarkReport runs every measurement once at full size, prints the
// table and, with ARTIFACTSTORE_BENCH_REPORT=FILE, writes it there.
func BenchmarkReport(b *testing.B) {
	rep := &benchReport{}
	runBenchmarks(b, fullSizes, rep, 5)
	table := rep.table()
	fmt.Println(table)
	if out := os.Getenv("ARTIFACTSTORE_BENCH_REPORT"); out != "" {
		writePerformanceDoc(b, out, table)
	}
}

// TestBenchHarnessSmoke runs every measurement with tiny sizes: it proves
// the harness works, not the performance.
func TestBenchHarnessSmoke(t *testing.T) {
	rep := &benchReport{}
	runBenchmarks(t, smokeSizes, rep, 1)
	if len(rep.rows) < 9 {
		t.Fatalf("harness produced %d rows:\n%s", len(rep.rows), rep.table())
	}
	t.Logf("smoke figures (tiny sizes, not meaningful):\n%s", rep.table())
}

// writePerformanceDoc puts the table (with the machine and date) between
// the bench markers of path, keeping the rest of the document (the
// findings written by people); a missing file gets a skeleton.
func writePerformanceDoc(t testing.TB, path, table string) {
	const start, end = "<!-- bench:start -->", "<!-- bench:end -->"
	block := fmt.Sprintf("%s\nMeasured on %s (%d cores, %s), %s, with\n`make bench` (`go test -run '^$' -bench '^BenchmarkReport$' -benchtime 1x ./app`).\n\n%s%s",
		start, cpuModel(), runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format("2006-01-02 15:04 UTC"), table, end)
	old, err := os.ReadFile(path)
	doc := "# Performance\n\n" + block + "\n"
	if err == nil {
		s := string(old)
		i, j := strings.Index(s, start), strings.Index(s, end)
		if i >= 0 && j > i {
			doc = s[:i] + block + s[j+len(end):]
		}
	}
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
}
