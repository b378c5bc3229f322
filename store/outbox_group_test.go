package store

import (
	"context"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestDoneRecordsJoinsTheGroupCommit: the record worker's bookkeeping
// commits with the publishes waiting at the same time, in one
// transaction. (In a transaction of its own, as before, it held the
// writer for a whole commit and fsync between two groups of publishes.)
func TestDoneRecordsJoinsTheGroupCommit(t *testing.T) {
	s := openGroupTest(t)
	ctx := context.Background()
	commitOne(t, s, "rec", "1.0")
	todo, err := s.PendingRecords(ctx, PackageKey{}, 10)
	if err != nil || len(todo) != 1 {
		t.Fatalf("outbox: %v %v", todo, err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var held int
	var wg sync.WaitGroup
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				t.Error(err)
			}
		}()
	}
	run(func() error {
		return s.batch(func(tx *bolt.Tx) error {
			held = tx.ID()
			close(entered)
			<-release
			return nil
		})
	})
	<-entered
	run(func() error { return s.DoneRecords(ctx, todo) })
	run(func() error {
		return s.batch(func(tx *bolt.Tx) error { return tx.Bucket([]byte("test")).Put([]byte("x"), []byte("v")) })
	})
	time.Sleep(100 * time.Millisecond) // both wait for the held commit
	close(release)
	wg.Wait()
	s.db.View(func(tx *bolt.Tx) error {
		if tx.ID() != held+1 {
			t.Errorf("last transaction %d, want %d: the record bookkeeping committed in a transaction of its own", tx.ID(), held+1)
		}
		return nil
	})
	if n, err := s.RecordsPendingCount(ctx); err != nil || n != 0 {
		t.Fatalf("outbox after DoneRecords: %d entries, %v", n, err)
	}
}
