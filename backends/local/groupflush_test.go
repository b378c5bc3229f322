package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"artifactstore/internal/digest"
)

// withFlush replaces b's group flush with fn (the real one is syncfs).
func withFlush(b *Backend, fn func() error) { b.group = newGroupFlush(fn) }

func blob(i int) ([]byte, digest.Digest) {
	data := bytes.Repeat([]byte(fmt.Sprintf("object %d ", i)), 400)
	return data, digest.FromBytes(data)
}

// Concurrent small Puts share flushes: 32 writers, each needing its data
// and then its name durable, take far fewer flushes than the 64+ fsyncs
// that one file fsync and one directory fsync per Put would cost.
func TestConcurrentPutsShareFlushes(t *testing.T) {
	b := newTest(t, t.TempDir())
	var flushes atomic.Int64
	withFlush(b, func() error {
		flushes.Add(1)
		time.Sleep(20 * time.Millisecond) // a slow device: writers pile up
		return nil
	})
	const writers = 32
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data, d := blob(i)
			errs <- b.Put(context.Background(), d, int64(len(data)), bytes.NewReader(data))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Every Put needs two flushes of its own in sequence; with sharing,
	// a handful of back-to-back flushes serve all 32.
	if n := flushes.Load(); n < 2 || n > writers/2 {
		t.Fatalf("%d flushes for %d concurrent puts, want 2..%d", n, writers, writers/2)
	}
	for i := 0; i < writers; i++ {
		data, d := blob(i)
		got, err := os.ReadFile(b.Path(d))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("object %d: %v", i, err)
		}
	}
}

// Records are flushed before their rename and after it (small content
// objects take one flush after the rename: TestSmallObjectOneFlush): a
// replaced record's new bytes are durable before they take the name.
func TestPutRecordFlushesDataBeforeRename(t *testing.T) {
	b := newTest(t, t.TempDir())
	put := func(s string) {
		t.Helper()
		if err := b.PutRecord(context.Background(), "packages/a/1.json", digest.FromBytes([]byte(s)), int64(len(s)), bytes.NewReader([]byte(s))); err != nil {
			t.Fatal(err)
		}
	}
	put("old")
	p, _ := b.recordPath("packages/a/1.json")
	var seen []string
	withFlush(b, func() error {
		got, _ := os.ReadFile(p)
		seen = append(seen, string(got))
		return nil
	})
	put("new")
	if len(seen) != 2 || seen[0] != "old" || seen[1] != "new" {
		t.Fatalf("record at each flush: %q, want [old new]", seen)
	}
}

// A flush's error reaches every writer of its round; their names stay
// provisional (verified from the disk before anyone trusts them) and no
// temp file is left.
func TestFlushErrorReachesEveryWriterAndLeavesNothing(t *testing.T) {
	root := t.TempDir()
	b := newTest(t, root)
	eio := errors.New("injected writeback error")
	release := make(chan struct{})
	var calls atomic.Int64
	withFlush(b, func() error {
		if calls.Add(1) == 1 {
			<-release // the first round holds until everyone queues for the next
			return nil
		}
		return eio
	})
	// A lone writer occupies the first flush ...
	first := make(chan error, 1)
	go func() {
		data, d := blob(100)
		first <- b.Put(context.Background(), d, int64(len(data)), bytes.NewReader(data))
	}()
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	// ... while 8 more finish writing and queue for the second, which fails.
	const writers = 8
	errs := make(chan error, writers)
	for i := 0; i < writers; i++ {
		go func() {
			data, d := blob(i)
			errs <- b.Put(context.Background(), d, int64(len(data)), bytes.NewReader(data))
		}()
	}
	waitQueued(t, b, writers)
	close(release)
	for i := 0; i < writers; i++ {
		if err := <-errs; !errors.Is(err, eio) {
			t.Fatalf("writer got %v, want the flush's error", err)
		}
	}
	if err := <-first; err != nil {
		t.Fatalf("first writer (its flush succeeded) got %v", err)
	}
	for i := 0; i < writers; i++ {
		if _, d := blob(i); fileExists(b.Path(d)) {
			if st, _ := os.Stat(b.Path(d)); st.Mode().Perm() != modeProvisional {
				t.Fatalf("object %d is %v after its flush failed, want provisional", i, st.Mode().Perm())
			}
		}
	}
	if left, _ := os.ReadDir(filepath.Join(root, TempDir)); len(left) != 0 {
		t.Fatalf("temp files left behind: %d", len(left))
	}
}

// waitQueued waits until n writers wait for the next flush round (plain
// waiters and small writes handed to the flusher).
func waitQueued(t *testing.T, b *Backend, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b.group.mu.Lock()
		q := len(b.group.toRename) // small writes waiting for their data flush
		if b.group.next != nil {
			q += b.group.next.waiters
		}
		b.group.mu.Unlock()
		if q >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("writers never queued for the next flush")
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// A writer arriving while a flush runs is not released by that flush
// (it may have started before the writer's rename) but by the next.
func TestWaitIsServedByAFlushThatStartsAfterIt(t *testing.T) {
	var started atomic.Int64
	gate := make(chan struct{})
	g := newGroupFlush(func() error {
		if started.Add(1) == 1 {
			<-gate
		}
		return nil
	})
	go g.wait() // round 1, held at the gate
	for started.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	done := make(chan int64, 1)
	go func() {
		g.wait()
		done <- started.Load()
	}()
	for {
		g.mu.Lock()
		queued := g.next != nil && g.next.waiters == 1
		g.mu.Unlock()
		if queued {
			break
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("released while the flush that started before it was still running")
	case <-time.After(20 * time.Millisecond):
	}
	close(gate)
	if n := <-done; n != 2 {
		t.Fatalf("released after %d flushes started, want 2", n)
	}
}
