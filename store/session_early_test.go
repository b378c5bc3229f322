package store

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestSessionWhoseTransactionFailsToCommit: CreateSession answers before
// its transaction is durable; when that commit then fails, the session is
// forgotten (its uploads and its commit find no session) and its refs
// are not stored, as if it had never been opened.
func TestSessionWhoseTransactionFailsToCommit(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"))
	ctx := context.Background()
	boom := errors.New("disk gone")
	update := s.group.update
	s.group.update = func(fn func(*bolt.Tx) error) error {
		return s.db.Update(func(tx *bolt.Tx) error {
			if err := fn(tx); err != nil {
				return err
			}
			return boom
		})
	}
	a := dg('a')
	draft := Package{Name: "p", Version: "1", Producer: "ci", RetentionClass: "ci",
		Files: []File{{Path: "x", Size: 10, Digest: a, Backend: "local"}}}
	sess, err := s.CreateSession(ctx, draft, []string{a}, time.Hour)
	if err != nil {
		t.Fatalf("CreateSession: %v (it answers before its commit)", err)
	}
	s.settle() // the failed commit has run its failure handler
	s.group.update = update
	if _, err := s.GetSession(ctx, sess.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetSession after the failed commit: %v, want ErrNotFound", err)
	}
	if used, err := s.IsReferenced(ctx, Ref{Backend: "local", Digest: a}); err != nil || used {
		t.Fatalf("IsReferenced: %v, %v; want an unreferenced object", used, err)
	}
	if _, err := s.Commit(ctx, sess.ID, []string{a}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Commit: %v, want ErrNotFound", err)
	}
}

// TestSessionRefsVisibleToReadsAfterSettle: what garbage collection reads
// in read transactions (IsReferenced, StagedOn, IntentWanted, orphans)
// settles first, so a session that has answered is seen there even while
// its commit is still going on.
func TestSessionRefsVisibleToReadsAfterSettle(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "s.db"))
	ctx := context.Background()
	hold := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	defer release() // a failed check must not leave the committer held
	update := s.group.update
	s.group.update = func(fn func(*bolt.Tx) error) error {
		return update(func(tx *bolt.Tx) error {
			err := fn(tx) // releases the session's CreateSession
			<-hold        // and holds the commit
			return err
		})
	}
	a := dg('a')
	draft := Package{Name: "p", Version: "1", Producer: "ci", RetentionClass: "ci",
		Files: []File{{Path: "x", Size: 10, Digest: a, Backend: "local"}}}
	if _, err := s.CreateSession(ctx, draft, []string{a}, time.Hour); err != nil {
		t.Fatal(err)
	}
	// The commit is held: a plain read transaction does not see the ref.
	var seen bool
	s.db.View(func(tx *bolt.Tx) error { seen = hasUploadRef(tx, "local", a); return nil })
	if seen {
		t.Fatal("the ref is visible before its commit; the test holds nothing")
	}
	type answer struct {
		used bool
		err  error
	}
	got := make(chan answer, 1)
	go func() { used, err := s.IsReferenced(ctx, Ref{Backend: "local", Digest: a}); got <- answer{used, err} }()
	select {
	case r := <-got:
		t.Fatalf("IsReferenced answered %v, %v before the session's commit", r.used, r.err)
	case <-time.After(100 * time.Millisecond):
	}
	release()
	if r := <-got; r.err != nil || !r.used {
		t.Fatalf("IsReferenced: %v, %v; want the session's object referenced", r.used, r.err)
	}
	staged, err := s.StagedOn(ctx, "local")
	if err != nil || !staged[a] {
		t.Fatalf("StagedOn: %v, %v", staged, err)
	}
}
