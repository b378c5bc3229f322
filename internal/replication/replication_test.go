package replication

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"artifactstore/backends"
	"artifactstore/backends/local"
	"artifactstore/internal/digest"
	"artifactstore/internal/manifest"
	"artifactstore/internal/registry"
	"artifactstore/store"
)

type route registry.Route

func (r route) Route(string, string) registry.Route { return registry.Route(r) }

type fixture struct {
	st  *store.Store
	reg *registry.Registry
	bs  map[string]*local.Backend
}

func newFixture(t *testing.T, rt registry.Route, ids ...string) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, bs: map[string]*local.Backend{}}
	all := map[string]backends.Backend{}
	for _, id := range ids {
		b, err := local.New(id, local.Config{Root: filepath.Join(dir, id)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		f.bs[id], all[id] = b, b
	}
	f.reg = registry.New(st, all, route(rt), registry.Options{})
	return f
}

func (f *fixture) publish(t *testing.T, name string, data []byte) digest.Digest {
	t.Helper()
	ctx := context.Background()
	d := digest.FromBytes(data)
	m := &manifest.Manifest{Name: name, Version: "1", Producer: "ci", RetentionClass: "release",
		Files: []manifest.File{{Path: "f", Size: int64(len(data)), SHA256: d.Hex}}}
	br, err := f.reg.Begin(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	for range br.Needed {
		if err := f.reg.Upload(ctx, br.Session.ID, d, int64(len(data)), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := f.reg.Commit(ctx, br.Session.ID); err != nil {
		t.Fatal(err)
	}
	return d
}

func (f *fixture) fail(t *testing.T, d digest.Digest, backend, verdict string) {
	t.Helper()
	l, _ := f.st.GetLocation(context.Background(), d.String(), backend)
	if err := f.st.RecordVerdict(context.Background(), store.Verdict{Digest: d.String(), Backend: backend, Mode: store.ModeDeep,
		Verdict: verdict, At: time.Now(), Error: "test", Generation: l.Repairs}); err != nil {
		t.Fatal(err)
	}
}

// TestPass: a pass repairs a failed copy from a verified one (never from
// one no deep check vouched for), rewriting the bytes and verifying them,
// writes a pending copy, drops the pending copy of content no package
// references any more, and reports a failed location without a verified
// copy elsewhere as unrepairable.
func TestPass(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, registry.Route{Backends: []string{"a", "b"}}, "a", "b")
	good := []byte("repair me from b")
	d1 := f.publish(t, "p1", good)
	os.WriteFile(f.bs["a"].Path(d1), []byte("repair me from B"), 0o640) // same size, other bytes
	f.fail(t, d1, "a", store.StatusMismatch)
	m := New(f.reg, Options{RetryInterval: time.Hour})
	// b's copy was never deep-checked: self-heal does not copy from it.
	if rep, err := m.Pass(ctx, false); err != nil || rep.Repaired != 0 || rep.Unrepairable != 1 {
		t.Fatalf("pass with an unverified source: %v %s %+v", err, rep, rep.Items)
	}
	f.fail(t, d1, "b", store.StatusVerified) // a deep check of b matched

	d3 := f.publish(t, "p3", []byte("both copies bad"))
	f.fail(t, d3, "a", store.StatusMissing)
	f.fail(t, d3, "b", store.StatusMismatch)

	rep, err := m.Pass(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Repaired != 1 || rep.Unrepairable != 2 || rep.Failed != 0 {
		t.Fatalf("pass: %s\n%+v", rep, rep.Items)
	}
	if got, _ := os.ReadFile(f.bs["a"].Path(d1)); !bytes.Equal(got, good) {
		t.Fatalf("a holds %q after the repair", got)
	}
	if l, _ := f.st.GetLocation(ctx, d1.String(), "a"); l.Status != store.StatusVerified || l.Repairs != 1 {
		t.Fatalf("a's location after the repair: %+v", l)
	}
	// Nothing to copy from is looked at again by every pass (not
	// deferred); the repaired copy is left alone.
	if rep, _ := m.Pass(ctx, false); rep.Unrepairable != 2 || rep.Repaired != 0 || rep.Deferred != 0 {
		t.Fatalf("second pass: %s %+v", rep, rep.Items)
	}

	// A pending copy of referenced content is written; one of content no
	// package references is dropped.
	f2 := newFixture(t, registry.Route{Backends: []string{"a"}}, "a", "b")
	d4 := f2.publish(t, "p4", []byte("copy me to b"))
	d5 := f2.publish(t, "p5", []byte("deleted meanwhile"))
	f2.st.DeletePackage(ctx, "p5", "1", store.Deletion{Reason: "test"})
	f2.st.AddPendingCopies(ctx, []store.PendingCopy{{Digest: d4.String(), Backend: "b", Size: 12}, {Digest: d5.String(), Backend: "b", Size: 17}})
	m2 := New(f2.reg, Options{})
	rep, err = m2.Pass(ctx, false)
	if err != nil || rep.Completed != 1 {
		t.Fatalf("pass with pending copies: %v %s %+v", err, rep, rep.Items)
	}
	if _, n, _ := f2.st.PendingCopies(ctx, 10); n != 0 {
		t.Fatalf("%d pending copies left", n)
	}
	if _, err := f2.bs["b"].Stat(ctx, d5); err == nil {
		t.Fatal("content no package references was copied to b")
	}
	if l, _ := f2.st.GetLocation(ctx, d4.String(), "b"); l == nil || l.Status != store.StatusVerified {
		t.Fatalf("b's copy: %+v", l)
	}
}
