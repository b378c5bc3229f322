package app

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"artifactstore/backends"
	"artifactstore/backends/s3"
	"artifactstore/backends/s3/s3test"
	"artifactstore/internal/client"
	"artifactstore/internal/recovery"
	"artifactstore/store"
)

// drRGWServer returns the Ceph RGW test server (a failure in CI when it is
// not running).
func drRGWServer(t *testing.T) s3test.Server {
	t.Helper()
	for _, srv := range s3test.Servers(t) {
		if srv.Name == "ceph" {
			return srv
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("Ceph RGW is not among the test S3 servers")
	}
	t.Skip("Ceph RGW is not running (make s3-up)")
	return s3test.Server{}
}

// drConfig writes a config with two backends: local (outside the data
// directory, as a second disk would be) and rgw; producer ci-local is
// routed to local, everything else to rgw.
func drConfig(t *testing.T, dir string, bucket s3.Config, extra string) string {
	t.Helper()
	body := fmt.Sprintf("data_dir: %s/data\nbackends:\n  local:\n    type: local\n    path: %s/objects\n    key_prefix: artifacts\n%s"+
		"routing:\n  default: rgw\n  rules:\n    - producer: ci-local\n      backend: local\n%s",
		dir, dir, s3BackendYAML("rgw", bucket), extra)
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// drPackage is package i of the disaster-recovery dataset: tiny files,
// one of them shared by every seventh package, labels, and every other
// package on each backend.
func drPackage(i int) (client.Manifest, map[string][]byte) {
	files := map[string][]byte{
		"shared.txt": []byte(fmt.Sprintf("shared content %d", i%7)),
		"own.txt":    []byte(fmt.Sprintf("content of package %d", i)),
	}
	producer := "ci-rgw"
	if i%2 == 0 {
		producer = "ci-local"
	}
	m := manifestOf(fmt.Sprintf("app%02d", i%40), fmt.Sprintf("1.%d", i), producer, "release", files)
	m.Labels = map[string]string{"team": fmt.Sprint("t", i%5), "build": fmt.Sprint(i)}
	return m, files
}

func drKey(i int) string {
	m, _ := drPackage(i)
	return m.Name + "@" + m.Version
}

// publishRange publishes packages [from, to) with 16 concurrent clients.
func publishRange(t *testing.T, c *client.Client, from, to int) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := from; i < to; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			m, files := drPackage(i)
			publish(t, c, m, files)
		}()
	}
	wg.Wait()
}

// livePackages lists every package in the database as name@version.
func livePackages(t *testing.T, st *store.Store) []string {
	t.Helper()
	var out []string
	var after store.PackageKey
	for {
		page, err := st.PackagePage(ctxT(t), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			sort.Strings(out)
			return out
		}
		for _, p := range page {
			out = append(out, p.Name+"@"+p.Version)
		}
		after = store.PackageKey{Name: page[len(page)-1].Name, Version: page[len(page)-1].Version}
	}
}

// TestRecoverFromRGW: 500 packages (shared content, labels, on a local
// backend and RGW), a snapshot into RGW, 100 more, 20 deleted (half from
// before the snapshot), the data directory removed. "with snapshot":
// recover --from-backend rgw brings back exactly the live packages, each
// fetching byte-exact through verified reads and passing a deep
// verification, the deleted ones stay deleted, a token from the snapshot
// works, and the packages after the snapshot have v1.package.recovered
// events. "records alone": the data directory is lost again and the
// snapshots are gone too: the same packages come back from the manifest
// records alone.
func TestRecoverFromRGW(t *testing.T) {
	srv := drRGWServer(t)
	dir := t.TempDir()
	cfg := drConfig(t, dir, srv.NewBucket(t), "")
	env := startServiceFile(t, cfg, nil)
	start := time.Now()
	lap := func(what string) {
		t.Logf("%s: %s", what, time.Since(start).Round(time.Millisecond))
		start = time.Now()
	}
	publishRange(t, env.c, 0, 500)
	lap("500 packages published")
	reader, _, err := env.svc.Store.CreateToken(ctxT(t), "reader", store.ScopeRead, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "backup", "--config", cfg, "--to-backend", "rgw")
	if code != 0 || !strings.Contains(out, "read back and verified") {
		t.Fatalf("backup --to-backend rgw: exit %d\n%s\n%s", code, out, errOut)
	}
	publishRange(t, env.c, 500, 600)
	lap("snapshot and 100 more published")
	deleted := map[string]bool{}
	for j := 0; j < 20; j++ {
		i := j * 29 // 0..261: ten before the snapshot
		if j >= 10 {
			i = 500 + (j-10)*9 // ten after
		}
		m, _ := drPackage(i)
		if _, err := env.c.Delete(ctxT(t), m.Name, m.Version, "disaster recovery test"); err != nil {
			t.Fatalf("delete %s@%s: %v", m.Name, m.Version, err)
		}
		deleted[drKey(i)] = true
	}
	var live []string
	for i := 0; i < 600; i++ {
		if !deleted[drKey(i)] {
			live = append(live, drKey(i))
		}
	}
	sort.Strings(live)
	if got := livePackages(t, env.svc.Store); !slices.Equal(got, live) {
		t.Fatalf("before the disaster the store has %d packages, want %d", len(got), len(live))
	}
	env.stop()
	lap("20 deleted, records written, service stopped")

	t.Run("with snapshot", func(t *testing.T) {
		env := recoverAndCheck(t, dir, cfg, live, deleted,
			"490 packages from the snapshot, 90 recovered from manifest records, 10 deleted since the snapshot", 90, "")
		lap("recovered from the snapshot and the records, all checked")
		rc := client.New(env.url)
		rc.Token = reader
		m, files := drPackage(1)
		resp, body := get(t, rc, client.FilePath(m.Name, m.Version, "own.txt"), nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, files["own.txt"]) {
			t.Fatalf("the read token from the snapshot: status %d", resp.StatusCode)
		}
		env.stop()
	})
	t.Run("records alone", func(t *testing.T) {
		bs, err := buildBackends(t.Context(), mustLoad(t, cfg), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		rs, _ := backends.AsRecordStore(bs["rgw"])
		snaps, err := recovery.ListSnapshots(t.Context(), "rgw", rs)
		if err != nil || len(snaps) != 1 {
			t.Fatalf("snapshots: %v, %v", snaps, err)
		}
		if err := rs.DeleteRecord(t.Context(), snaps[0].Name); err != nil {
			t.Fatal(err)
		}
		env := recoverAndCheck(t, dir, cfg, live, deleted,
			"0 packages from the snapshot, 580 recovered from manifest records, 0 deleted since the snapshot", 580, "no usable snapshot")
		lap("recovered from the records alone, all checked")
		env.stop()
	})
}

func mustLoad(t *testing.T, file string) *Config {
	t.Helper()
	c, err := LoadConfig(LoadOptions{File: file})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// recoverAndCheck removes the data directory, runs recover --from-backend
// rgw, starts the service and checks that exactly the live packages are
// back, each file fetched byte-exact (a full read is hashed), the deleted
// ones absent, a deep verification and db check pass, and there are
// wantRecovered v1.package.recovered events.
func recoverAndCheck(t *testing.T, dir, cfg string, live []string, deleted map[string]bool, wantLine string, wantRecovered int, wantSays string) *testEnv {
	t.Helper()
	// The VM is gone: its data directory with it.
	if err := os.RemoveAll(filepath.Join(dir, "data")); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "recover", "--config", cfg, "--from-backend", "rgw")
	t.Logf("recover:\n%s", out)
	if code != 0 {
		t.Fatalf("recover: exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, wantLine) || !strings.Contains(out, wantSays) {
		t.Fatalf("recover output lacks %q or %q:\n%s", wantLine, wantSays, out)
	}
	env := startServiceFile(t, cfg, nil)
	if got := livePackages(t, env.svc.Store); !slices.Equal(got, live) {
		t.Fatalf("after recover the store has %d packages, want exactly the %d live ones", len(got), len(live))
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	var mu sync.Mutex
	var errs []string
	for i := 0; i < 600; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			m, files := drPackage(i)
			fail := func(format string, args ...any) {
				mu.Lock()
				errs = append(errs, fmt.Sprintf(format, args...))
				mu.Unlock()
			}
			p, err := env.c.GetPackage(ctxT(t), m.Name, m.Version)
			if deleted[drKey(i)] {
				if client.Code(err) != "not_found" {
					fail("deleted %s is back: %v", drKey(i), err)
				}
				return
			}
			if err != nil {
				fail("%s: %v", drKey(i), err)
				return
			}
			if p.Labels["build"] != fmt.Sprint(i) || p.Producer != m.Producer {
				fail("%s: labels or producer changed: %+v", drKey(i), p)
			}
			for path, data := range files {
				resp, err := env.c.Get(ctxT(t), client.FilePath(m.Name, m.Version, path), nil)
				if err != nil {
					fail("%s %s: %v", drKey(i), path, err)
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, data) {
					fail("%s %s: status %d, %d bytes, %v", drKey(i), path, resp.StatusCode, len(body), err)
				}
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d failures after recover, e.g.:\n%s", len(errs), strings.Join(errs[:min(10, len(errs))], "\n"))
	}
	// Every location recover created verifies: a deep run reads and
	// hashes every object.
	code, out, errOut = runCLI(t, "verify", "--config", cfg)
	if code != 0 || !strings.Contains(out, "0 mismatch, 0 missing, 0 unreadable") {
		t.Fatalf("verify after recover: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "db", "check", "--config", cfg)
	if code != 0 {
		t.Fatalf("db check after recover: exit %d\n%s\n%s", code, out, errOut)
	}
	evs, err := env.svc.Store.Events(ctxT(t), 0, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	recovered := 0
	for _, e := range evs {
		if e.Type == store.EventPackageRecovered {
			recovered++
		}
	}
	if recovered != wantRecovered {
		t.Fatalf("%d v1.package.recovered events, want %d", recovered, wantRecovered)
	}
	return env
}

// TestRecoverNeverImportsTamperedRecord: a record changed in RGW behind
// the service's back is reported by recover and by db check and its
// package is not imported; recover refuses a live or existing database.
func TestRecoverNeverImportsTamperedRecord(t *testing.T) {
	srv := drRGWServer(t)
	dir := t.TempDir()
	bucket := srv.NewBucket(t)
	cfg := drConfig(t, dir, bucket, "")
	env := startServiceFile(t, cfg, nil)
	for i := 1; i <= 11; i += 2 { // odd: routed to rgw
		m, files := drPackage(i)
		publish(t, env.c, m, files)
	}
	if code, _, errOut := runCLI(t, "recover", "--config", cfg, "--from-backend", "rgw"); code == 0 || !strings.Contains(errOut, "running service") {
		t.Fatalf("recover against a live service: exit %d, %s", code, errOut)
	}
	env.stop()
	if code, _, errOut := runCLI(t, "recover", "--config", cfg, "--from-backend", "rgw"); code == 0 || !strings.Contains(errOut, "exists") {
		t.Fatalf("recover over an existing database: exit %d, %s", code, errOut)
	}

	m, _ := drPackage(5)
	key := "artifacts/" + recovery.RecordName(m.Name, m.Version)
	c := srv.Client(t)
	obj, _, _, err := c.GetObject(t.Context(), bucket.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(obj)
	obj.Close()
	bad := bytes.Replace(raw, []byte(`"ci-rgw"`), []byte(`"ci-evil"`), 1)
	if bytes.Equal(bad, raw) {
		t.Fatalf("record has no producer to change:\n%s", raw)
	}
	if _, err := c.Client.PutObject(t.Context(), bucket.Bucket, key, bytes.NewReader(bad), int64(len(bad)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}

	os.RemoveAll(filepath.Join(dir, "data"))
	code, out, _ := runCLI(t, "recover", "--config", cfg, "--from-backend", "rgw")
	want := "NOT RESTORED record_tampered: rgw:" + recovery.RecordName(m.Name, m.Version)
	if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "5 recovered from manifest records") {
		t.Fatalf("recover with a tampered record: exit %d, want 1 and %q\n%s", code, want, out)
	}
	env = startServiceFile(t, cfg, nil)
	if _, err := env.c.GetPackage(ctxT(t), m.Name, m.Version); client.Code(err) != "not_found" {
		t.Fatalf("the package of the tampered record was imported: %v", err)
	}
	if got := livePackages(t, env.svc.Store); len(got) != 5 {
		t.Fatalf("recovered %v, want the five untampered packages", got)
	}
	code, out, _ = runCLI(t, "db", "check", "--config", cfg)
	if code != 1 || !strings.Contains(out, "PROBLEM record_tampered: rgw:"+recovery.RecordName(m.Name, m.Version)) {
		t.Fatalf("db check with a tampered record: exit %d\n%s", code, out)
	}
	env.stop()
}

// TestSnapshotKilledMidUpload: the service is killed (SIGKILL) half-way
// through uploading a snapshot to RGW; the earlier snapshot is intact
// and verifies, nothing of the interrupted one is visible, the next
// snapshot succeeds, and keep: 2 drops the oldest after a third.
func TestSnapshotKilledMidUpload(t *testing.T) {
	srv := drRGWServer(t)
	dir := t.TempDir()
	cfg := drConfig(t, dir, srv.NewBucket(t), "snapshots:\n  keep: 2\n")
	p := startProc(t, cfg, recoveryKillAtEnv+"=snapshot.upload:2")
	for i := 1; i <= 20; i += 2 {
		m, files := drPackage(i)
		publish(t, clientFor(p), m, files)
	}
	snapshots := func() []recovery.Snapshot {
		t.Helper()
		c, err := LoadConfig(LoadOptions{File: cfg})
		if err != nil {
			t.Fatal(err)
		}
		bs, err := buildBackends(t.Context(), c, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		rs, _ := backends.AsRecordStore(bs["rgw"])
		list, err := recovery.ListSnapshots(t.Context(), "rgw", rs)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range list {
			path, err := recovery.FetchSnapshot(t.Context(), rs, s, t.TempDir())
			if err != nil {
				t.Fatalf("snapshot %s does not verify: %v", s.Name, err)
			}
			os.Remove(path)
		}
		return list
	}
	code, out, errOut := runCLI(t, "backup", "--config", cfg, "--to-backend", "rgw")
	if code != 0 {
		t.Fatalf("first snapshot: exit %d\n%s\n%s", code, out, errOut)
	}
	first := snapshots()
	if len(first) != 1 {
		t.Fatalf("snapshots after the first: %v", first)
	}
	code, _, errOut = runCLI(t, "backup", "--config", cfg, "--to-backend", "rgw")
	if code == 0 {
		t.Fatal("the snapshot during which the service was killed reported success")
	}
	err := p.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the service was not killed mid-upload: %v (%s)\n%s", err, errOut, p.logs.String())
	}
	if after := snapshots(); len(after) != 1 || after[0] != first[0] {
		t.Fatalf("snapshots after the kill: %v, want only %v", after, first)
	}
	p = startProc(t, cfg)
	for n := 2; n <= 3; n++ {
		code, out, errOut = runCLI(t, "backup", "--config", cfg, "--to-backend", "rgw")
		if code != 0 {
			t.Fatalf("snapshot %d after the kill: exit %d\n%s\n%s", n, code, out, errOut)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "data", "snapshot-*")); len(left) > 0 {
		t.Errorf("temporary snapshot files left in the data directory: %v", left)
	}
	if !strings.Contains(out, "removed older snapshot "+first[0].Name) {
		t.Errorf("the third snapshot did not remove the oldest (keep: 2):\n%s", out)
	}
	if list := snapshots(); len(list) != 2 || slices.ContainsFunc(list, func(s recovery.Snapshot) bool { return s.Name == first[0].Name }) {
		t.Fatalf("snapshots after three with keep 2: %v", list)
	}
	p.stop(t)
}
