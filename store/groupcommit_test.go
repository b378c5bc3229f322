package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openGroupTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "g.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("test")); return err }); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestWritesArrivingDuringACommitShareTheNext: while one write's
// transaction is held open, 50 more writes arrive, 3 ms apart; they must
// all commit together in at most two more transactions (bbolt's Batch, as
// used before, put them in one transaction per 1 ms window, each queued
// behind the writer lock: about 50), every one durable and visible when
// its call returns.
func TestWritesArrivingDuringACommitShareTheNext(t *testing.T) {
	s := openGroupTest(t)
	release := make(chan struct{})
	entered := make(chan struct{})
	var mu sync.Mutex
	txs := map[int]int{} // transaction id -> writes committed in it
	put := func(key string, hold bool) error {
		return s.batch(func(tx *bolt.Tx) error {
			if hold {
				close(entered)
				<-release
			}
			id := tx.ID()
			tx.OnCommit(func() { mu.Lock(); txs[id]++; mu.Unlock() })
			return tx.Bucket([]byte("test")).Put([]byte(key), []byte("v"))
		})
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); put("first", true) }()
	<-entered
	for i := 0; i < 50; i++ {
		time.Sleep(3 * time.Millisecond)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := put(fmt.Sprint(i), false); err != nil {
				t.Error(err)
				return
			}
			s.db.View(func(tx *bolt.Tx) error {
				if tx.Bucket([]byte("test")).Get([]byte(fmt.Sprint(i))) == nil {
					t.Errorf("write %d not visible when its call returned", i)
				}
				return nil
			})
		}()
	}
	time.Sleep(20 * time.Millisecond) // let the last one queue
	close(release)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, n := range txs {
		total += n
	}
	if total != 51 || len(txs) > 3 {
		t.Fatalf("51 writes committed as %d writes in %d transactions (%v); want all, in at most 3", total, len(txs), txs)
	}
}

// TestAFailingWriteLeavesTheOthers: a write whose function fails gets its
// own error and leaves nothing; the writes grouped with it commit.
func TestAFailingWriteLeavesTheOthers(t *testing.T) {
	s := openGroupTest(t)
	boom := errors.New("boom")
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.batch(func(tx *bolt.Tx) error {
				if err := tx.Bucket([]byte("test")).Put([]byte(fmt.Sprint(i)), []byte("v")); err != nil {
					return err
				}
				if i%10 == 3 {
					return fmt.Errorf("write %d: %w", i, boom)
				}
				return nil
			})
		}()
	}
	wg.Wait()
	s.db.View(func(tx *bolt.Tx) error {
		for i, err := range errs {
			got := tx.Bucket([]byte("test")).Get([]byte(fmt.Sprint(i))) != nil
			if fail := i%10 == 3; fail != errors.Is(err, boom) || got == fail {
				t.Errorf("write %d: err %v, stored %v", i, err, got)
			}
		}
		return nil
	})
}

// TestGroupCommitAfterClose: Close commits what is queued; later writes fail.
func TestGroupCommitAfterClose(t *testing.T) {
	s := openGroupTest(t)
	if err := s.batch(func(tx *bolt.Tx) error { return tx.Bucket([]byte("test")).Put([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.batch(func(tx *bolt.Tx) error { return nil }); err == nil {
		t.Fatal("write after Close succeeded")
	}
}

// TestEarlyWriteReturnsBeforeItsCommit: doEarly returns once its group's
// functions have run, while the group's commit is still going on (held
// here by a commit handler of another write of the group); settle waits
// for that commit, and a read transaction after settle sees the write.
func TestEarlyWriteReturnsBeforeItsCommit(t *testing.T) {
	s := openGroupTest(t)
	// A first write holds the committer, so the next two queue together.
	entered, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- s.batch(func(tx *bolt.Tx) error { close(entered); <-release; return nil })
	}()
	<-entered
	hold := make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- s.batch(func(tx *bolt.Tx) error {
			tx.OnCommit(func() { <-hold })
			return tx.Bucket([]byte("test")).Put([]byte("held"), []byte("v"))
		})
	}()
	early := make(chan error, 1)
	go func() {
		early <- s.batchEarly(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("test")).Put([]byte("early"), []byte("v"))
		}, func(err error) { t.Errorf("commit failed: %v", err) })
	}()
	for queued := 0; queued < 2; {
		time.Sleep(time.Millisecond)
		s.group.mu.Lock()
		queued = len(s.group.pending)
		s.group.mu.Unlock()
	}
	close(release)
	defer close(hold) // never leave the committer blocked
	select {
	case err := <-early:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the early write waited for its commit")
	}
	select {
	case err := <-held:
		t.Fatalf("the held write returned (%v) before its commit handler", err)
	default:
	}
	settled := make(chan struct{})
	go func() { s.settle(); close(settled) }()
	select {
	case <-settled:
		t.Fatal("settle returned before the early write's commit")
	case <-time.After(100 * time.Millisecond):
	}
	hold <- struct{}{}
	<-settled
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte("test")).Get([]byte("early")) == nil {
			t.Error("the early write is not visible after settle")
		}
		return nil
	})
}

// TestEarlyWriteWhoseCommitFails: the early caller has its nil already;
// the failure reaches its failed function, and nothing it wrote stays.
// settle does not wait for ever on a failed commit.
func TestEarlyWriteWhoseCommitFails(t *testing.T) {
	s := openGroupTest(t)
	boom := errors.New("disk gone")
	s.group.update = func(fn func(*bolt.Tx) error) error {
		return s.db.Update(func(tx *bolt.Tx) error {
			if err := fn(tx); err != nil {
				return err
			}
			return boom // rolls back, as a failed commit leaves nothing
		})
	}
	failed := make(chan error, 1)
	err := s.batchEarly(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("test")).Put([]byte("early"), []byte("v"))
	}, func(err error) { failed <- err })
	if err != nil {
		t.Fatalf("early write: %v", err)
	}
	if err := <-failed; !errors.Is(err, boom) {
		t.Fatalf("failed got %v, want %v", err, boom)
	}
	s.settle()
	// A durable write in the same situation gets the error itself.
	if err := s.batch(func(tx *bolt.Tx) error { return nil }); !errors.Is(err, boom) {
		t.Fatalf("durable write: %v, want %v", err, boom)
	}
	s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte("test")).Get([]byte("early")) != nil {
			t.Error("a write whose commit failed is stored")
		}
		return nil
	})
}

// TestEarlyWriteThatFails: an early write whose own function fails gets
// its error (it runs alone, durably) and the others of its group commit.
func TestEarlyWriteThatFails(t *testing.T) {
	s := openGroupTest(t)
	boom := errors.New("boom")
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.batchEarly(func(tx *bolt.Tx) error {
				if err := tx.Bucket([]byte("test")).Put([]byte(fmt.Sprint(i)), []byte("v")); err != nil {
					return err
				}
				if i%5 == 2 {
					return boom
				}
				return nil
			}, func(err error) { t.Errorf("write %d: commit failed: %v", i, err) })
		}()
	}
	wg.Wait()
	s.settle()
	s.db.View(func(tx *bolt.Tx) error {
		for i, err := range errs {
			got := tx.Bucket([]byte("test")).Get([]byte(fmt.Sprint(i))) != nil
			if fail := i%5 == 2; fail != errors.Is(err, boom) || got == fail {
				t.Errorf("write %d: err %v, stored %v", i, err, got)
			}
		}
		return nil
	})
}
