package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"artifactstore/backends"
	"artifactstore/backends/s3/s3test"
	"artifactstore/internal/digest"
	"artifactstore/internal/verify"
	"artifactstore/store"
)

// corrupter damages stored objects behind the registry's back.
type corrupter struct {
	flip     func(t *testing.T, d digest.Digest) // flip one byte
	truncate func(t *testing.T, d digest.Digest) // drop the second half
	remove   func(t *testing.T, d digest.Digest)
}

func localCorrupter(root string) corrupter {
	path := func(d digest.Digest) string {
		return filepath.Join(root, filepath.FromSlash(backends.ObjectKey("artifacts", d)))
	}
	return corrupter{
		flip: func(t *testing.T, d digest.Digest) {
			b, err := os.ReadFile(path(d))
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x01
			os.WriteFile(path(d), b, 0o640)
		},
		truncate: func(t *testing.T, d digest.Digest) {
			fi, err := os.Stat(path(d))
			if err != nil {
				t.Fatal(err)
			}
			os.Truncate(path(d), fi.Size()/2)
		},
		remove: func(t *testing.T, d digest.Digest) { os.Remove(path(d)) },
	}
}

func s3Corrupter(srv s3test.Server, bucket string) corrupter {
	rewrite := func(t *testing.T, d digest.Digest, change func([]byte) []byte) {
		c := srv.Client(t)
		key := backends.ObjectKey("artifacts", d)
		rc, _, _, err := c.GetObject(context.Background(), bucket, key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		buf.ReadFrom(rc)
		rc.Close()
		b := change(buf.Bytes())
		if _, err := c.Client.PutObject(context.Background(), bucket, key, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return corrupter{
		flip: func(t *testing.T, d digest.Digest) {
			rewrite(t, d, func(b []byte) []byte { b[len(b)/2] ^= 0x01; return b })
		},
		truncate: func(t *testing.T, d digest.Digest) {
			rewrite(t, d, func(b []byte) []byte { return b[:len(b)/2] })
		},
		remove: func(t *testing.T, d digest.Digest) {
			if err := srv.Client(t).RemoveObject(context.Background(), bucket, backends.ObjectKey("artifacts", d), minio.RemoveObjectOptions{}); err != nil {
				t.Fatal(err)
			}
		},
	}
}

func TestVerifyLocal(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte(strings.ReplaceAll(localConfig, "@DIR@", dir)+verifyTestConfig), 0o600)
	runVerifyAcceptance(t, cfg, "local", localCorrupter(filepath.Join(dir, "objects")))
}

func TestVerifyS3(t *testing.T) {
	for _, srv := range s3test.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			dir := t.TempDir()
			bucket := srv.NewBucket(t)
			cfg := filepath.Join(dir, "config.yaml")
			os.WriteFile(cfg, []byte("data_dir: "+dir+"/data\nbackends:\n"+s3BackendYAML(srv.Name, bucket)+"routing:\n  default: "+srv.Name+"\n"+verifyTestConfig), 0o600)
			runVerifyAcceptance(t, cfg, srv.Name, s3Corrupter(srv, bucket.Bucket))
		})
	}
}

// The schedules are off so only the test starts runs.
const verifyTestConfig = "verify:\n  deep:\n    interval: 0s\n  quick:\n    interval: 0s\n"

type verifyOutput struct {
	Mode    string           `json:"mode"`
	Remote  bool             `json:"remote"`
	Reports []*verify.Report `json:"reports"`
}

func failureSet(r *verify.Report) []string {
	var out []string
	for _, f := range r.Failures {
		out = append(out, f.Verdict+" "+f.Digest)
	}
	sort.Strings(out)
	return out
}

// runVerifyAcceptance: flip a byte of one object, truncate a second, delete
// a third; verify reports exactly mismatch, mismatch, missing and verified
// for the rest, and events, health document and metrics agree. The run
// through a serving process and the offline run give the same report.
func runVerifyAcceptance(t *testing.T, cfgFile, backend string, c corrupter) {
	p := startProc(t, cfgFile)
	cl := clientFor(p)
	files := map[string][]byte{}
	for i := 0; i < 8; i++ {
		files[fmt.Sprintf("f%d.bin", i)] = randBytes(uint64(900+i), 100<<10+i)
	}
	publish(t, cl, manifestOf("verified", "1", "ci", "release", files), files)
	d := func(name string) digest.Digest { return digest.FromBytes(files[name]) }
	c.flip(t, d("f1.bin"))
	c.truncate(t, d("f2.bin"))
	c.remove(t, d("f3.bin"))
	want := []string{"mismatch " + d("f1.bin").String(), "mismatch " + d("f2.bin").String(), "missing " + d("f3.bin").String()}
	sort.Strings(want)

	// Online: the CLI reaches the running service over the admin socket.
	start := time.Now()
	code, out, errOut := runCLI(t, "verify", "--config", cfgFile, "--json")
	if code != exitFailures {
		t.Fatalf("online verify: exit %d, want %d\n%s\n%s", code, exitFailures, out, errOut)
	}
	if time.Since(start) > time.Minute {
		t.Fatalf("online verify took %s", time.Since(start))
	}
	var online verifyOutput
	if err := json.Unmarshal([]byte(out), &online); err != nil || !online.Remote || len(online.Reports) != 1 {
		t.Fatalf("online output: %v remote=%v\n%s", err, online.Remote, out)
	}
	r := online.Reports[0]
	if got := failureSet(r); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("failures = %v, want %v", got, want)
	}
	if r.Checked != 8 || r.ByVerdict["verified"] != 5 || r.ByVerdict["mismatch"] != 2 || r.ByVerdict["missing"] != 1 {
		t.Fatalf("report = %+v", r.RunSummary)
	}
	if r.Orphans != 0 {
		t.Fatalf("orphans = %d", r.Orphans)
	}

	// Events: one location_verified per location with its verdict, and a
	// location_failed for each failure.
	evs, err := cl.Events(ctxT(t), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	verdicts := map[string]string{}
	var failedEvents []string
	for _, e := range evs {
		var v store.Verdict
		json.Unmarshal(e.Data, &v)
		switch e.Type {
		case store.EventLocationVerified:
			verdicts[v.Digest] = v.Verdict
		case store.EventLocationFailed:
			failedEvents = append(failedEvents, v.Verdict+" "+v.Digest)
		}
	}
	sort.Strings(failedEvents)
	if len(verdicts) != 8 || strings.Join(failedEvents, ",") != strings.Join(want, ",") {
		t.Fatalf("events: %d verified events, failed events %v", len(verdicts), failedEvents)
	}
	for name := range files {
		v := verdicts[d(name).String()]
		switch name {
		case "f1.bin", "f2.bin":
			if v != "mismatch" {
				t.Fatalf("%s event verdict %s", name, v)
			}
		case "f3.bin":
			if v != "missing" {
				t.Fatalf("%s event verdict %s", name, v)
			}
		default:
			if v != "verified" {
				t.Fatalf("%s event verdict %s", name, v)
			}
		}
	}

	// Health document: degraded, three failed locations, last run recorded.
	resp, body := get(t, cl, "/v1/health", nil)
	var doc healthDocument
	if err := json.Unmarshal(body, &doc); err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %d %v", resp.StatusCode, err)
	}
	if doc.Status != "degraded" || doc.FailedTotal != 3 || len(doc.FailedLocations) != 3 {
		t.Fatalf("health = %s", body)
	}
	bh := doc.Backends[0]
	if bh.Locations["verified"] != 5 || bh.Locations["mismatch"] != 2 || bh.Locations["missing"] != 1 ||
		bh.Verification["deep"].LastRun == nil || bh.Verification["deep"].LastSuccessAt == nil {
		t.Fatalf("health backend = %+v", bh)
	}
	// Readiness stays up: the service still serves the rest.
	if resp, _ := get(t, cl, "/readyz", nil); resp.StatusCode != 200 {
		t.Fatalf("/readyz = %d with failed locations; want 200", resp.StatusCode)
	}
	// Metrics agree.
	_, metrics := get(t, cl, "/metrics", nil)
	for _, line := range []string{
		fmt.Sprintf(`artifactstore_verification_objects_total{backend="%s",mode="deep",verdict="mismatch"} 2`, backend),
		fmt.Sprintf(`artifactstore_verification_objects_total{backend="%s",mode="deep",verdict="missing"} 1`, backend),
		fmt.Sprintf(`artifactstore_verification_objects_total{backend="%s",mode="deep",verdict="verified"} 5`, backend),
		fmt.Sprintf(`artifactstore_storage_locations{backend="%s",status="mismatch"} 2`, backend),
		fmt.Sprintf(`artifactstore_verification_runs_total{backend="%s",mode="deep",result="ok"} 1`, backend),
	} {
		if !bytes.Contains(metrics, []byte(line)) {
			t.Errorf("metrics lack %q", line)
		}
	}

	// Offline: the same command with the service stopped opens the
	// database itself and reports the same.
	p.stop(t)
	code, out, errOut = runCLI(t, "verify", "--config", cfgFile, "--json")
	if code != exitFailures {
		t.Fatalf("offline verify: exit %d\n%s\n%s", code, out, errOut)
	}
	var offline verifyOutput
	json.Unmarshal([]byte(out), &offline)
	if offline.Remote || len(offline.Reports) != 1 {
		t.Fatalf("offline output: %s", out)
	}
	o := offline.Reports[0]
	if strings.Join(failureSet(o), ",") != strings.Join(want, ",") || o.Checked != r.Checked || fmt.Sprint(o.ByVerdict) != fmt.Sprint(r.ByVerdict) {
		t.Fatalf("offline report %+v differs from online %+v", o.RunSummary, r.RunSummary)
	}
	// Quick mode sees the truncation and the deletion but not the flip.
	code, out, _ = runCLI(t, "storage", "verify", "--config", cfgFile, "--backend", backend, "--quick", "--json")
	var quick verifyOutput
	json.Unmarshal([]byte(out), &quick)
	if code != exitFailures || len(quick.Reports) != 1 {
		t.Fatalf("quick verify: exit %d %s", code, out)
	}
	q := quick.Reports[0]
	if q.ByVerdict["mismatch"] != 1 || q.ByVerdict["missing"] != 1 || q.ByVerdict["verified"] != 6 || q.BytesRead != 0 {
		t.Fatalf("quick report = %+v", q.RunSummary)
	}
}

// TestVerifyOrphansAreReportedNotDeleted: an object under our layout that
// the registry does not know is reported and left in place.
func TestVerifyOrphansAreReportedNotDeleted(t *testing.T) {
	env := startService(t, localConfig+verifyTestConfig)
	files := map[string][]byte{"a": []byte("known")}
	publish(t, env.c, manifestOf("o", "1", "ci", "release", files), files)
	orphan := []byte("nobody references me")
	od := digest.FromBytes(orphan)
	if err := env.svc.Backends["local"].Put(ctxT(t), od, int64(len(orphan)), bytes.NewReader(orphan)); err != nil {
		t.Fatal(err)
	}
	rep, err := env.svc.Verify.Run(ctxT(t), "local", store.ModeDeep, verify.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Orphans != 1 || len(rep.OrphanDigests) != 1 || rep.OrphanDigests[0] != od.String() || rep.ByVerdict["verified"] != 1 {
		t.Fatalf("report = %+v, orphans %v", rep.RunSummary, rep.OrphanDigests)
	}
	if _, err := env.svc.Backends["local"].Stat(ctxT(t), od); err != nil {
		t.Fatalf("orphan was touched: %v", err)
	}
}

// TestVerifyResumesAfterInterruption: a run cut off part-way (as by a
// restart) resumes where it was instead of starting over.
func TestVerifyResumesAfterInterruption(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfgFile, []byte(strings.ReplaceAll(localConfig, "@DIR@", dir)+"verify:\n  concurrency: 1\n  deep:\n    interval: 0s\n  quick:\n    interval: 0s\n"), 0o600)
	env := startServiceFile(t, cfgFile, nil)
	files := map[string][]byte{}
	for i := 0; i < 12; i++ {
		files[fmt.Sprintf("f%02d", i)] = randBytes(uint64(i), 10<<10)
	}
	publish(t, env.c, manifestOf("resume", "1", "ci", "release", files), files)
	ctx, cancel := context.WithCancel(context.Background())
	first := 0
	_, err := env.svc.Verify.Run(ctx, "local", store.ModeDeep, verify.Hooks{Verdict: func(store.Verdict) {
		first++
		if first == 5 {
			cancel()
		}
	}})
	if err == nil {
		t.Fatal("interrupted run reported success")
	}
	env.stop() // a restart

	env = startServiceFile(t, cfgFile, nil)
	st, _ := env.svc.Store.GetVerifyState(ctxT(t), "local", store.ModeDeep)
	if st.Current == nil || st.Current.Checked != first {
		t.Fatalf("persisted progress = %+v, want %d checked", st.Current, first)
	}
	second := 0
	rep, err := env.svc.Verify.Run(ctxT(t), "local", store.ModeDeep, verify.Hooks{Verdict: func(store.Verdict) { second++ }})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Resumed || second != 12-first || rep.Checked != 12 || rep.ByVerdict["verified"] != 12 {
		t.Fatalf("resumed run: resumed=%v, checked %d more (first run %d), report %+v", rep.Resumed, second, first, rep.RunSummary)
	}
}

// TestVerifyByteRateBudget: deep verification reads no faster than the
// configured budget (within 15%, after the 1 MiB burst).
func TestVerifyByteRateBudget(t *testing.T) {
	const budget = 8 << 20
	env := startService(t, localConfig+fmt.Sprintf("verify:\n  concurrency: 2\n  bytes_per_second: %d\n  deep:\n    interval: 0s\n  quick:\n    interval: 0s\n", budget))
	files := map[string][]byte{"a": randBytes(1, 10<<20), "b": randBytes(2, 10<<20)}
	publish(t, env.c, manifestOf("budget", "1", "ci", "release", files), files)
	start := time.Now()
	rep, err := env.svc.Verify.Run(ctxT(t), "local", store.ModeDeep, verify.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	rate := float64(rep.BytesRead-1<<20) / took.Seconds()
	t.Logf("read %d bytes in %s: %.1f MiB/s against a budget of %d MiB/s", rep.BytesRead, took, rate/(1<<20), budget>>20)
	if rep.BytesRead != 20<<20 {
		t.Fatalf("read %d bytes", rep.BytesRead)
	}
	if rate > budget*1.15 {
		t.Fatalf("verification read %.1f MiB/s, over the %d MiB/s budget", rate/(1<<20), budget>>20)
	}
	if rate < budget*0.5 {
		t.Fatalf("verification read only %.1f MiB/s; the limiter is far below its budget", rate/(1<<20))
	}
}

var _ = testutil.ToFloat64

// TestRepublishRepairsMismatch: content that verification found corrupted
// is asked for again on the next publish, the bad copy is replaced, and
// the location becomes good again.
func TestRepublishRepairsMismatch(t *testing.T) {
	dir := t.TempDir()
	cfg := writeLocalConfig(t, dir, filepath.Join(dir, "objects"), verifyTestConfig)
	env := startServiceFile(t, cfg, nil)
	files := map[string][]byte{"f.bin": randBytes(31, 64<<10)}
	publish(t, env.c, manifestOf("repair", "1", "ci", "release", files), files)
	d := digest.FromBytes(files["f.bin"])
	localCorrupter(filepath.Join(dir, "objects")).flip(t, d)
	rep, err := env.svc.Verify.Run(ctxT(t), "local", store.ModeDeep, verify.Hooks{})
	if err != nil || rep.ByVerdict["mismatch"] != 1 {
		t.Fatalf("verify after the flip: %v %+v", err, rep.RunSummary)
	}
	_, br, _ := publish(t, env.c, manifestOf("repair", "2", "ci", "release", files), files)
	if len(br.Needed) != 1 {
		t.Fatalf("content with a failed location was not asked for again: %+v", br.Needed)
	}
	l, _ := env.svc.Store.GetLocation(ctxT(t), d.String(), "local")
	if l == nil || l.Status != store.StatusStored {
		t.Fatalf("location after the re-upload: %+v", l)
	}
	rep, err = env.svc.Verify.Run(ctxT(t), "local", store.ModeDeep, verify.Hooks{})
	if err != nil || rep.ByVerdict["verified"] != 1 || rep.Checked != 1 {
		t.Fatalf("verify after the repair: %v %+v", err, rep.RunSummary)
	}
	_, body := get(t, env.c, "/v1/packages/repair/1/files/f.bin", nil)
	if !bytes.Equal(body, files["f.bin"]) {
		t.Fatal("the old package still serves corrupted bytes")
	}
}
