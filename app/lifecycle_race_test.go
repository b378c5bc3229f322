package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"artifactstore/backends"
	"artifactstore/backends/local"
	"artifactstore/internal/digest"
	"artifactstore/internal/lifecycle"
	"artifactstore/internal/manifest"
	"artifactstore/internal/registry"
	"artifactstore/internal/verify"
	"artifactstore/store"
)

// newRig wires store (without fsync: the trials test ordering, not power
// loss), backends, registry, lifecycle and verification like NewService
// does, for tests that run many cheap trials. bs nil means one local
// backend.
func newRig(t testing.TB, bs map[string]backends.Backend) *Service {
	t.Helper()
	dir := fastTempDir(t)
	st, err := store.Open(filepath.Join(dir, "registry.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if bs == nil {
		b, err := local.New("local", local.Config{Root: filepath.Join(dir, "objects"), KeyPrefix: "artifacts"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		bs = map[string]backends.Backend{"local": b}
	}
	def := ""
	for id := range bs {
		def = id
	}
	reg := registry.New(st, bs, router{def: registry.Route{Backends: []string{def}}}, registry.Options{})
	return &Service{Store: st, Backends: bs, Registry: reg,
		Lifecycle: lifecycle.New(st, bs, reg, lifecycle.Options{}),
		Verify:    verify.New(st, bs, verify.Options{Concurrency: 2})}
}

// fastTempDir is a temporary directory on a memory file system when there
// is one (fsync costs nothing there), so trials measure ordering, not the
// disk; else t.TempDir().
func fastTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "artifactstore-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// regPublish publishes files through the registry (begin, upload what is
// needed, commit) and reports whether the first content was uploaded
// (false: the stored copy was reused).
func regPublish(ctx context.Context, reg *registry.Registry, name, version string, files map[string][]byte) (uploadedFirst bool, err error) {
	return regPublishAs(ctx, reg, name, version, "nightly", files)
}

func regPublishAs(ctx context.Context, reg *registry.Registry, name, version, class string, files map[string][]byte) (uploadedFirst bool, err error) {
	m := &manifest.Manifest{Name: name, Version: version, Producer: "ci", RetentionClass: class}
	paths := slices.Sorted(maps.Keys(files))
	for _, p := range paths {
		m.Files = append(m.Files, manifest.File{Path: p, Size: int64(len(files[p])), SHA256: sha(files[p])})
	}
	res, err := reg.Begin(ctx, m)
	if err != nil {
		return false, fmt.Errorf("begin: %w", err)
	}
	if res.Session == nil {
		return false, nil
	}
	bySHA := map[string][]byte{}
	for _, b := range files {
		bySHA[sha(b)] = b
	}
	for _, n := range res.Needed {
		if n.SHA256 == sha(files[paths[0]]) {
			uploadedFirst = true
		}
		d, _ := digest.Parse("sha256:" + n.SHA256)
		if err := reg.Upload(ctx, res.Session.ID, d, n.Size, bytes.NewReader(bySHA[n.SHA256])); err != nil {
			return false, fmt.Errorf("upload: %w", err)
		}
	}
	if _, _, err := reg.Commit(ctx, res.Session.ID); err != nil {
		return false, fmt.Errorf("commit: %w", err)
	}
	return uploadedFirst, nil
}

// readsBack checks every file of a committed package reads back
// byte-exact from the registry.
func readsBack(ctx context.Context, reg *registry.Registry, name, version string, files map[string][]byte) error {
	p, err := reg.GetPackage(ctx, name, version)
	if err != nil {
		return err
	}
	for _, f := range p.Files {
		d, _ := digest.Parse(f.Digest)
		rc, err := reg.Open(ctx, d, 0, -1)
		if err != nil {
			return fmt.Errorf("%s@%s %s: %w", name, version, f.Path, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, files[f.Path]) {
			return fmt.Errorf("%s@%s %s: read %d bytes (err %v), not the published %d", name, version, f.Path, len(got), err, len(files[f.Path]))
		}
	}
	return nil
}

// TestGCRaceWithPublishes is the acceptance race: 200 trials, each
// deleting a package and collecting garbage while another publish reuses
// that package's content, with a gc loop running throughout. Every
// committed package must then fetch byte-exact and verify.
func TestGCRaceWithPublishes(t *testing.T) {
	svc := newRig(t, nil)
	ctx := ctxT(t)
	reg, life := svc.Registry, svc.Lifecycle

	loopCtx, stopLoop := context.WithCancel(ctx)
	var loopWG sync.WaitGroup
	var gcRuns atomic.Int64
	loopWG.Add(1)
	go func() {
		defer loopWG.Done()
		for loopCtx.Err() == nil {
			if _, err := life.GC(loopCtx, lifecycle.GCOptions{}); err != nil && loopCtx.Err() == nil {
				t.Errorf("gc loop: %v", err)
				return
			}
			gcRuns.Add(1)
			time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond)
		}
	}()

	const trials = 200
	committed := map[string]map[string][]byte{} // name@version -> files
	var reused, reuploaded int
	for i := 0; i < trials; i++ {
		c1, c2, c3 := randBytes(uint64(i*3+1), 700+i), randBytes(uint64(i*3+2), 300), randBytes(uint64(i*3+3), 200)
		old := map[string][]byte{"a.bin": c1, "b.bin": c2}
		if _, err := regPublish(ctx, reg, fmt.Sprintf("old-%d", i), "1", old); err != nil {
			t.Fatalf("trial %d: publish old: %v", i, err)
		}
		newFiles := map[string][]byte{"a.bin": c1, "c.bin": c3}
		var wg sync.WaitGroup
		var delErr, pubErr error
		var uploaded bool
		r := rand.New(rand.NewPCG(uint64(i), 7))
		d1, d2 := time.Duration(r.IntN(1500))*time.Microsecond, time.Duration(r.IntN(1500))*time.Microsecond
		wg.Add(2)
		go func() {
			defer wg.Done()
			time.Sleep(d1)
			if _, err := life.DeletePackage(ctx, fmt.Sprintf("old-%d", i), "1", store.Deletion{Reason: "race test", By: "test"}); err != nil {
				delErr = err
				return
			}
			_, delErr = life.GC(ctx, lifecycle.GCOptions{})
		}()
		go func() {
			defer wg.Done()
			time.Sleep(d2)
			uploaded, pubErr = regPublish(ctx, reg, fmt.Sprintf("new-%d", i), "1", newFiles)
		}()
		wg.Wait()
		if delErr != nil {
			t.Fatalf("trial %d: delete and gc: %v", i, delErr)
		}
		if pubErr != nil {
			t.Fatalf("trial %d: a publish reusing content of a package being deleted failed: %v", i, pubErr)
		}
		if uploaded {
			reuploaded++
		} else {
			reused++
		}
		committed[fmt.Sprintf("new-%d@1", i)] = newFiles
		if err := readsBack(ctx, reg, fmt.Sprintf("new-%d", i), "1", newFiles); err != nil {
			t.Fatalf("trial %d: right after the race: %v", i, err)
		}
	}
	stopLoop()
	loopWG.Wait()
	t.Logf("%d trials: the shared content was reused from storage %d times and uploaded again %d times; %d gc loop runs",
		trials, reused, reuploaded, gcRuns.Load())

	// Afterwards: every committed package fetches byte-exact, a final gc
	// leaves the backend holding exactly what the registry locates, and a
	// deep verification finds every location good.
	if _, err := life.GC(ctx, lifecycle.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	for key, files := range committed {
		name := key[:len(key)-2]
		if err := readsBack(ctx, reg, name, "1", files); err != nil {
			t.Error(err)
		}
	}
	assertConsistent(t, svc)
	rep, err := svc.Verify.Run(ctx, "local", store.ModeDeep, verify.Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.ByVerdict[store.StatusVerified] != rep.Checked || rep.Checked != trials*2 {
		t.Fatalf("deep verification after the race: %+v", rep.RunSummary)
	}
	problems, err := svc.Store.Check(ctx, reg.BackendIDs(), 10)
	if err != nil || len(problems) > 0 {
		t.Fatalf("db check: %v %v", err, problems)
	}
	if _, err := svc.Store.GetPackage(ctx, "old-0", "1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted package still there: %v", err)
	}
}

// TestPublishDuringGCKeepsOrUploadsAgain places a publish that reuses
// collected content at the two moments that matter: after gc decided (the
// location is gone, the object still there) and after gc deleted the
// object. Either the object is kept (the delete is called off) or the
// publish uploads it again; the package reads back in both cases.
func TestPublishDuringGCKeepsOrUploadsAgain(t *testing.T) {
	for _, at := range []string{"gc.condemned", "gc.intents_dropped"} {
		t.Run(at, func(t *testing.T) {
			svc := newRig(t, nil)
			ctx := ctxT(t)
			content := map[string][]byte{"a.bin": randBytes(31, 1234)}
			if _, err := regPublish(ctx, svc.Registry, "old", "1", content); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Lifecycle.DeletePackage(ctx, "old", "1", store.Deletion{Reason: "test", By: "test"}); err != nil {
				t.Fatal(err)
			}
			var uploaded bool
			var pubErr error
			done := false
			m := lifecycle.New(svc.Store, svc.Backends, svc.Registry, lifecycle.Options{Step: func(p string) {
				if p == at && !done {
					done = true
					uploaded, pubErr = regPublish(ctx, svc.Registry, "new", "1", content)
				}
			}})
			rep, err := m.GC(ctx, lifecycle.GCOptions{})
			if err != nil || pubErr != nil || !done {
				t.Fatalf("gc %v, publish at %s: %v (step reached: %v)", err, at, pubErr, done)
			}
			if !uploaded {
				t.Fatalf("publish after gc removed the location did not upload the content")
			}
			switch at {
			case "gc.condemned": // decided, not deleted: the delete is called off
				if rep.Cancelled != 1 || rep.Backends["local"].Objects != 0 {
					t.Fatalf("gc report %+v %+v: want the delete called off", rep, rep.Backends["local"])
				}
			default: // deleted: the publish wrote it again
				if rep.Backends["local"].Objects != 1 {
					t.Fatalf("gc report %+v", rep.Backends["local"])
				}
			}
			if err := readsBack(ctx, svc.Registry, "new", "1", content); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Lifecycle.GC(ctx, lifecycle.GCOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := readsBack(ctx, svc.Registry, "new", "1", content); err != nil {
				t.Fatalf("after a second gc: %v", err)
			}
			assertConsistent(t, svc)
		})
	}
}
