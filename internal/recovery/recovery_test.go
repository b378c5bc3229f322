package recovery

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"artifactstore/backends"
	"artifactstore/backends/local"
	"artifactstore/internal/digest"
	"artifactstore/store"
)

// flaky wraps a local backend; while fail is set every record write fails.
type flaky struct {
	*local.Backend
	fail atomic.Bool
}

var errInjected = errors.New("injected record failure")

func (f *flaky) PutRecord(ctx context.Context, name string, d digest.Digest, size int64, body io.Reader) error {
	if f.fail.Load() {
		return errInjected
	}
	return f.Backend.PutRecord(ctx, name, d, size, body)
}

type testEnv struct {
	t   *testing.T
	st  *store.Store
	bs  map[string]backends.Backend
	a   *flaky
	b   *local.Backend
	m   *Manager
	ctx context.Context
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.DiscardHandler)
	la, err := local.New("a", local.Config{Root: filepath.Join(dir, "a"), KeyPrefix: "p"}, log)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := local.New("b", local.Config{Root: filepath.Join(dir, "b")}, log)
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, st: st, a: &flaky{Backend: la}, b: lb, ctx: context.Background()}
	e.bs = map[string]backends.Backend{"a": e.a, "b": lb}
	e.m = New(st, e.bs, Options{Logger: log})
	return e
}

// publish stores the files' content in backend and commits the package.
func (e *testEnv) publish(name, version, backend string, labels map[string]string, contents ...string) *store.Package {
	e.t.Helper()
	draft := store.Package{Name: name, Version: version, Producer: "ci", RetentionClass: "ci", Labels: labels}
	var needed []string
	for i, c := range contents {
		d := digest.FromBytes([]byte(c))
		if err := e.bs[backend].Put(e.ctx, d, int64(len(c)), strings.NewReader(c)); err != nil {
			e.t.Fatal(err)
		}
		draft.Files = append(draft.Files, store.File{Path: "f" + string(rune('0'+i)), Size: int64(len(c)), Digest: d.String(),
			MediaType: "text/plain", Backend: backend})
		if !slices.Contains(needed, d.String()) {
			needed = append(needed, d.String())
		}
	}
	sess, err := e.st.CreateSession(e.ctx, draft, needed, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := e.st.Commit(e.ctx, sess.ID, needed)
	if err != nil {
		e.t.Fatal(err)
	}
	return res.Package
}

func (e *testEnv) del(name, version string) {
	e.t.Helper()
	if _, err := e.st.DeletePackage(e.ctx, name, version, store.Deletion{Reason: "test", By: "test"}); err != nil {
		e.t.Fatal(err)
	}
}

func records(t *testing.T, rs backends.RecordStore) []string {
	t.Helper()
	var out []string
	if err := rs.ListRecords(context.Background(), "", func(i backends.RecordInfo) error { out = append(out, i.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func readRec(t *testing.T, rs backends.RecordStore, name string) *Record {
	t.Helper()
	rc, _, err := rs.OpenRecord(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	r, err := ReadRecord(rc)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func putRaw(t *testing.T, rs backends.RecordStore, name string, raw []byte) {
	t.Helper()
	if err := rs.PutRecord(context.Background(), name, digest.FromBytes(raw), int64(len(raw)), bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
}

func TestRecordRoundTripAndTamper(t *testing.T) {
	p := &store.Package{Name: "app", Version: "1.0+b.1", Producer: "ci", RetentionClass: "release",
		Labels: map[string]string{"team": "x", "os": "linux"}, CreatedAt: time.Date(2026, 11, 27, 10, 0, 0, 123, time.UTC), Seq: 7,
		Files: []store.File{{Path: "bin/app", Size: 3, Digest: digest.FromBytes([]byte("abc")).String(), MediaType: "application/octet-stream", Backend: "rgw"}}}
	raw := RecordOf(p).Encode()
	r, err := ReadRecord(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	got := r.Package()
	if store.PackageDiff(p, &got) != "" || !got.CreatedAt.Equal(p.CreatedAt) || got.Seq != 7 || got.Files[0].Backend != "rgw" {
		t.Fatalf("round trip changed the package: %+v", got)
	}
	for _, c := range []struct {
		name      string
		old, new_ string
		want      error
	}{
		{"label value", `"linux"`, `"linuz"`, ErrTampered},
		{"file size", `"size": 3`, `"size": 4`, ErrTampered},
		{"own digest", `"digest": "sha256:`, `"digest": "sha256:0`, ErrTampered},
		{"unknown field", `"format": 1,`, `"format": 1, "x": 1,`, ErrBadRecord},
		{"other format", `"format": 1,`, `"format": 2,`, ErrBadRecord},
		{"trailing data", "}\n", "}{}\n", ErrBadRecord},
	} {
		bad := strings.Replace(string(raw), c.old, c.new_, 1)
		if bad == string(raw) {
			t.Fatalf("%s: the edit did not apply to %s", c.name, raw)
		}
		if _, err := ReadRecord(strings.NewReader(bad)); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	if n, v, ok := ParseRecordName(RecordName("app", "1.0+b.1")); !ok || n != "app" || v != "1.0+b.1" {
		t.Fatalf("ParseRecordName: %q %q %v", n, v, ok)
	}
	for _, bad := range []string{"packages/app.json", "packages/a/b/c.json", "snapshots/a/1.json", "packages/a/.json", "packages/a/1"} {
		if _, _, ok := ParseRecordName(bad); ok {
			t.Errorf("ParseRecordName(%q) accepted", bad)
		}
	}
}

// TestOutboxWritesAndRemovesRecords: a commit leaves an outbox entry that
// Drain turns into a record on the backend holding the content; a delete
// removes it; a package deleted and published again elsewhere before the
// drain leaves no stale record behind.
func TestOutboxWritesAndRemovesRecords(t *testing.T) {
	e := newEnv(t)
	p := e.publish("p", "1", "a", map[string]string{"k": "v"}, "one", "two")
	e.publish("q", "1", "b", nil, "three")
	if got := records(t, e.a); len(got) != 0 {
		t.Fatalf("records before the outbox was drained: %v", got)
	}
	if n, err := e.m.Drain(e.ctx); err != nil || n != 2 {
		t.Fatalf("drain: %d, %v", n, err)
	}
	if got := records(t, e.a); !slices.Equal(got, []string{"packages/p/1.json"}) {
		t.Fatalf("records on a: %v", got)
	}
	if got := records(t, e.b); !slices.Equal(got, []string{"packages/q/1.json"}) {
		t.Fatalf("records on b: %v", got)
	}
	if r := readRec(t, e.a, "packages/p/1.json"); !r.Same(RecordOf(p)) {
		t.Fatalf("record differs from the package: %+v", r)
	}
	if pend, _ := e.st.PendingRecords(e.ctx, store.PackageKey{}, 10); len(pend) != 0 {
		t.Fatalf("outbox after drain: %v", pend)
	}

	e.del("p", "1")
	if _, err := e.m.Drain(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := records(t, e.a); len(got) != 0 {
		t.Fatalf("record of a deleted package kept: %v", got)
	}

	e.del("q", "1")
	q2 := e.publish("q", "1", "a", nil, "other content")
	if _, err := e.m.Drain(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := records(t, e.b); len(got) != 0 {
		t.Fatalf("stale record of the deleted q@1 kept on b: %v", got)
	}
	if r := readRec(t, e.a, "packages/q/1.json"); !r.Same(RecordOf(q2)) {
		t.Fatal("record of the republished q@1 is not the new one")
	}
}

// TestFailedRecordWriteStaysInOutbox: a backend that refuses the record
// keeps the entry (and the error says which); the next drain writes it.
func TestFailedRecordWriteStaysInOutbox(t *testing.T) {
	e := newEnv(t)
	e.a.fail.Store(true)
	e.publish("p", "1", "a", nil, "x")
	e.publish("q", "1", "b", nil, "y")
	n, err := e.m.Drain(e.ctx)
	if !errors.Is(err, errInjected) || n != 1 {
		t.Fatalf("drain with a failing backend: %d, %v", n, err)
	}
	if pend, _ := e.st.PendingRecords(e.ctx, store.PackageKey{}, 10); len(pend) != 1 || pend[0].Name != "p" {
		t.Fatalf("outbox after a failed write: %+v", pend)
	}
	e.a.fail.Store(false)
	if err := e.m.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := records(t, e.a); !slices.Equal(got, []string{"packages/p/1.json"}) {
		t.Fatalf("records on a after the retry: %v", got)
	}
}

// TestCompareNamesEveryDifferenceAndRepairFixesTheSafeOnes.
func TestCompareNamesEveryDifferenceAndRepairFixesTheSafeOnes(t *testing.T) {
	e := newEnv(t)
	p := e.publish("p", "1", "a", map[string]string{"os": "linux"}, "one")
	q := e.publish("q", "1", "b", nil, "two")
	r := e.publish("r", "1", "a", nil, "three")
	if err := e.m.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	if probs, err := e.m.Compare(e.ctx, 100); err != nil || len(probs) != 0 {
		t.Fatalf("compare of a consistent store: %v, %v", probs, err)
	}
	// Tampered: a label changed without fixing the digest.
	raw := RecordOf(p).Encode()
	putRaw(t, e.a, "packages/p/1.json", bytes.Replace(raw, []byte(`"linux"`), []byte(`"windows"`), 1))
	// Missing.
	if err := e.b.DeleteRecord(e.ctx, "packages/q/1.json"); err != nil {
		t.Fatal(err)
	}
	// Differs, with a valid digest.
	other := *r
	other.Producer = "someone-else"
	putRaw(t, e.a, "packages/r/1.json", RecordOf(&other).Encode())
	// A record of a package the database does not have.
	ghost := *q
	ghost.Name = "ghost"
	putRaw(t, e.b, "packages/ghost/1.json", RecordOf(&ghost).Encode())
	// A record stored under another package's name.
	putRaw(t, e.b, "packages/moved/1.json", RecordOf(q).Encode())

	probs, err := e.m.Compare(e.ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, pr := range probs {
		got[pr.Subject] = pr.Kind
	}
	want := map[string]string{
		"a:packages/p/1.json":     ProblemRecordTampered,
		"b:packages/q/1.json":     ProblemPackageWithoutRecord,
		"a:packages/r/1.json":     ProblemRecordDiffers,
		"b:packages/ghost/1.json": ProblemRecordWithoutPackage,
		"b:packages/moved/1.json": ProblemRecordInvalid,
	}
	if len(got) != len(want) {
		t.Errorf("problems: %v", probs)
	}
	for s, k := range want {
		if got[s] != k {
			t.Errorf("%s: got %q, want %q (all: %v)", s, got[s], k, probs)
		}
	}
	fixed, err := e.m.Repair(e.ctx, probs)
	if err != nil {
		t.Fatal(err)
	}
	if len(fixed) != 3 {
		t.Errorf("repaired %v, want the tampered, missing and differing records", fixed)
	}
	after, err := e.m.Compare(e.ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 2 {
		t.Fatalf("after repair: %v, want only the records of packages the database lacks", after)
	}
	for _, pr := range after {
		if pr.Kind != ProblemRecordWithoutPackage && pr.Kind != ProblemRecordInvalid {
			t.Errorf("left after repair: %v", pr)
		}
	}
	if rec := readRec(t, e.a, "packages/p/1.json"); !rec.Same(RecordOf(p)) {
		t.Error("the tampered record was not rewritten from the database")
	}
}

// TestRecordFollowsACompleteCopy: when a second backend comes to hold all
// of a package's content (a copy), the package's record is written there
// too; a backend holding only part of it gets none.
func TestRecordFollowsACompleteCopy(t *testing.T) {
	e := newEnv(t)
	p := e.publish("p", "1", "a", nil, "one", "two")
	if err := e.m.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	copyTo := func(f store.File) {
		t.Helper()
		c := "one"
		if f.Path == "f1" {
			c = "two"
		}
		if err := e.b.Put(e.ctx, digest.FromBytes([]byte(c)), f.Size, strings.NewReader(c)); err != nil {
			t.Fatal(err)
		}
		// The location a copy records (internal/replication does the same
		// through putLocation).
		if err := e.st.AddLocation(e.ctx, store.Location{Digest: f.Digest, Backend: "b", Size: f.Size, Status: store.StatusStored, StoredAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	copyTo(p.Files[0])
	if err := e.m.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := records(t, e.b); len(got) != 0 {
		t.Fatalf("a backend holding half of the package got its record: %v", got)
	}
	copyTo(p.Files[1])
	if err := e.m.Flush(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := records(t, e.b); !slices.Equal(got, []string{"packages/p/1.json"}) {
		t.Fatalf("records on the backend that now holds all of p: %v", got)
	}
	if probs, err := e.m.Compare(e.ctx, 10); err != nil || len(probs) != 0 {
		t.Fatalf("compare after the copy: %v %v", probs, err)
	}
}
