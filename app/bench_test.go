package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
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
	"golang.org/x/sys/unix"

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
	// publishes is per round of the publish-rate measurement, in
	// publishRounds rounds; the webhook row takes as many runs of as many
	// packages on each side.
	publishes, publishRounds int
	// transferRuns is how many interleaved runs each transfer row (upload
	// and download of one large object) takes the median of: more than
	// the other rows, because a transfer run lasts seconds and its ratio
	// swings most from run to run on this machine.
	transferRuns int
	// scaleLocal and scaleS3 are the packages (each with its own object)
	// of the store-at-scale datasets on local and on Ceph RGW.
	scaleLocal, scaleS3 int
	// migrateObjects of migrateSize bytes move per run of the migration row.
	migrateObjects int
	migrateSize    int64
}

var fullSizes = benchSizes{upload: 1 << 30, s3Object: 256 << 20, verifyTotal: 1 << 30, rssUpload: 10 << 30, publishes: 3000, publishRounds: 5, transferRuns: 5, scaleLocal: 1_000_000, scaleS3: 100_000, migrateObjects: 200, migrateSize: 1 << 20}
var smokeSizes = benchSizes{upload: 8 << 20, s3Object: 8 << 20, verifyTotal: 16 << 20, rssUpload: 32 << 20, publishes: 100, publishRounds: 3, transferRuns: 1, scaleLocal: 2000, scaleS3: 300, migrateObjects: 20, migrateSize: 16 << 10}

// benchRow is one line of the report.
type benchRow struct {
	Name, Ours, Baseline, Ratio, Target, Verdict, Note string
}

type benchReport struct {
	mu     sync.Mutex
	rows   []benchRow
	phases []benchPhaseTime
	// progress, when set, gets every row as it is measured and every
	// phase as it ends (bench_phase_test.go), so a run stopped halfway
	// still shows what it measured.
	progress io.Writer
	started  time.Time
}

func (r *benchReport) add(row benchRow) {
	r.mu.Lock()
	r.rows = append(r.rows, row)
	r.mu.Unlock()
	if r.progress != nil {
		fmt.Fprintf(r.progress, "bench row: | %s | %s | %s | %s | %s | %s | %s |\n", row.Name, row.Ours, row.Baseline, row.Ratio, row.Target, row.Verdict, row.Note)
	}
}

func mbps(bytes int64, d time.Duration) float64 { return float64(bytes) / d.Seconds() / 1e6 }

// ratioText prints a ratio judged against a two-decimal target with two
// decimals, cut rather than rounded: the printed figure is never above the
// one judged, so a row never shows 0.90 next to NOT met for ">= 0.90"
// (a median of 0.898 prints 0.89).
func ratioText(x float64) string {
	return fmt.Sprintf("%.2f", math.Floor(x*100+1e-9)/100)
}

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
// Like the store it keeps what it received: the file of the previous
// upload is renamed aside, not deleted, so a GET serves the latest and the
// older ones stay until the test ends. Writing into page-cache memory a
// just-deleted file freed is several times cheaper on this VM than into
// memory not used yet; a baseline that deleted its file after each run
// while the store keeps its objects was measured in another memory state
// (the store at 0.51 of it by that alone; 1.0 when both delete or both keep).
func baselineServer(t testing.TB, dir string) string {
	var mu sync.Mutex
	kept := 0
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := filepath.Join(dir, "baseline.bin")
		if r.Method != http.MethodGet {
			mu.Lock()
			kept++
			os.Rename(name, filepath.Join(dir, fmt.Sprintf("baseline-kept-%d.bin", kept)))
			mu.Unlock()
		}
		if r.Method == http.MethodGet {
			f, err := os.Open(name)
			if err != nil {
				http.Error(w, err.Error(), 404)
				return
			}
			defer f.Close()
			st, _ := f.Stat()
			http.ServeContent(w, r, "baseline.bin", st.ModTime(), f)
			return
		}
		f, err := os.Create(name)
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
	d, err := putTimed(url, token, body, size)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// putTimed is timedPUT for any goroutine: it returns its error.
func putTimed(url, token string, body io.Reader, size int64) (time.Duration, error) {
	req, _ := http.NewRequest(http.MethodPut, url, body)
	req.ContentLength = size
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return 0, fmt.Errorf("PUT %s: %d", url, resp.StatusCode)
	}
	return time.Since(start), nil
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
	n, _ := io.CopyBuffer(plainWriter{io.Discard}, resp.Body, make([]byte, 1<<20))
	resp.Body.Close()
	if n != want {
		t.Fatalf("GET %s: %d bytes, want %d", url, n, want)
	}
	return time.Since(start)
}

// benchUploadDownload measures uploads and downloads of size bytes through
// env against the baseline (direct), runs times each, interleaved, and
// reports the median of the per-run ratios with every run.
//
// settle, if not nil, runs before each upload of either side (see
// dropPageCache).
//
// direct returns its upload's and download's times and what its download
// cost in CPU (cpuNow before and after it, with the same storage server
// processes as serverPIDs, which ours' download is charged with too).
func benchUploadDownload(t testing.TB, rep *benchReport, env *testEnv, label string, size int64, runs int, settle func(), serverPIDs []int, direct func(seed uint64) (time.Duration, time.Duration, cpuUse)) {
	if settle == nil {
		settle = func() {}
	}
	ctx := context.Background()
	var ours, base, oursDown, baseDown []time.Duration
	var oursCPU, baseCPU []cpuUse
	// The side that goes first alternates (ours in the odd-numbered runs), so
	// neither side always meets the machine right after the other's work.
	for i := 0; i < runs; i++ {
		seed := uint64(time.Now().UnixNano())
		var bu, bd time.Duration
		var bc cpuUse
		if i%2 == 1 {
			settle()
			bu, bd, bc = direct(seed)
		}
		sum := patternSHA(seed, size)
		br, err := env.c.Begin(ctx, client.Manifest{Name: "bench-" + label, Version: fmt.Sprint(seed), Producer: "bench", RetentionClass: "bench",
			Files: []client.File{{Path: "big.bin", Size: size, SHA256: sum}}})
		if err != nil {
			t.Fatal(err)
		}
		settle()
		d := timedPUT(t, env.url+"/v1/uploads/"+br.UploadID+"/blobs/sha256:"+sum, env.token, newPattern(seed, size), size)
		if _, _, err := env.c.Commit(ctx, br.UploadID); err != nil {
			t.Fatal(err)
		}
		c0 := cpuNow(t, serverPIDs)
		dd := timedGET(t, env.url+client.FilePath("bench-"+label, fmt.Sprint(seed), "big.bin"), env.token, size)
		oc := cpuNow(t, serverPIDs).sub(c0)
		if i%2 == 0 {
			settle()
			bu, bd, bc = direct(seed)
		}
		ours, oursDown = append(ours, d), append(oursDown, dd)
		base, baseDown = append(base, bu), append(baseDown, bd)
		oursCPU, baseCPU = append(oursCPU, oc), append(baseCPU, bc)
	}
	// Where a download's CPU goes: on 2 cores a proxy that hashes every
	// byte competes with the client and the storage server for them.
	gb := float64(size) / 1e9
	self := func(u cpuUse) time.Duration { return u.self }
	server := func(u cpuUse) time.Duration { return u.server }
	perGB := func(us []cpuUse, of func(cpuUse) time.Duration) float64 {
		v := make([]float64, len(us))
		for i, u := range us {
			v[i] = of(u).Seconds() / gb
		}
		return medianF(v)
	}
	baseWho := "the baseline's server and client (in this process too)"
	if label != "local" {
		baseWho = "the direct client"
	}
	cpuNote := fmt.Sprintf("; CPU-s per GB downloaded (medians): the service and its client (this process) %.2f, %s %.2f",
		perGB(oursCPU, self), baseWho, perGB(baseCPU, self))
	if label == "local" {
		// Every full read is hashed (verify.trusted_read_window 0), and
		// one sha256 runs on one core: its speed caps a hashed download.
		cpuNote += fmt.Sprintf("; sha256 on one core of this machine, in memory: %.0f MB/s (the ceiling of a hashed read)", sha256Rate(min(size, 256<<20)))
	}
	if len(serverPIDs) > 0 {
		cpuNote += fmt.Sprintf("; the storage server's %.2f under ours, %.2f under the baseline", perGB(oursCPU, server), perGB(baseCPU, server))
	}
	// Each run of ours is paired with the baseline run next to it (same
	// machine state), so the ratio is the median of the per-run ratios,
	// as in every other paired row; the rates are the medians of each side.
	row := func(name, baseName string, o, b []time.Duration, target float64, extra string) {
		p := pairedRuns{ours: o, base: b}
		ratio := p.ratio()
		rep.add(benchRow{Name: name, Ours: fmt.Sprintf("%.0f MB/s", mbps(size, medianD(o))), Baseline: fmt.Sprintf("%.0f MB/s (%s)", mbps(size, medianD(b)), baseName),
			Ratio: ratioText(ratio), Target: fmt.Sprintf(">= %.2f", target), Verdict: verdict(ratio >= target),
			Note: fmt.Sprintf("%d MiB, %s%s", size>>20, p.spread(size), extra)})
	}
	switch label {
	case "local":
		row("upload, local", "HTTP receive + sha256 + write + fsync, one after another", ours, base, 1.10, "")
		row("download, local", "http.ServeContent of the same file", oursDown, baseDown, 0.90, cpuNote)
	default:
		// The baseline's reader has no ReadAt, so the client library sends
		// its 16 MiB parts one at a time; ours sends the same parts
		// 2 at once (the default parts-in-flight setting).
		row("upload, "+label, "direct S3 client PutObject, 16 MiB parts one at a time; ours 16 MiB parts, 2 in flight", ours, base, 0.90, "")
		row("download, "+label, "direct S3 client GetObject read through a 1 MiB buffer", oursDown, baseDown, 0.90, cpuNote)
	}
}

// sha256Rate is sha256's speed on one core in MB/s: the median of 3
// hashes of the same n bytes, already in memory.
func sha256Rate(n int64) float64 {
	buf := make([]byte, n)
	io.ReadFull(newPattern(1, n), buf)
	var rates []float64
	for range 3 {
		start := time.Now()
		sha256.Sum256(buf)
		rates = append(rates, float64(n)/time.Since(start).Seconds()/1e6)
	}
	return medianF(rates)
}

// dropPageCache asks the kernel to drop the cached pages of every file
// under dir (posix_fadvise DONTNEED; the files were fsynced, so their
// pages are clean and go back to the free lists). On this VM, writing into
// page-cache memory freed moments ago runs at 1.3-1.5 GB/s, into memory the
// guest has not used lately at ~200 MB/s (dd of 1 GiB with fsync: 1.3, 1.4
// GB/s, then 213 MB/s as the cache grew; after dropping the cache 1.4, 1.5
// GB/s again). Dropping what the runs before kept makes every upload, ours
// or the baseline's, start in the same memory state; the files stay.
func dropPageCache(t testing.TB, dir string) {
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	})
	if err != nil {
		t.Fatalf("drop the page cache of %s: %v", dir, err)
	}
}

// medianD is the median of durations (the lower middle one for an even count).
func medianD(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)/2]
}

// pairedRuns are interleaved runs of ours and a baseline doing the same
// work: a row reports the median of the per-run ratios (baseline time
// over ours), and lists every run, so the spread is visible.
type pairedRuns struct{ ours, base []time.Duration }

func (p *pairedRuns) add(ours, base time.Duration) {
	p.ours, p.base = append(p.ours, ours), append(p.base, base)
}

func (p *pairedRuns) ratios() []float64 {
	out := make([]float64, len(p.ours))
	for i := range p.ours {
		out[i] = p.base[i].Seconds() / p.ours[i].Seconds()
	}
	return out
}

// ratio is the median of the per-run ratios.
func (p *pairedRuns) ratio() float64 { return medianF(p.ratios()) }

// ratiosOf pairs two series of rates run by run: a[i] / b[i].
func ratiosOf(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = a[i] / b[i]
	}
	return out
}

// spread lists every run of size bytes: the ratios, ours and the baseline in MB/s.
func (p *pairedRuns) spread(size int64) string {
	return fmt.Sprintf("median of %d runs; ratios %s; ours %s MB/s, baseline %s MB/s",
		len(p.ours), floats(p.ratios(), "%.2f"), rates(size, p.ours), rates(size, p.base))
}

// rates lists every run's rate in run order: the spread behind a median.
func rates(size int64, ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%.0f", mbps(size, d))
	}
	return strings.Join(parts, ", ")
}

// runBenchmarks measures every row, phase by phase (a failed phase does not
// stop the next one).
func runBenchmarks(t testing.TB, sz benchSizes, rep *benchReport, runs int) {
	dir := t.TempDir()
	if rep.started.IsZero() {
		rep.started = time.Now()
	}
	scale := benchScale(t)
	phase := func(name string, fn func(t testing.TB)) { benchPhase(t, rep, name, fn) }

	// 1-2. Local upload and download against a same-process baseline.
	phase("transfers, local", func(t testing.TB) {
		pdir := filepath.Join(dir, "xfer-local")
		env := startService(t, benchLocalYAML(pdir, ""))
		defer env.stop()
		base := baselineServer(t, pdir)
		benchUploadDownload(t, rep, env, "local", sz.upload, sz.transferRuns, func() { dropPageCache(t, pdir) }, nil, func(seed uint64) (time.Duration, time.Duration, cpuUse) {
			u := timedPUT(t, base+"/up", "", newPattern(seed, sz.upload), sz.upload)
			c0 := cpuNow(t, nil)
			d := timedGET(t, base+"/down", "", sz.upload)
			return u, d, cpuNow(t, nil).sub(c0)
		})
	})
	// 3. S3: versitygw and Ceph RGW, through artifactstore vs direct.
	for _, name := range []string{"versitygw", "ceph"} {
		phase("transfers, "+name, func(t testing.TB) {
			srv := benchS3Server(t, name)
			bucket := srv.NewBucket(t)
			s3cfg := fmt.Sprintf("data_dir: %s/data-%s\nserver:\n  max_body_bytes: 21474836480\nbackends:\n%srouting:\n  default: %s\nverify:\n  deep:\n    interval: 0s\n  quick:\n    interval: 0s\n",
				dir, srv.Name, strings.ReplaceAll(s3BackendYAML(srv.Name, bucket), "multipart_threshold_bytes: 8388608\n    multipart_chunk_bytes: 5242880", "multipart_threshold_bytes: 16777216\n    multipart_chunk_bytes: 16777216"), srv.Name)
			senv := startService(t, s3cfg)
			defer senv.stop()
			core := srv.Client(t)
			pids := serverPIDs(srv.Name)
			benchUploadDownload(t, rep, senv, srv.Name, sz.s3Object, sz.transferRuns, nil, pids, func(seed uint64) (time.Duration, time.Duration, cpuUse) {
				key := fmt.Sprintf("direct/%d", seed)
				start := time.Now()
				_, err := core.Client.PutObject(context.Background(), bucket.Bucket, key, newPattern(seed, sz.s3Object), sz.s3Object,
					minio.PutObjectOptions{PartSize: 16 << 20, ContentType: "application/octet-stream"})
				if err != nil {
					t.Fatal(err)
				}
				u := time.Since(start)
				c0 := cpuNow(t, pids)
				start = time.Now()
				obj, err := core.Client.GetObject(context.Background(), bucket.Bucket, key, minio.GetObjectOptions{})
				if err != nil {
					t.Fatal(err)
				}
				// plainWriter: io.Discard's ReadFrom would ignore the buffer
				// and read 8 KiB at a time.
				if n, err := io.CopyBuffer(plainWriter{io.Discard}, obj, make([]byte, 1<<20)); err != nil || n != sz.s3Object {
					t.Fatalf("direct read of %s: %d bytes, %v", key, n, err)
				}
				obj.Close()
				d := time.Since(start)
				c := cpuNow(t, pids).sub(c0)
				core.RemoveObject(context.Background(), bucket.Bucket, key, minio.RemoveObjectOptions{})
				return u, d, c
			})
		})
	}
	// 3b. Concurrent downloads from Ceph RGW, redirected vs proxied (bench_direct_test.go).
	phase("direct downloads, ceph", func(t testing.TB) { benchDirect(t, rep, dir, benchS3Server(t, "ceph"), sz, runs) })
	// 3c. Storage migration from Ceph RGW to local vs a direct copy (bench_migrate_test.go).
	phase("migration, ceph -> local", func(t testing.TB) {
		benchMigrate(t, rep, dir, benchS3Server(t, "ceph"), sz.migrateObjects, sz.migrateSize, runs)
	})
	// 4. Verification throughput vs raw sha256 of the same files.
	phase("deep verification", func(t testing.TB) {
		env := startService(t, benchLocalYAML(filepath.Join(dir, "verify"), ""))
		defer env.stop()
		benchVerify(t, rep, env, sz.verifyTotal, runs)
	})
	phase("verified downloads", func(t testing.TB) { benchVerifiedReads(t, rep, dir, sz.s3Object, runs) }) // bench_integrity_test.go
	// 5. Publish rate of small packages from 32 producers, then the same
	// with a webhook to a blackholed receiver (bench_webhook_test.go).
	phase("publish rate", func(t testing.TB) {
		env := startService(t, benchLocalYAML(filepath.Join(dir, "publish"), ""))
		defer env.stop()
		benchPublishRate(t, rep, env, sz.publishes, sz.publishRounds)
	})
	phase("publish rate with a webhook", func(t testing.TB) {
		env := startService(t, benchLocalYAML(filepath.Join(dir, "webhook"), ""))
		defer env.stop()
		benchWebhookPublish(t, rep, env, sz.publishes, sz.publishRounds)
	})
	// 6. The store at scale: a million packages with distinct objects on
	// local, and a tenth of that on Ceph RGW.
	phase("store at scale", func(t testing.TB) {
		benchStoreAtScale(t, rep, dir, max(1000, int(float64(sz.scaleLocal)*scale)), benchS3Server(t, "ceph"), max(300, int(float64(sz.scaleS3)*scale)))
	})
	// 7. Peak RSS of a large streaming upload.
	phase("peak RSS", func(t testing.TB) { benchRSS(t, rep, dir, sz.rssUpload) })
	// 8. Every page of the web interface at a tenth of the packages.
	phase("web interface pages", func(t testing.TB) { benchUI(t, rep, dir, sz.scaleLocal/10) })
}

// benchS3Server is the test S3 server of that name (versitygw, ceph);
// without it the phase fails.
func benchS3Server(t testing.TB, name string) s3test.Server {
	for _, srv := range s3test.Servers(t) {
		if srv.Name == name {
			return srv
		}
	}
	t.Fatalf("the %s server does not run (. /tmp/artifactstore-s3/env.sh)", name)
	return s3test.Server{}
}

// benchLocalYAML is the configuration of a bench service under dir: one
// local backend in dir/objects, bodies up to 20 GiB, scheduled
// verification off (no run disturbs a measurement); verifyExtra adds
// lines to the verify section.
func benchLocalYAML(dir, verifyExtra string) string {
	return fmt.Sprintf("data_dir: %s/data\nserver:\n  max_body_bytes: 21474836480\nbackends:\n  local:\n    type: local\n    path: %s/objects\n    key_prefix: artifacts\nrouting:\n  default: local\nverify:\n%s  deep:\n    interval: 0s\n  quick:\n    interval: 0s\n",
		dir, dir, verifyExtra)
}

func benchVerify(t testing.TB, rep *benchReport, env *testEnv, total int64, runs int) {
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
	// Baselines: sha256 of the same files from the page cache, on one
	// goroutine and on two (each taking the next file, like the engine's
	// workers): the second says what this machine's two cores give at all
	// while the run measures, so a concurrency-2 figure below 2x of one
	// core can be told apart from a serialization point in the engine.
	hashAll := func(workers int) time.Duration {
		start := time.Now()
		next := make(chan string)
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 1<<20)
				for p := range next {
					f, err := os.Open(p)
					if err != nil {
						t.Error(err)
						continue
					}
					// plainReader: an *os.File's WriteTo would ignore buf and
					// read 32 KiB at a time.
					io.CopyBuffer(sha256.New(), plainReader{f}, buf)
					f.Close()
				}
			}()
		}
		for _, p := range paths {
			next <- p
		}
		close(next)
		wg.Wait()
		return time.Since(start)
	}
	hashAll(1) // warm the page cache for both sides
	only := func(conc int) float64 {
		eng := verify.New(env.svc.Store, map[string]backends.Backend{"local": env.svc.Backends["local"]}, verify.Options{Concurrency: conc})
		start := time.Now()
		rep, err := eng.Run(context.Background(), "local", store.ModeDeep, verify.Hooks{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.BytesRead < per*files {
			t.Fatalf("verified %d bytes, want at least %d", rep.BytesRead, per*files)
		}
		// The run re-reads everything the registry holds, including files
		// from earlier measurements: the rate of the bytes actually read.
		return float64(rep.BytesRead) / time.Since(start).Seconds()
	}
	// Interleaved rounds: one goroutine, the engine at concurrency 1, two
	// goroutines, the engine at concurrency 2.
	var raw1, raw2, ours1, ours2 []float64
	for r := 0; r < max(runs, 1); r++ {
		raw1 = append(raw1, float64(per*files)/hashAll(1).Seconds())
		ours1 = append(ours1, only(1))
		raw2 = append(raw2, float64(per*files)/hashAll(2).Seconds())
		ours2 = append(ours2, only(2))
	}
	mbs := func(xs []float64) string {
		out := make([]float64, len(xs))
		for i, x := range xs {
			out[i] = x / 1e6
		}
		return floats(out, "%.0f")
	}
	note := fmt.Sprintf("%d MiB in %d files, page cache warm, no byte budget; median of %d interleaved rounds", per*files>>20, files, len(raw1))
	machine := medianF(ratiosOf(raw2, raw1))
	add := func(name string, ours, base []float64, baseName string, target float64, extra string) {
		ratio := medianF(ratiosOf(ours, base))
		rep.add(benchRow{Name: name, Ours: fmt.Sprintf("%.0f MB/s", medianF(ours)/1e6),
			Baseline: fmt.Sprintf("%.0f MB/s (%s)", medianF(base)/1e6, baseName), Ratio: ratioText(ratio),
			Target: fmt.Sprintf(">= %.2f", target), Verdict: verdict(ratio >= target),
			Note: fmt.Sprintf("%s; ratios %s; ours %s MB/s, baseline %s MB/s%s", note, floats(ratiosOf(ours, base), "%.2f"), mbs(ours), mbs(base), extra)})
	}
	add("deep verification, concurrency 1", ours1, raw1, "sha256 of the same files, 1 core", 0.90, "")
	add("deep verification, concurrency 2", ours2, raw1, "sha256 of the same files, 1 core", 1.60,
		fmt.Sprintf("; the same sha256 on 2 goroutines in the same rounds gave %.2fx of 1 core (%s MB/s): what two cores of this machine gave while it ran (next row)",
			machine, mbs(raw2)))
	add("deep verification, concurrency 2, vs sha256 on 2 goroutines", ours2, raw2, "sha256 of the same files, 2 goroutines taking the next file", 0.90, "")
}

// waitRecords waits until the record worker has written the manifest
// records of every package published so far (at most 5 minutes). A
// publish run starts and ends with it, so its own records count in its
// time and none are left to the next run.
func waitRecords(t testing.TB, env *testEnv) {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		n, err := env.svc.Store.RecordsPendingCount(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d manifest records still pending after 5 minutes", n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// benchPublishRate publishes 4 KiB single-file packages from 32 producers
// through both protocols, against the storage floor, in the given number
// of interleaved rounds of total packages each, and reports the median
// sustained rate (until the packages' manifest records are written) with
// every round's rate and the p99 latency of one publish.
func benchPublishRate(t testing.TB, rep *benchReport, env *testEnv, total, rounds int) {
	const producers = 32
	var failed atomic.Int64
	// run publishes total items with fn from 32 goroutines and returns the
	// wall time and every item's latency.
	run := func(fn func(i int64) error) (time.Duration, []time.Duration) {
		var next atomic.Int64
		lat := make([]time.Duration, total)
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
					s := time.Now()
					if err := fn(i); err != nil {
						failed.Add(1)
					}
					lat[i-1] = time.Since(s)
				}
			}()
		}
		wg.Wait()
		return time.Since(start), lat
	}
	staged := func(round int) func(i int64) error {
		stamp := fmt.Sprintf("%d-%d", time.Now().UnixNano(), round)
		return func(i int64) error {
			data := make([]byte, 4096)
			version := fmt.Sprintf("%s-%d", stamp, i)
			copy(data, version)
			sum := sha256.Sum256(data)
			sh := hex.EncodeToString(sum[:])
			br, err := env.c.Begin(context.Background(), client.Manifest{Name: "small", Version: version, Producer: "bench", RetentionClass: "bench",
				Files: []client.File{{Path: "f.bin", Size: 4096, SHA256: sh}}})
			if err != nil {
				return err
			}
			if err := env.c.Upload(context.Background(), br.UploadID, sh, 4096, bytes.NewReader(data)); err != nil {
				return err
			}
			_, _, err = env.c.Commit(context.Background(), br.UploadID)
			return err
		}
	}
	form := func(round int) func(i int64) error {
		stamp := fmt.Sprintf("form-%d-%d", time.Now().UnixNano(), round)
		return func(i int64) error { return benchFormPublish(env, "small", fmt.Sprintf("%s-%d", stamp, i)) }
	}
	// The floor: the same 32 writers each writing a 4 KiB file with fsync
	// and a durable bbolt commit, grouped the way bbolt's Batch groups them.
	floor := func(round int) func(i int64) error {
		bdir := t.TempDir()
		db, err := bolt.Open(filepath.Join(bdir, "b.db"), 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		db.MaxBatchDelay = time.Millisecond
		db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucketIfNotExists([]byte("b")); return err })
		return func(i int64) error {
			p := filepath.Join(bdir, strconv.FormatInt(i, 10))
			f, err := os.Create(p)
			if err != nil {
				return err
			}
			f.Write(make([]byte, 4096))
			f.Sync()
			f.Close()
			return db.Batch(func(tx *bolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte(p), []byte("x")) })
		}
	}
	// createCost is the mean wall time of creating one empty file in a new
	// directory, measured before every round. On ext4 without a journal
	// (this machine's root file system) it grows about ten-fold after many
	// recent deletions anywhere on the file system: the inode allocator
	// skips every free inode deleted in the last 60 s, or 360 s while its
	// inode-table block is dirty, one buffer lookup each
	// (docs/PERFORMANCE.md). That moves the floor and ours alike, so the
	// rows report it. The files stay until the phase ends: deleting them
	// would add to the effect.
	createCost := func() time.Duration {
		cdir := t.TempDir()
		const n = 1000
		s := time.Now()
		for i := range n {
			f, err := os.OpenFile(filepath.Join(cdir, strconv.Itoa(i)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		return time.Since(s) / n
	}
	// sustained runs a protocol's round and counts its time until the
	// manifest records of its packages are written too: the record worker
	// writes them after the replies, and a rate that left them behind
	// would not be sustainable (at the last reply a third of them may
	// still be pending). It also returns the rate of the replies alone and
	// how many records were pending at the last reply.
	sustained := func(fn func(i int64) error) (rate, replies float64, pending int, lat []time.Duration) {
		start := time.Now()
		d, lat := run(fn)
		pending, err := env.svc.Store.RecordsPendingCount(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		waitRecords(t, env)
		return float64(total) / time.Since(start).Seconds(), float64(total) / d.Seconds(), pending, lat
	}
	var stagedRates, formRates, floorRates, stagedReplies, formReplies []float64
	var stagedLat, formLat []time.Duration
	var creates, stagedPending, formPending []string
	for r := 0; r < rounds; r++ {
		// No measured run (the floor or ours) shares the device with a
		// tail of records (sustained leaves none; the floor writes none).
		waitRecords(t, env)
		creates = append(creates, fmt.Sprintf("%.0f", float64(createCost())/float64(time.Microsecond)))
		d, _ := run(floor(r))
		floorRates = append(floorRates, float64(total)/d.Seconds())
		rate, replies, pending, lat := sustained(staged(r))
		stagedRates, stagedReplies, stagedLat = append(stagedRates, rate), append(stagedReplies, replies), append(stagedLat, lat...)
		stagedPending = append(stagedPending, strconv.Itoa(pending))
		rate, replies, pending, lat = sustained(form(r))
		formRates, formReplies, formLat = append(formRates, rate), append(formReplies, replies), append(formLat, lat...)
		formPending = append(formPending, strconv.Itoa(pending))
	}
	if failed.Load() > 0 {
		t.Fatalf("%d publishes failed", failed.Load())
	}
	// What a store grown by publishes costs per package: every record of
	// the commit path, its events included. The figure is the pages the
	// database has allocated (its high-water mark: tables, free pages and
	// bbolt's own); the file is beside it, larger by what bbolt grew it
	// ahead of use (up to 16 MiB, a constant, not a cost per package).
	counts, err := env.svc.Store.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sp, err := env.svc.Store.Space(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := float64(counts["packages"])
	per := float64(sp.Allocated) / n
	var largest []string
	for _, tb := range sp.PerTable[:min(4, len(sp.PerTable))] {
		largest = append(largest, fmt.Sprintf("%s %.0f B (%.0f B of records)", tb.Name, float64(tb.Pages)/n, float64(tb.Records)/n))
	}
	rep.add(benchRow{Name: "database bytes per package, built by publishes", Ours: fmt.Sprintf("%.0f B", per),
		Baseline: fmt.Sprintf("%.0f B (records of one package in use, no page overhead)", float64(sp.Records)/n),
		Ratio:    fmt.Sprintf("%.2f", float64(sp.Records)/float64(sp.Allocated)), Target: "< 2 KiB", Verdict: verdict(per < 2048),
		Note: fmt.Sprintf("%d packages of one 4 KiB file published one by one (with %d events); ours: pages allocated (high-water mark) %.1f MiB = "+
			"tables %.0f B + free %.0f B + pending %.0f B + bbolt's own %.0f B a package; file %.1f MiB (%.0f B a package: bbolt grows it up to 16 MiB ahead of its pages); "+
			"largest tables a package: %s",
			counts["packages"], counts["events"], float64(sp.Allocated)/(1<<20),
			float64(sp.Tables)/n, float64(sp.Free)/n, float64(sp.Pending)/n, float64(sp.Own)/n,
			float64(sp.File)/(1<<20), float64(sp.File)/n, strings.Join(largest, ", "))})
	for _, v := range []struct {
		name, note     string
		rates, replies []float64
		lat            []time.Duration
		pending        []string
	}{
		{"publish rate, 4 KiB packages, 32 producers, staged protocol", "begin+upload+commit: 3 requests each", stagedRates, stagedReplies, stagedLat, stagedPending},
		{"publish rate, 4 KiB packages, 32 producers, one-request form", "one multipart POST each", formRates, formReplies, formLat, formPending},
	} {
		// The ratio of each round to its own floor, then the median.
		ratios := make([]float64, rounds)
		for i := range ratios {
			ratios[i] = v.rates[i] / floorRates[i]
		}
		rate := medianF(v.rates)
		rep.add(benchRow{Name: v.name, Ours: fmt.Sprintf("%.0f /s, p99 %s", rate, percentile(v.lat, 0.99).Round(100*time.Microsecond)),
			Baseline: fmt.Sprintf("%.0f /s (file write+fsync and a batched bbolt commit per item)", medianF(floorRates)), Ratio: fmt.Sprintf("%.2f", medianF(ratios)),
			Target: ">= 1500 /s (median)", Verdict: verdict(rate >= 1500),
			Note: fmt.Sprintf("median of %d interleaved rounds of %d packages, %s, durable before the reply; a round's time runs until its packages' manifest records are written too (the record worker writes them after the replies), and every round starts once those of the rounds before it are; "+
				"rounds: ours %s /s, floor %s /s, ratio %s; the replies alone %s /s, with %s records still pending at the last reply; one empty file's creation before each round %s us (about 20 us on this file system without recent deletions)",
				rounds, total, v.note, floats(v.rates, "%.0f"), floats(floorRates, "%.0f"), floats(ratios, "%.2f"),
				floats(v.replies, "%.0f"), strings.Join(v.pending, ", "), strings.Join(creates, ", "))})
	}
}

// inUsePerPackage is the bytes of keys and values in use in every bbolt bucket,
// per package: the floor of any page layout.
func inUsePerPackage(t testing.TB, st *store.Store, pkgs int) float64 {
	var inuse int
	st.DB().View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error {
			s := b.Stats()
			inuse += s.LeafInuse + s.InlineBucketInuse
			return nil
		})
	})
	return float64(inuse) / float64(pkgs)
}

func medianF(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[(len(s)-1)/2]
}

func floats(xs []float64, format string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(parts, ", ")
}

func percentile(ds []time.Duration, p float64) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[int(float64(len(ds)-1)*p)]
}

// benchRSS streams one large upload into a serve process and reads its
// peak RSS (VmHWM), against the baseline receiver in a process of its own
// receiving the same bytes at the same time (side by side, to halve the
// wall time: the peak RSS of a streaming receiver does not depend on its
// speed, the rates in the note do).
func benchRSS(t testing.TB, rep *benchReport, dir string, size int64) {
	rdir := filepath.Join(dir, "rss")
	p := startProc(t, benchLocalConfigFile(t, rdir))
	c := clientFor(p)
	seed := uint64(42)
	sum := patternSHA(seed, size)
	br, err := c.Begin(context.Background(), client.Manifest{Name: "rss", Version: "1", Producer: "bench", RetentionClass: "bench",
		Files: []client.File{{Path: "huge.bin", Size: size, SHA256: sum}}})
	if err != nil {
		t.Fatal(err)
	}
	// The baseline receiver, as its own process: this test binary re-run
	// in baseline-server mode.
	cmd := exec.Command(os.Args[0], "-test.run=^TestBaselineReceiverProcess$")
	cmd.Env = append(os.Environ(), "ARTIFACTSTORE_BASELINE_DIR="+rdir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		os.Remove(filepath.Join(rdir, "baseline.bin"))
	}()
	var url string
	fmt.Fscanln(out, &url)
	var bd time.Duration
	baseDone := make(chan error, 1)
	go func() {
		var err error
		bd, err = putTimed(url+"/up", "", newPattern(seed, size), size)
		baseDone <- err
	}()
	d := timedPUT(t, p.url+"/v1/uploads/"+br.UploadID+"/blobs/sha256:"+sum, p.token, newPattern(seed, size), size)
	ours := vmHWM(t, p.cmd.Process.Pid)
	if err := <-baseDone; err != nil {
		t.Fatalf("baseline receiver: %v", err)
	}
	base := vmHWM(t, cmd.Process.Pid)
	if _, _, err := c.Commit(context.Background(), br.UploadID); err != nil {
		t.Fatal(err)
	}
	p.stop(t)
	os.RemoveAll(filepath.Join(rdir, "objects"))
	rep.add(benchRow{Name: "peak RSS, streaming upload, local", Ours: fmt.Sprintf("%d MiB", ours>>20), Baseline: fmt.Sprintf("%d MiB (baseline receiver process)", base>>20),
		Ratio: fmt.Sprintf("%.2f", float64(base)/float64(ours)), Target: "< 100 MiB", Verdict: verdict(ours < 100<<20),
		Note: fmt.Sprintf("%d MiB upload at %.0f MB/s (baseline %.0f MB/s; the two uploads ran side by side); S3 (not measured here): up to multipart_parts_in_flight x multipart_chunk_bytes buffered per upload (default 2 x 16 MiB)", size>>20, mbps(size, d), mbps(size, bd))})
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

// benchRuns is how many interleaved runs a transfer or rate row takes the
// median of (the spread of all of them is listed).
const benchRuns = 3

// BenchmarkReport runs every measurement once at full size, prints each row
// as it is measured, then the table and the time of every phase and, with
// ARTIFACTSTORE_BENCH_REPORT=FILE, writes them there. A failed phase or a
// missing row fails the run after the table is printed and written.
func BenchmarkReport(b *testing.B) {
	rep := &benchReport{progress: os.Stdout, started: time.Now()}
	load := loadAverage()
	runBenchmarks(b, fullSizes, rep, benchRuns)
	check := checkReport(rep)
	if check != nil {
		b.Errorf("incomplete report:\n%v", check)
	}
	table := rep.table()
	fmt.Println(table)
	fmt.Println(rep.phaseTable())
	if out := os.Getenv("ARTIFACTSTORE_BENCH_REPORT"); out != "" {
		writePerformanceDoc(b, out, rep, load, check)
	}
}

// benchRowsRequired names every row `make bench` must print (a prefix of
// the row name); the S3 rows are required when the servers run (always in
// CI).
var benchRowsRequired = []string{
	"upload, local", "download, local", "upload, versitygw", "download, versitygw", "upload, ceph", "download, ceph",
	"concurrent downloads, ceph, redirect vs proxy", "service CPU per GB served, ceph, redirect vs proxy",
	"deep verification, concurrency 1", "deep verification, concurrency 2", "deep verification, concurrency 2, vs sha256 on 2 goroutines",
	"publish rate, 4 KiB packages, 32 producers, staged protocol", "publish rate, 4 KiB packages, 32 producers, one-request form",
	"database bytes per package, built by publishes",
	"/metrics scrape p99, local", "/v1/health p99, local", "lookup name@version p99, local",
	"list page of 100 by name p99, local", "list page of 100 by producer p99, local", "list page of 100 by label p99, local",
	"deep verification of small objects, local", "quick verification of small objects, local", "HEAD of a blob, 32 connections, local",
	"start-up to ready, local", "database bytes per package, local",
	"/metrics scrape p99, ceph", "/v1/health p99, ceph", "lookup name@version p99, ceph", "list page of 100 by label p99, ceph",
	"deep verification of small objects, ceph", "quick verification of small objects, ceph", "start-up to ready, ceph",
	"peak RSS, streaming upload, local", "storage migration, ceph -> local",
}

// checkReport fails when a phase failed, a required row is missing or a
// row's ratio is not a finite number; it names every such row.
func checkReport(rep *benchReport) error {
	var errs []error
	names := map[string]bool{}
	for _, row := range rep.rows {
		names[row.Name] = true
		if strings.HasPrefix(row.Name, "FAILED: ") {
			errs = append(errs, fmt.Errorf("phase %q failed", strings.TrimPrefix(row.Name, "FAILED: ")))
			continue
		}
		r, err := strconv.ParseFloat(row.Ratio, 64)
		if err != nil || math.IsNaN(r) || math.IsInf(r, 0) {
			errs = append(errs, fmt.Errorf("row %q: ratio %q is not a number", row.Name, row.Ratio))
		}
		if row.Verdict == "" || row.Target == "" || row.Note == "" {
			errs = append(errs, fmt.Errorf("row %q lacks a target, verdict or note", row.Name))
		}
	}
	for _, want := range benchRowsRequired {
		if !names[want] {
			errs = append(errs, fmt.Errorf("row %q is missing", want))
		}
	}
	return errors.Join(errs...)
}

// TestBenchHarnessSmoke runs every measurement with tiny sizes: it proves
// the harness works (every row present, every ratio a number), not the
// performance.
func TestBenchHarnessSmoke(t *testing.T) {
	rep := &benchReport{}
	runBenchmarks(t, smokeSizes, rep, 1)
	if err := checkReport(rep); err != nil {
		t.Fatalf("%v\n%s", err, rep.table())
	}
	t.Logf("smoke figures (tiny sizes, not meaningful):\n%s", rep.table())
}

// The report check itself fails on a missing row and on a ratio that is
// not a number.
func TestBenchReportCheck(t *testing.T) {
	full := &benchReport{}
	for _, name := range benchRowsRequired {
		full.add(benchRow{Name: name, Ratio: "1.00", Target: "x", Verdict: "met", Note: "n"})
	}
	if err := checkReport(full); err != nil {
		t.Fatalf("complete report rejected: %v", err)
	}
	missing := &benchReport{rows: full.rows[1 : len(full.rows)-1]}
	err := checkReport(missing)
	if err == nil {
		t.Fatal("a report without a required row passed")
	}
	// Every missing row is named, not only the first.
	for _, name := range []string{benchRowsRequired[0], benchRowsRequired[len(benchRowsRequired)-1]} {
		if !strings.Contains(err.Error(), name) {
			t.Fatalf("the check does not name the missing row %q: %v", name, err)
		}
	}
	// A failed phase fails the report even when its rows are all there.
	failed := &benchReport{rows: append([]benchRow(nil), full.rows...)}
	failed.add(benchRow{Name: "FAILED: store at scale, ceph", Ratio: "-", Target: "-", Verdict: "FAILED", Note: "n"})
	if err := checkReport(failed); err == nil || !strings.Contains(err.Error(), "store at scale, ceph") {
		t.Fatalf("a report with a failed phase: %v", err)
	}
	for _, bad := range []string{"NaN", "+Inf", "", "n/a"} {
		r := &benchReport{rows: append([]benchRow(nil), full.rows...)}
		r.rows[3].Ratio = bad
		if err := checkReport(r); err == nil {
			t.Fatalf("ratio %q passed", bad)
		}
	}
}

// TestRatioText: a ratio judged against a two-decimal target never prints
// above what was judged, so the table cannot show the target's figure
// next to NOT met.
func TestRatioText(t *testing.T) {
	for x, want := range map[float64]string{0.898: "0.89", 0.8999999: "0.89", 0.9: "0.90", 0.7: "0.70", 1: "1.00", 1.0049: "1.00", 0.29: "0.29", 383.4: "383.40"} {
		if got := ratioText(x); got != want {
			t.Errorf("ratioText(%v) = %s, want %s", x, got, want)
		}
		if v, _ := strconv.ParseFloat(ratioText(x), 64); v > x {
			t.Errorf("ratioText(%v) = %s prints more than the ratio", x, ratioText(x))
		}
	}
	if got := ratioText(math.NaN()); got != "NaN" {
		t.Errorf("ratioText(NaN) = %s: the report check must still see a ratio that is not a number", got)
	}
}

// writePerformanceDoc puts the table (with the machine, the date, the load
// average, the time of every phase and, for an incomplete run, what is
// missing) between the bench markers of path, keeping the rest of the
// document (the findings written by people); a missing file gets a
// skeleton.
func writePerformanceDoc(t testing.TB, path string, rep *benchReport, loadBefore string, check error) {
	const start, end = "<!-- bench:start -->", "<!-- bench:end -->"
	scale := "`make bench`"
	if v := os.Getenv("BENCH_SCALE"); v != "" {
		scale = "`BENCH_SCALE=" + v + " make bench`"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\nMeasured on %s (%d cores, %s), %s, with\n%s (`go test -run '^$' -bench '^BenchmarkReport$' -benchtime 1x ./app`; run %s-%s UTC, %s; load average (1, 5, 15 min) %s at the start, %s at the end).\n\n",
		start, cpuModel(), runtime.NumCPU(), runtime.Version(), time.Now().UTC().Format("2006-01-02 15:04 UTC"), scale,
		rep.started.UTC().Format("15:04"), time.Now().UTC().Format("15:04"), time.Since(rep.started).Round(time.Second), loadBefore, loadAverage())
	if check != nil {
		fmt.Fprintf(&b, "**INCOMPLETE RUN**: %s\n\n", strings.ReplaceAll(check.Error(), "\n", "; "))
	}
	b.WriteString(rep.table())
	b.WriteString("\nTime of each phase of this run:\n\n")
	b.WriteString(rep.phaseTable())
	b.WriteString(end)
	old, err := os.ReadFile(path)
	doc := "# Performance\n\n" + b.String() + "\n"
	if err == nil {
		s := string(old)
		i, j := strings.Index(s, start), strings.Index(s, end)
		if i >= 0 && j > i {
			doc = s[:i] + b.String() + s[j+len(end):]
		}
	}
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
}

// benchFormPublish publishes name@version (one distinct 4 KiB file) in
// one multipart form request and expects 201.
func benchFormPublish(env *testEnv, name, version string) error {
	data := make([]byte, 4096)
	copy(data, version)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormField("manifest")
	fmt.Fprintf(fw, `{"name":%q,"version":%q,"producer":"bench","retention_class":"bench"}`, name, version)
	part, _ := mw.CreateFormFile("file", "f.bin")
	part.Write(data)
	mw.Close()
	req, err := http.NewRequest(http.MethodPost, env.url+"/v1/packages", &buf)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+env.token)
	resp, err := env.c.HTTP.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("form publish: %d", resp.StatusCode)
	}
	return nil
}
