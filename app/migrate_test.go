package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"artifactstore/backends"
	"artifactstore/backends/local"
	"artifactstore/internal/client"
	"artifactstore/internal/digest"
	"artifactstore/store"
)

// seeded is a package put in place before the service starts.
type seeded struct {
	name, version, path string
	data                []byte
}

// seedLocal bulk-loads n one-file packages (distinct content of size
// bytes) onto the local backend of the config: objects written where the
// backend keeps them (without its fsyncs: test setup), records through
// store.ImportPackages.
func seedLocal(t *testing.T, cfgFile string, n, size int, seed uint64) []seeded {
	t.Helper()
	cfg, err := LoadConfig(LoadOptions{File: cfgFile, Environ: os.Environ()})
	if err != nil {
		t.Fatal(err)
	}
	lc := cfg.Backends["local"]
	st, err := store.Open(cfg.Database.Path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var out []seeded
	var pkgs []store.Package
	rng := rand.New(rand.NewPCG(seed, 13))
	for i := range n {
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		s := seeded{name: fmt.Sprintf("old-%04d", i), version: "1", path: "f.bin", data: data}
		d := digest.FromBytes(data)
		path := filepath.Join(lc.Path, filepath.FromSlash(backends.ObjectKey(lc.KeyPrefix, d)))
		os.MkdirAll(filepath.Dir(path), 0o750)
		if err := os.WriteFile(path, data, 0o640); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
		pkgs = append(pkgs, store.Package{Name: s.name, Version: s.version, Producer: "ci", RetentionClass: "release",
			Files: []store.File{{Path: s.path, Size: int64(size), Digest: d.String(), MediaType: "application/octet-stream"}}})
	}
	if err := st.ImportPackages(context.Background(), pkgs, "local"); err != nil {
		t.Fatal(err)
	}
	return out
}

// migrateCLI runs `storage migrate` and returns its exit code and output.
func migrateCLI(t *testing.T, cfgFile string, args ...string) (int, string) {
	t.Helper()
	code, out, errOut := runCLI(t, append([]string{"storage", "migrate", "--config", cfgFile}, args...)...)
	return code, out + errOut
}

// assertMigrated checks that every package file has a verified location
// on to and none on from, and that from's directory holds no object.
func assertMigrated(t *testing.T, st *store.Store, fromRoot string, names map[string]string) {
	t.Helper()
	ctx := ctxT(t)
	for name, d := range names {
		locs, err := st.Locations(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if len(locs) != 1 || locs[0].Backend != "rgw" || locs[0].Status != store.StatusVerified {
			t.Fatalf("%s (%s): locations %+v, want one verified on rgw", name, d, locs)
		}
	}
	// Content objects (manifest records live beside them and follow the
	// content through the record outbox).
	b, err := local.New("local", local.Config{Root: fromRoot, KeyPrefix: "artifacts"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := b.Walk(ctx, func(backends.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("the local directory still holds %d objects", n)
	}
}

// TestMigrateLocalToRGWWhileServing is the migration acceptance test:
// 2,000 packages on the local disk move to Ceph RGW with --delete-source
// while 8 clients keep publishing (to RGW, the new routing) and fetching;
// no request fails, every package ends with a verified copy on RGW and
// none on local, the local directory is empty, and db check and a deep
// verify pass. A second run finds nothing to do.
func TestMigrateLocalToRGWWhileServing(t *testing.T) {
	srv := cephServer(t)
	dir := t.TempDir()
	bucket := srv.NewBucket(t)
	cfg := writeFile(t, filepath.Join(dir, "config.yaml"), copiesConfig(dir, s3BackendYAML("rgw", bucket), "  default: rgw\n"))
	old := seedLocal(t, cfg, 2000, 256, 1301)
	env := startServiceFile(t, cfg, nil)

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var failures []string
	var mu sync.Mutex
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	var fetches, publishes atomic.Int64
	live := map[string][]byte{} // name -> content, published during the run
	for w := range 4 {
		wg.Add(2)
		go func() { // publisher
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				data := []byte(fmt.Sprintf("live package %d/%d %d", w, i, time.Now().UnixNano()))
				files := map[string][]byte{"f.bin": data}
				name := fmt.Sprintf("live-%d-%d", w, i)
				if err := publishErr(context.Background(), env.c, manifestOf(name, "1", "ci", "release", files), files); err != nil {
					fail("publish %s: %v", name, err)
					return
				}
				publishes.Add(1)
				mu.Lock()
				live[name] = data
				mu.Unlock()
				time.Sleep(5 * time.Millisecond) // a busy CI job, not a tight loop
			}
		}()
		go func() { // fetcher
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for ctx.Err() == nil {
				s := old[rng.IntN(len(old))]
				resp, err := env.c.Get(context.Background(), client.FilePath(s.name, s.version, s.path), nil)
				if err != nil {
					fail("GET %s: %v", s.name, err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, s.data) {
					fail("GET %s: %d, read error %v, body right %v", s.name, resp.StatusCode, err, bytes.Equal(body, s.data))
					return
				}
				fetches.Add(1)
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // the clients are busy before the migration starts
	start := time.Now()
	code, out := migrateCLI(t, cfg, "--from", "local", "--to", "rgw", "--delete-source", "--concurrency", "8")
	took := time.Since(start)
	time.Sleep(300 * time.Millisecond) // and keep going a little after it
	stop()
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("requests failed during the migration:\n%s", strings.Join(failures, "\n"))
	}
	if code != 0 || !strings.Contains(out, "migrate done: 2") {
		t.Fatalf("migrate: exit %d\n%s", code, out)
	}
	t.Logf("migrated 2000 packages in %s while %d fetches and %d publishes ran", took.Round(time.Millisecond), fetches.Load(), publishes.Load())
	if fetches.Load() == 0 || publishes.Load() == 0 {
		t.Fatalf("the clients did nothing: %d fetches, %d publishes", fetches.Load(), publishes.Load())
	}

	// A deep verify vouches for what the live publishes stored, then
	// every package has exactly one copy, verified, on RGW.
	if code, out, errOut := runCLI(t, "verify", "--config", cfg); code != 0 {
		t.Fatalf("deep verify after the migration: exit %d\n%s%s", code, out, errOut)
	}
	names := map[string]string{}
	for _, s := range old {
		names[s.name] = digest.FromBytes(s.data).String()
	}
	for name, data := range live {
		names[name] = digest.FromBytes(data).String()
	}
	assertMigrated(t, env.svc.Store, filepath.Join(dir, "objects"), names)
	// The manifest records left local too: nothing at all remains there.
	copiesWait(t, time.Minute, "the local directory empty", func() (bool, string) {
		n := countFiles(t, filepath.Join(dir, "objects"))
		return n == 0, fmt.Sprintf("%d files left", n)
	})
	if code, out, errOut := runCLI(t, "db", "check", "--config", cfg); code != 0 {
		t.Fatalf("db check: exit %d\n%s%s", code, out, errOut)
	}
	// Idempotent: nothing left to move.
	code, out = migrateCLI(t, cfg, "--from", "local", "--to", "rgw", "--delete-source", "--json")
	var run store.MigrationRun
	if code != 0 || json.Unmarshal([]byte(out), &run) != nil || run.Contents != 0 || run.Copied != 0 {
		t.Fatalf("second migrate: exit %d\n%s", code, out)
	}
	assertConsistent(t, env.svc)
}

// publishErr is publish without a testing.T (for client goroutines).
func publishErr(ctx context.Context, c *client.Client, m client.Manifest, files map[string][]byte) error {
	br, err := c.Begin(ctx, m)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if br.Status == "exists" {
		return nil
	}
	bySHA := map[string][]byte{}
	for _, b := range files {
		bySHA[sha(b)] = b
	}
	for _, n := range br.Needed {
		if err := c.Upload(ctx, br.UploadID, n.SHA256, n.Size, bytes.NewReader(bySHA[n.SHA256])); err != nil {
			return fmt.Errorf("upload: %w", err)
		}
	}
	if _, _, err := c.Commit(ctx, br.UploadID); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// TestMigrateKillAndResume: kill -9 the service in the middle of a
// migration (the byte budget keeps it slow enough to be caught halfway),
// restart it, run the same command again: it resumes the interrupted run
// and completes; db check and a deep verify pass, every package has its
// verified copy on RGW and none is left on local.
func TestMigrateKillAndResume(t *testing.T) {
	srv := cephServer(t)
	dir := t.TempDir()
	bucket := srv.NewBucket(t)
	yaml := copiesConfig(dir, s3BackendYAML("rgw", bucket), "  default: rgw\n")
	yaml = strings.Replace(yaml, "verify:\n", "verify:\n  bytes_per_second: 256KiB\n", 1)
	cfg := writeFile(t, filepath.Join(dir, "config.yaml"), yaml)
	old := seedLocal(t, cfg, 300, 4096, 1501)
	p := startProc(t, cfg)

	type result struct {
		code int
		out  string
	}
	done := make(chan result, 1)
	go func() {
		code, out := migrateCLI(t, cfg, "--from", "local", "--to", "rgw", "--delete-source")
		done <- result{code, out}
	}()
	// Kill once RGW holds a good part of the copies, long before all.
	c := srv.Client(t)
	copiesWait(t, 2*time.Minute, "the migration under way", func() (bool, string) {
		n := 0
		for o := range c.Client.ListObjects(context.Background(), bucket.Bucket, minio.ListObjectsOptions{Recursive: true}) {
			if o.Err == nil {
				n++
			}
		}
		return n >= 150, fmt.Sprintf("%d objects on RGW", n)
	})
	p.cmd.Process.Kill() // kill -9
	p.cmd.Wait()
	if r := <-done; r.code == 0 {
		t.Fatalf("the migration finished before the kill; raise the data or lower the budget:\n%s", r.out)
	}

	p = startProc(t, cfg)
	code, out := migrateCLI(t, cfg, "--from", "local", "--to", "rgw", "--delete-source")
	if code != 0 || !strings.Contains(out, "resumed an interrupted run") || !strings.Contains(out, "migrate done: 300 packages") {
		t.Fatalf("migrate after the restart: exit %d\n%s", code, out)
	}
	if code, out, errOut := runCLI(t, "db", "check", "--config", cfg); code != 0 {
		t.Fatalf("db check: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := runCLI(t, "verify", "--config", cfg); code != 0 {
		t.Fatalf("deep verify: exit %d\n%s%s", code, out, errOut)
	}
	p.stop(t)
	loaded, err := LoadConfig(LoadOptions{File: cfg, Environ: os.Environ()})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(loaded.Database.Path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	names := map[string]string{}
	for _, s := range old {
		names[s.name] = digest.FromBytes(s.data).String()
	}
	assertMigrated(t, st, filepath.Join(dir, "objects"), names)
	if ins, _ := st.PendingIntents(ctxT(t)); len(ins) != 0 {
		t.Fatalf("%d delete intents left", len(ins))
	}
}
