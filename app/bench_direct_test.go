package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"artifactstore/backends/s3/s3test"
	"artifactstore/internal/client"
)

// benchDirectDownloads measures concurrent whole-file downloads from Ceph
// RGW through the service as its own process, proxied (direct downloads
// off) and redirected to the storage service (direct downloads on, every
// location verified by a real deep run first). Both modes serve the same
// database and objects; only the config key differs, and each round
// starts a fresh process of each mode, interleaved. Reported: aggregate
// throughput at `conc` concurrent downloads, and the service process's
// CPU time (user+system from /proc) per GB served.
func benchDirectDownloads(t testing.TB, rep *benchReport, dir string, srv s3test.Server, size int64, conc, runs int) {
	ddir := filepath.Join(dir, "direct")
	os.MkdirAll(ddir, 0o750)
	bucket := srv.NewBucket(t)
	backend := strings.ReplaceAll(s3BackendYAML(srv.Name, bucket), "multipart_threshold_bytes: 8388608\n    multipart_chunk_bytes: 5242880",
		"multipart_threshold_bytes: 16777216\n    multipart_chunk_bytes: 16777216")
	base := fmt.Sprintf("data_dir: %s/data\nserver:\n  max_body_bytes: 21474836480\nverify:\n  concurrency: 4\n  bytes_per_second: 0\n  deep:\n    interval: 0s\n  quick:\n    interval: 0s\nrouting:\n  default: %s\nbackends:\n%s", ddir, srv.Name, backend)
	cfgs := map[bool]string{false: filepath.Join(ddir, "proxy.yaml"), true: filepath.Join(ddir, "redirect.yaml")}
	os.WriteFile(cfgs[false], []byte(base), 0o600)
	os.WriteFile(cfgs[true], []byte(base+"    direct_downloads: true\n    direct_max_verified_age: 1h\n"), 0o600)

	// Distinct objects, one per concurrent download, published and deep-verified once.
	p := startProc(t, cfgs[false])
	c := clientFor(p)
	ctx := context.Background()
	// Published concurrently (the storage service takes parallel uploads
	// faster than one after another); not measured.
	paths := make([]string, conc)
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seed := uint64(7000 + i)
			sum := patternSHA(seed, size)
			v := fmt.Sprint(i)
			br, err := c.Begin(ctx, client.Manifest{Name: "bench-direct", Version: v, Producer: "bench", RetentionClass: "bench",
				Files: []client.File{{Path: "big.bin", Size: size, SHA256: sum}}})
			if err == nil {
				err = c.Upload(ctx, br.UploadID, sum, size, newPattern(seed, size))
			}
			if err == nil {
				_, _, err = c.Commit(ctx, br.UploadID)
			}
			if err != nil {
				errs <- fmt.Errorf("publishing file %d of the direct download bench: %w", i, err)
			}
			paths[i] = client.FilePath("bench-direct", v, "big.bin")
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, p.url+"/v1/admin/verify?backend="+srv.Name+"&mode=deep", nil)
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	report, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(report), `"type":"report"`) || strings.Contains(string(report), `"type":"error"`) {
		t.Fatalf("deep verification before the direct download bench: %s", report)
	}
	p.stop(t)

	type result struct{ wall, cpu time.Duration }
	round := func(redirect bool) result {
		p := startProc(t, cfgs[redirect])
		defer p.stop(t)
		c := clientFor(p)
		cpu0 := procCPU(t, p.cmd.Process.Pid)
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, conc)
		for _, path := range paths {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := c.Get(ctx, path, nil) // follows a redirect without sending the token there
				if err != nil {
					errs <- err
					return
				}
				defer resp.Body.Close()
				n, err := io.CopyBuffer(plainWriter{io.Discard}, resp.Body, make([]byte, 1<<20))
				redirected := resp.Request.Response != nil
				if err != nil || resp.StatusCode != 200 || n != size || redirected != redirect {
					errs <- fmt.Errorf("GET %s (redirect mode %v): status %d, %d bytes, redirected %v, %v", path, redirect, resp.StatusCode, n, redirected, err)
				}
			}()
		}
		wg.Wait()
		wall := time.Since(start)
		cpu := procCPU(t, p.cmd.Process.Pid) - cpu0
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		return result{wall, cpu}
	}
	var proxied, redirected []result
	for i := 0; i < runs; i++ {
		proxied = append(proxied, round(false))
		redirected = append(redirected, round(true))
	}
	total := size * int64(conc)
	gb := float64(total) / 1e9
	walls := func(rs []result) []time.Duration {
		out := make([]time.Duration, len(rs))
		for i, r := range rs {
			out[i] = r.wall
		}
		return out
	}
	cpuPerGB := func(rs []result) []float64 {
		out := make([]float64, len(rs))
		for i, r := range rs {
			// /proc counts in 10 ms ticks: an idle service reads as at
			// most one tick, never zero (a ratio must stay a number).
			out[i] = max(r.cpu, 10*time.Millisecond).Seconds() / gb
		}
		return out
	}
	// Each redirected round is paired with the proxied round just before it.
	pairs := pairedRuns{ours: walls(redirected), base: walls(proxied)}
	mp, mr := medianD(pairs.base), medianD(pairs.ours)
	ratio := pairs.ratio()
	note := fmt.Sprintf("%d concurrent GETs of %d distinct %d MiB files (%.2f GB a round) from %s through `artifactstore serve` as its own process; redirect: 307 to the storage service's time-limited URL, followed by the client without its token; median of the ratios of %d interleaved rounds, each a fresh process; ratios %s; redirect %s MB/s, proxied %s MB/s",
		conc, conc, size>>20, gb, srv.Name, runs, floats(pairs.ratios(), "%.2f"), rates(total, walls(redirected)), rates(total, walls(proxied)))
	rep.add(benchRow{Name: fmt.Sprintf("concurrent downloads, %s, redirect vs proxy", srv.Name),
		Ours: fmt.Sprintf("%.0f MB/s", mbps(total, mr)), Baseline: fmt.Sprintf("%.0f MB/s (same service proxying)", mbps(total, mp)),
		Ratio: ratioText(ratio), Target: ">= 1.00", Verdict: verdict(ratio >= 1), Note: note})
	cr, cp := medianF(cpuPerGB(redirected)), medianF(cpuPerGB(proxied))
	rep.add(benchRow{Name: fmt.Sprintf("service CPU per GB served, %s, redirect vs proxy", srv.Name),
		Ours: fmt.Sprintf("%.3f CPU-s/GB", cr), Baseline: fmt.Sprintf("%.3f CPU-s/GB (proxying)", cp),
		Ratio: fmt.Sprintf("%.1f", cp/cr), Target: ">= 10 (x less CPU)", Verdict: verdict(cp/cr >= 10),
		Note: fmt.Sprintf("user+system CPU of the service process over the downloads (/proc, 10 ms ticks; an idle process counts as one tick); redirect %s, proxied %s CPU-s/GB", floats(cpuPerGB(redirected), "%.3f"), floats(cpuPerGB(proxied), "%.3f"))})
}

// procCPU is a process's user+system CPU time so far (/proc/PID/stat
// fields 14 and 15, in clock ticks of 10 ms).
func procCPU(t testing.TB, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// cpuUse is CPU time spent so far, or over an interval: by this process
// (getrusage, microseconds) and by the storage server's processes (/proc,
// 10 ms ticks).
type cpuUse struct{ self, server time.Duration }

func cpuNow(t testing.TB, serverPIDs []int) cpuUse {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	u := cpuUse{self: time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
	for _, pid := range serverPIDs {
		u.server += procCPU(t, pid)
	}
	return u
}

func (u cpuUse) sub(v cpuUse) cpuUse { return cpuUse{u.self - v.self, u.server - v.server} }

// serverPIDs finds the processes of the S3 server named (as s3test names
// it) by their command names: versitygw; Ceph RGW with its OSD and
// monitor. None for another server (its CPU is then not reported).
func serverPIDs(name string) []int {
	comms := map[string][]string{"versitygw": {"versitygw"}, "ceph": {"radosgw", "ceph-osd", "ceph-mon"}}[name]
	var pids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/comm")
		if err == nil && slices.Contains(comms, strings.TrimSpace(string(b))) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// benchDirect runs benchDirectDownloads on srv (Ceph RGW): 8 concurrent
// files of the S3 object size times BENCH_SCALE (at least 8 MiB), 4 in the
// smoke run, at most 3 rounds.
func benchDirect(t testing.TB, rep *benchReport, dir string, srv s3test.Server, sz benchSizes, runs int) {
	size := max(8<<20, int64(float64(sz.s3Object)*benchScale(t)))
	conc := 8
	if sz.s3Object <= smokeSizes.s3Object {
		conc = 4
	}
	benchDirectDownloads(t, rep, dir, srv, size, conc, min(runs, 3))
}
