package local

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"artifactstore/backends"
	"artifactstore/internal/digest"
	"artifactstore/internal/durable"
)

// A Put (or Stat) that finds a name another Put has renamed into place
// but is still flushing must not report it before a flush that started
// after it has made the name durable: its caller commits a package that
// refers to the object and acknowledges it as durable.
func TestNameStillBeingFlushedIsNotTrustedBeforeItsFlush(t *testing.T) {
	b := newTest(t, t.TempDir())
	data, d := blob(7)
	hold := make(chan struct{})
	var started atomic.Int64
	withFlush(b, func() error {
		if started.Add(1) == 1 { // the first writer's flush after its rename
			<-hold
		}
		return nil
	})
	first := make(chan error, 1)
	go func() { first <- b.Put(context.Background(), d, int64(len(data)), bytes.NewReader(data)) }()
	for started.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	if !fileExists(b.Path(d)) {
		t.Fatal("the first writer's name is not visible while its flush runs")
	}
	second := make(chan error, 1)
	go func() { second <- b.Put(context.Background(), d, int64(len(data)), bytes.NewReader(data)) }()
	stat := make(chan error, 1)
	go func() { _, err := b.Stat(context.Background(), d); stat <- err }()
	// Both must queue for the flush after the held one (without the fix
	// they return at once, before queueing, and this fails).
	for deadline := time.Now().Add(10 * time.Second); ; {
		select {
		case err := <-second:
			t.Fatalf("Put of the same content returned (%v) while the existing name was not durable", err)
		case err := <-stat:
			t.Fatalf("Stat returned (%v) while the name was not durable", err)
		case <-time.After(time.Millisecond):
		}
		b.group.mu.Lock()
		queued := b.group.next != nil && b.group.next.waiters == 2
		b.group.mu.Unlock()
		if queued {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second Put and the Stat never queued for a flush")
		}
	}
	close(hold)
	for name, c := range map[string]chan error{"first Put": first, "second Put": second, "Stat": stat} {
		if err := <-c; err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// The flush that released them started after the second writer and
	// the Stat found the name: the held one (1) had started before.
	if n := started.Load(); n != 2 {
		t.Fatalf("%d flushes, want 2 (the first writer's, one more for the waiters)", n)
	}
	// Settled now: a Stat trusts the name without another flush.
	if _, err := b.Stat(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if n := started.Load(); n != 2 {
		t.Fatalf("a Stat of a settled name flushed again (%d flushes)", n)
	}
}

// A large object's name whose flush after the rename failed is not
// known to be durable (its bytes were fsynced before the rename): the
// writer's Put fails, and whoever finds the name next flushes again
// before trusting it (and reports that flush's error if it fails too).
func TestNameWhoseFlushFailedIsFlushedBeforeItIsTrusted(t *testing.T) {
	b := newTest(t, t.TempDir())
	data := bytes.Repeat([]byte("large object "), groupFlushBelow/8)
	d := digest.FromBytes(data)
	eio := errors.New("injected writeback error")
	var calls atomic.Int64
	fail := map[int64]bool{1: true, 2: true} // the writer's name flush, then the first Stat's
	withFlush(b, func() error {
		if fail[calls.Add(1)] {
			return eio
		}
		return nil
	})
	if err := b.Put(context.Background(), d, int64(len(data)), bytes.NewReader(data)); !errors.Is(err, eio) {
		t.Fatalf("Put whose name flush failed: %v, want the flush's error", err)
	}
	if _, err := b.Stat(context.Background(), d); !errors.Is(err, eio) {
		t.Fatalf("Stat of the unsettled name, its flush failing: %v, want the flush's error", err)
	}
	if err := b.Put(context.Background(), d, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("Put finding the name, its flush succeeding: %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d flushes, want 3", n)
	}
	if _, err := b.Stat(context.Background(), d); err != nil || calls.Load() != 3 {
		t.Fatalf("Stat of the name settled by that flush: %v, %d flushes (want no new one)", err, calls.Load())
	}
}

// A small object is renamed before the one flush that makes its bytes
// and its name durable, and is provisional (read-only) until then: the
// flush sees the name provisional, the Put returns with it settled, and
// a lone Put costs exactly one flush. When that flush fails, the Put
// fails and the name stays provisional (another writer may rely on the
// same name): a Stat then verifies it from the disk before trusting it.
func TestSmallObjectOneFlush(t *testing.T) {
	b := newTest(t, t.TempDir())
	data, d := blob(12)
	var calls atomic.Int64
	var during fs.FileMode
	fail := false
	eio := errors.New("injected writeback error")
	withFlush(b, func() error {
		calls.Add(1)
		if st, err := os.Stat(b.Path(d)); err == nil {
			during = st.Mode().Perm()
		}
		if fail {
			return eio
		}
		return nil
	})
	if err := b.Put(context.Background(), d, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(b.Path(d))
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 || during != modeProvisional || st.Mode().Perm() != modeSettled {
		t.Fatalf("%d flushes, mode %v during the flush and %v after; want 1, %v, %v", calls.Load(), during, st.Mode().Perm(), modeProvisional, modeSettled)
	}

	data2, d2 := blob(13)
	fail = true
	if err := b.Put(context.Background(), d2, int64(len(data2)), bytes.NewReader(data2)); !errors.Is(err, eio) {
		t.Fatalf("Put whose flush failed: %v, want the flush's error", err)
	}
	if st, err := os.Stat(b.Path(d2)); err != nil || st.Mode().Perm() != modeProvisional {
		t.Fatalf("name of a Put whose flush failed: %v, %v; want it there, provisional", st, err)
	}
	fail = false
	if _, err := b.Stat(context.Background(), d2); err != nil {
		t.Fatalf("Stat of the name, verified from the disk: %v", err)
	}
	if st, _ := os.Stat(b.Path(d2)); st.Mode().Perm() != modeSettled {
		t.Fatalf("mode after the verification: %v, want %v", st.Mode().Perm(), modeSettled)
	}
}

// A Replace whose flush fails leaves an object under the name: its new
// bytes were made durable before they replaced the old ones (a small
// object too), so the name never holds bytes a failed flush lost.
func TestReplaceWithAFailedFlushLeavesTheObject(t *testing.T) {
	b := newTest(t, t.TempDir())
	data, d := blob(31)
	var fail atomic.Bool
	eio := errors.New("injected writeback error of another file")
	withFlush(b, func() error {
		if fail.Load() {
			return eio
		}
		return nil
	})
	ctx := context.Background()
	if err := b.Put(ctx, d, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	if err := b.Replace(ctx, d, int64(len(data)), bytes.NewReader(data)); !errors.Is(err, eio) {
		t.Fatalf("Replace: %v, want the flush error", err)
	}
	fail.Store(false)
	if _, err := b.Stat(ctx, d); err != nil {
		t.Fatalf("the object a failed Replace must leave in place: %v", err)
	}
}

// A Stat that finds a small object another Put is still flushing, whose
// flush then fails, does not report the object on the strength of its
// own later flush alone, and the failed writer does not take the name
// away from under it.
func TestStatOfANameWhoseWriterFlushFails(t *testing.T) {
	b := newTest(t, t.TempDir())
	data, d := blob(32)
	hold := make(chan struct{})
	var calls atomic.Int64
	eio := errors.New("injected writeback error")
	withFlush(b, func() error {
		if calls.Add(1) == 1 {
			<-hold
			return eio
		}
		return nil
	})
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { first <- b.Put(ctx, d, int64(len(data)), bytes.NewReader(data)) }()
	for calls.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	second := make(chan error, 1)
	go func() { _, err := b.Stat(ctx, d); second <- err }()
	waitQueued(t, b, 1) // the Stat waits for the round after the held one
	close(hold)
	if err := <-first; !errors.Is(err, eio) {
		t.Fatalf("first Put: %v, want its flush error", err)
	}
	if err := <-second; err != nil {
		t.Fatalf("Stat of bytes that are on the disk (verified there): %v", err)
	}
	if !fileExists(b.Path(d)) {
		t.Fatal("the Stat reported the object, but its name is gone")
	}
}

// A crash between a small object's rename and its flush leaves the name
// provisional, its bytes possibly never written: a later process reads
// and hashes such a name before trusting it. Bytes that match are made
// durable and the name settled without a rewrite; bytes that do not are
// not found by Stat and rewritten by Put.
func TestProvisionalRemainsAreVerifiedBeforeTheyAreTrusted(t *testing.T) {
	b := newTest(t, t.TempDir())
	var calls atomic.Int64
	withFlush(b, func() error { calls.Add(1); return nil })
	remains := func(d digest.Digest, body []byte) {
		t.Helper()
		p := b.Path(d)
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, body, modeProvisional); err != nil {
			t.Fatal(err)
		}
	}

	good, dg := blob(14)
	remains(dg, good)
	before, _ := os.Stat(b.Path(dg))
	if info, err := b.Stat(context.Background(), dg); err != nil || info.Size != int64(len(good)) {
		t.Fatalf("Stat of provisional bytes that match: %+v, %v", info, err)
	}
	after, _ := os.Stat(b.Path(dg))
	if calls.Load() != 1 || after.Mode().Perm() != modeSettled || !os.SameFile(before, after) {
		t.Fatalf("%d flushes, mode %v, same file %v; want 1 flush, settled in place", calls.Load(), after.Mode().Perm(), os.SameFile(before, after))
	}

	bad, db := blob(15)
	remains(db, make([]byte, len(bad))) // the size reached the disk, the bytes did not
	if _, err := b.Stat(context.Background(), db); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("Stat of provisional bytes that do not match: %v, want ErrNotFound", err)
	}
	if err := b.Put(context.Background(), db, int64(len(bad)), bytes.NewReader(bad)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(b.Path(db))
	if err != nil || !bytes.Equal(got, bad) {
		t.Fatalf("after a Put over provisional garbage the object holds %d bytes (%v), want its content", len(got), err)
	}
	if st, _ := os.Stat(b.Path(db)); st.Mode().Perm() != modeSettled {
		t.Fatalf("rewritten object's mode %v, want %v", st.Mode().Perm(), modeSettled)
	}
}

// Names an earlier process left behind may have been renamed without
// the flush after it (the process was killed in between): this process
// trusts them only after one flush of its own.
func TestNamesOfAnEarlierProcessAreTrustedAfterOneFlush(t *testing.T) {
	root := t.TempDir()
	data, d := blob(9)
	if err := newTest(t, root).Put(context.Background(), d, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	b := newTest(t, root) // the next process
	var calls atomic.Int64
	withFlush(b, func() error { calls.Add(1); return nil })
	for i := 0; i < 3; i++ {
		if _, err := b.Stat(context.Background(), d); err != nil {
			t.Fatal(err)
		}
		if err := b.Put(context.Background(), d, int64(len(data)), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d flushes before trusting an earlier process's name, want 1", n)
	}
}

// With `sync: file` there is no shared flush: a writer that finds a
// directory (or a name) another writer has created but not yet made
// durable fsyncs its parent (or it) itself before relying on it.
func TestFileModeSettlesWhatAnotherWriterHasNotMadeDurable(t *testing.T) {
	b, err := New("local", Config{Root: t.TempDir(), KeyPrefix: "objects", Sync: SyncFile}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var synced []string
	b.syncDir = func(dir string) error { synced = append(synced, dir); return durable.SyncDir(dir) }

	// Another writer has just created the object's directory and not yet
	// fsynced its parent.
	data, d := blob(10)
	dir := filepath.Dir(b.Path(d))
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	b.unsettled.add(dir)
	if err := b.Put(context.Background(), d, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Dir(dir), dir}; !slices.Equal(synced, want) {
		t.Fatalf("directories fsynced by a Put into another writer's new directory: %q, want %q", synced, want)
	}

	// Another writer has just renamed an object into place and not yet
	// fsynced its directory.
	data2, d2 := blob(11)
	dir2 := filepath.Dir(b.Path(d2))
	if err := os.MkdirAll(dir2, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.Path(d2), data2, 0o640); err != nil {
		t.Fatal(err)
	}
	b.unsettled.add(b.Path(d2))
	synced = nil
	if _, err := b.Stat(context.Background(), d2); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(context.Background(), d2, int64(len(data2)), bytes.NewReader(data2)); err != nil {
		t.Fatal(err)
	}
	if want := []string{dir2, dir2}; !slices.Equal(synced, want) {
		t.Fatalf("directories fsynced by a Stat and a Put of another writer's unsettled name: %q, want %q", synced, want)
	}
}

// Two Puts of the same small content that both found no name: the
// second must not put its provisional file over the object the first
// has written and reported durable (from the review of 2b2e089).
func TestSecondWriteSmallDoesNotReplaceAnAcknowledgedObject(t *testing.T) {
	root := t.TempDir()
	b := newTest(t, root)
	var fail atomic.Bool
	eio := errors.New("injected writeback error")
	withFlush(b, func() error {
		if fail.Load() {
			return eio
		}
		return nil
	})
	data, d := blob(40)
	ctx := context.Background()
	g1 := &gatedReader{gate: make(chan struct{}), r: bytes.NewReader(data)}
	g2 := &gatedReader{gate: make(chan struct{}), r: bytes.NewReader(data)}
	e1, e2 := make(chan error, 1), make(chan error, 1)
	go func() { e1 <- b.Put(ctx, d, int64(len(data)), g1) }()
	go func() { e2 <- b.Put(ctx, d, int64(len(data)), g2) }()
	for deadline := time.Now().Add(5 * time.Second); ; { // both past their Stat
		if left, _ := os.ReadDir(filepath.Join(root, TempDir)); len(left) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Puts never created their temp files")
		}
		time.Sleep(time.Millisecond)
	}
	close(g1.gate)
	if err := <-e1; err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(ctx, d); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(b.Path(d))
	fail.Store(true) // any flush the second Put waited for would fail
	close(g2.gate)
	if err := <-e2; err != nil {
		t.Fatalf("second Put, finding the first one's durable object: %v", err)
	}
	after, _ := os.Stat(b.Path(d))
	if !os.SameFile(before, after) || after.Mode().Perm() != modeSettled {
		t.Fatalf("acknowledged object replaced: same inode %v, mode now %v", os.SameFile(before, after), after.Mode().Perm())
	}
	if left, _ := os.ReadDir(filepath.Join(root, TempDir)); len(left) != 0 {
		t.Fatalf("temp files left behind: %d", len(left))
	}
}

type gatedReader struct {
	gate chan struct{}
	r    io.Reader
}

func (g *gatedReader) Read(p []byte) (int, error) { <-g.gate; return g.r.Read(p) }

// syncfs reports a write-back error to the first flush after it: when
// that is a round other writers waited for, the writer whose pages it
// wrote back waits for the next round, which succeeds. A writer that
// sees a flush fail after its bytes were written therefore asks its own
// descriptor (fsync reports the file's error), and fails and stays
// provisional when that reports one (from the review of 2b2e089).
func TestSmallObjectWrittenBackByAFailedEarlierRoundIsNotSettled(t *testing.T) {
	b := newTest(t, t.TempDir())
	hold := make(chan struct{})
	var calls atomic.Int64
	eio := errors.New("injected writeback error of the writer's pages")
	withFlush(b, func() error {
		if calls.Add(1) == 1 {
			<-hold
			return eio
		}
		return nil
	})
	var owned atomic.Int64
	b.group.syncFile = func(*os.File) error { owned.Add(1); return eio }
	data, d := blob(41)
	body := &onEOFReader{r: bytes.NewReader(data), f: func() {
		go b.group.wait() // another writer's round starts after our bytes are written
		for calls.Load() < 1 {
			time.Sleep(time.Millisecond)
		}
	}}
	done := make(chan error, 1)
	go func() { done <- b.Put(context.Background(), d, int64(len(data)), body) }()
	waitQueued(t, b, 1)
	close(hold)
	err := <-done
	st, _ := os.Stat(b.Path(d))
	if !errors.Is(err, eio) || owned.Load() != 1 || st.Mode().Perm() != modeProvisional {
		t.Fatalf("Put: %v after %d fsyncs of its own, mode %v; want the file's error, 1, provisional", err, owned.Load(), st.Mode().Perm())
	}
}

type onEOFReader struct {
	r    io.Reader
	f    func()
	done bool
}

func (o *onEOFReader) Read(p []byte) (int, error) {
	n, err := o.r.Read(p)
	if n == 0 && err == io.EOF && !o.done {
		o.done = true
		o.f()
	}
	return n, err
}
