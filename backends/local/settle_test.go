package local

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
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
	select {
	case err := <-second:
		t.Fatalf("Put of the same content returned (%v) while the existing name was not durable", err)
	case err := <-stat:
		t.Fatalf("Stat returned (%v) while the name was not durable", err)
	case <-time.After(50 * time.Millisecond):
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
