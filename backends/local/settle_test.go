package local

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

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
		if started.Add(1) == 2 { // the first writer's flush after its rename
			<-hold
		}
		return nil
	})
	first := make(chan error, 1)
	go func() { first <- b.Put(context.Background(), d, int64(len(data)), bytes.NewReader(data)) }()
	for started.Load() < 2 {
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
	// the Stat found the name: the held one (2) had started before.
	if n := started.Load(); n != 3 {
		t.Fatalf("%d flushes, want 3 (data, the first name's, one more for the waiters)", n)
	}
	// Settled now: a Stat trusts the name without another flush.
	if _, err := b.Stat(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if n := started.Load(); n != 3 {
		t.Fatalf("a Stat of a settled name flushed again (%d flushes)", n)
	}
}

// A name whose flush after the rename failed is not known to be durable:
// the writer's Put fails, and whoever finds the name next flushes again
// before trusting it (and reports that flush's error if it fails too).
func TestNameWhoseFlushFailedIsFlushedBeforeItIsTrusted(t *testing.T) {
	b := newTest(t, t.TempDir())
	data, d := blob(8)
	eio := errors.New("injected writeback error")
	var calls atomic.Int64
	fail := map[int64]bool{2: true, 3: true} // the writer's name flush, then the first Stat's
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
	if n := calls.Load(); n != 4 {
		t.Fatalf("%d flushes, want 4", n)
	}
	if _, err := b.Stat(context.Background(), d); err != nil || calls.Load() != 4 {
		t.Fatalf("Stat of the name settled by that flush: %v, %d flushes (want no new one)", err, calls.Load())
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
