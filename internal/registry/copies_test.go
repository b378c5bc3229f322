package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"artifactstore/backends"
	"artifactstore/backends/local"
	"artifactstore/internal/digest"
	"artifactstore/internal/manifest"
	"artifactstore/store"
)

// testBackend is a local backend whose health can be switched off and
// whose opens are counted.
type testBackend struct {
	*local.Backend
	mu    sync.Mutex
	down  bool
	opens int
}

func (b *testBackend) Health(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return fmt.Errorf("%w: switched off by the test", backends.ErrUnavailable)
	}
	return b.Backend.Health(ctx)
}

func (b *testBackend) Open(ctx context.Context, d digest.Digest, off, n int64) (io.ReadCloser, error) {
	b.mu.Lock()
	b.opens++
	b.mu.Unlock()
	return b.Backend.Open(ctx, d, off, n)
}

func (b *testBackend) setDown(v bool) { b.mu.Lock(); b.down = v; b.mu.Unlock() }
func (b *testBackend) takeOpens() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.opens
	b.opens = 0
	return n
}

type fixedRouter Route

func (f fixedRouter) Route(string, string) Route { return Route(f) }

type fixture struct {
	reg *Registry
	st  *store.Store
	bs  map[string]*testBackend
}

func newFixture(t *testing.T, route Route, ids ...string) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, bs: map[string]*testBackend{}}
	all := map[string]backends.Backend{}
	for _, id := range ids {
		lb, err := local.New(id, local.Config{Root: filepath.Join(dir, id)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		f.bs[id] = &testBackend{Backend: lb}
		all[id] = f.bs[id]
	}
	f.reg = New(st, all, fixedRouter(route), Options{})
	return f
}

// forgetHealth drops cached backend health (cached for healthTTL).
func (f *fixture) forgetHealth() {
	f.reg.healthMu.Lock()
	f.reg.health = map[string]healthResult{}
	f.reg.healthMu.Unlock()
}

// publish runs begin, upload and commit of one file.
func (f *fixture) publish(ctx context.Context, name string, data []byte) (*BeginResult, error) {
	d := digest.FromBytes(data)
	m := &manifest.Manifest{Name: name, Version: "1", Producer: "ci", RetentionClass: "release",
		Files: []manifest.File{{Path: "f.bin", Size: int64(len(data)), SHA256: d.Hex}}}
	br, err := f.reg.Begin(ctx, m)
	if err != nil {
		return nil, err
	}
	for range br.Needed {
		if err := f.reg.Upload(ctx, br.Session.ID, d, int64(len(data)), bytes.NewReader(data)); err != nil {
			return br, err
		}
	}
	_, _, err = f.reg.Commit(ctx, br.Session.ID)
	return br, err
}

func TestCommitWritesEveryCopy(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Route{Backends: []string{"a", "b"}}, "a", "b")
	data := []byte("copies on a and b")
	if _, err := f.publish(ctx, "p", data); err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(data)
	for _, id := range []string{"a", "b"} {
		if l, _ := f.st.GetLocation(ctx, d.String(), id); l == nil || l.Failed() {
			t.Errorf("no usable location on %s: %+v", id, l)
		}
		if _, err := f.bs[id].Stat(ctx, d); err != nil {
			t.Errorf("%s does not hold the object: %v", id, err)
		}
	}
}

// TestCopyBackendDown: a backend of the rule that is down fails the
// publish with a BackendError naming it (503), and nothing is committed;
// with min_copies 1 the publish commits on the other and the copy is
// pending until CopyContent writes it.
func TestCopyBackendDown(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Route{Backends: []string{"a", "b"}}, "a", "b")
	f.bs["b"].setDown(true)
	_, err := f.publish(ctx, "p", []byte("refused"))
	var be *BackendError
	if !errors.As(err, &be) || be.Backend != "b" || !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("publish with b down: %v, want an unavailable BackendError naming b", err)
	}
	if _, err := f.st.GetPackage(ctx, "p", "1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("package committed anyway: %v", err)
	}

	f = newFixture(t, Route{Backends: []string{"b", "a"}, MinCopies: 1}, "a", "b")
	f.bs["b"].setDown(true)
	data := []byte("one copy first")
	d := digest.FromBytes(data)
	br, err := f.publish(ctx, "p", data)
	if err != nil {
		t.Fatalf("publish with min_copies 1 and b down: %v", err)
	}
	if br.Backend != "a" {
		t.Errorf("uploads went to %s, want a (the first healthy backend)", br.Backend)
	}
	view, _ := f.reg.GetPackage(ctx, "p", "1")
	if got := view.Pending[d.String()]; len(got) != 1 || got[0] != "b" {
		t.Fatalf("pending copies %v, want [b]", view.Pending)
	}
	if _, err := f.reg.CopyContent(ctx, d, "b", CopyOptions{Reason: "pending", Verify: true}); err == nil {
		t.Fatal("copy to b succeeded while b reports itself down")
	}
	f.bs["b"].setDown(false)
	f.forgetHealth()
	res, err := f.reg.CopyContent(ctx, d, "b", CopyOptions{Reason: "pending", Verify: true})
	if err != nil || res.Outcome != store.CopyCreated || res.Source != "a" {
		t.Fatalf("copy = %+v, %v; want created from a", res, err)
	}
	if l, _ := f.st.GetLocation(ctx, d.String(), "b"); l == nil || l.Status != store.StatusVerified {
		t.Fatalf("location on b = %+v, want verified", l)
	}
	if _, n, _ := f.st.PendingCopies(ctx, 1); n != 0 {
		t.Fatalf("%d pending copies left", n)
	}
}

// TestReadOrder is the read order of docs/ARCHITECTURE.md ("Copies"):
// verified locations first, the most recently verified first; then stored
// ones; failed ones never; a backend that fails is skipped for the next.
func TestReadOrder(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Route{Backends: []string{"a", "b", "c"}}, "a", "b", "c")
	data := []byte("read me from the best copy")
	if _, err := f.publish(ctx, "p", data); err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(data)
	now := time.Now()
	verdict := func(backend, v string, at time.Time) {
		t.Helper()
		l, _ := f.st.GetLocation(ctx, d.String(), backend)
		if err := f.st.RecordVerdict(ctx, store.Verdict{Digest: d.String(), Backend: backend, Mode: store.ModeDeep,
			Verdict: v, At: at, Error: map[bool]string{true: "", false: "test"}[v == store.StatusVerified], Generation: l.Repairs}); err != nil {
			t.Fatal(err)
		}
	}
	readFrom := func() string {
		t.Helper()
		for _, b := range f.bs {
			b.takeOpens()
		}
		rc, err := f.reg.Open(ctx, d, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(body, data) {
			t.Fatalf("read %q, %v", body, err)
		}
		var from []string
		for _, id := range []string{"a", "b", "c"} {
			for n := f.bs[id].takeOpens(); n > 0; n-- {
				from = append(from, id)
			}
		}
		return fmt.Sprint(from)
	}
	// All stored (never verified): backend id order.
	if got := readFrom(); got != "[a]" {
		t.Errorf("all stored: read from %s, want [a]", got)
	}
	// c verified: before the stored ones.
	verdict("c", store.StatusVerified, now.Add(-time.Hour))
	if got := readFrom(); got != "[c]" {
		t.Errorf("c verified: read from %s, want [c]", got)
	}
	// b verified more recently than c.
	verdict("b", store.StatusVerified, now.Add(-time.Minute))
	if got := readFrom(); got != "[b]" {
		t.Errorf("b verified most recently: read from %s, want [b]", got)
	}
	// b failed: never read; c is the best left.
	verdict("b", store.StatusMissing, now)
	if got := readFrom(); got != "[c]" {
		t.Errorf("b missing: read from %s, want [c]", got)
	}
	// c's object gone behind the registry's back: tried, then a.
	if err := os.Remove(f.bs["c"].Path(d)); err != nil {
		t.Fatal(err)
	}
	if got := readFrom(); got != "[a c]" { // listed in id order: c first, then a
		t.Errorf("c lost its object: read from %s, want c tried then a", got)
	}
}
