package store

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestOutboxFollowsCommitsAndDeletes: a commit marks its package, a delete
// marks it as deleted, DoneRecords keeps an entry marked again since it
// was read, and the migration marks the packages of an older database.
func TestOutboxFollowsCommitsAndDeletes(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	ctx := context.Background()
	commitFiles(t, s, "p", "1", dg('a'))
	pend, err := s.PendingRecords(ctx, PackageKey{}, 10)
	if err != nil || len(pend) != 1 || pend[0].Name != "p" || pend[0].Deleted {
		t.Fatalf("after a commit: %+v, %v", pend, err)
	}
	if _, err := s.DeletePackage(ctx, "p", "1", Deletion{Reason: "r", By: "t"}); err != nil {
		t.Fatal(err)
	}
	// pend[0] was read before the delete: finishing it must not drop the
	// delete's mark.
	if err := s.DoneRecords(ctx, pend); err != nil {
		t.Fatal(err)
	}
	again, _ := s.PendingRecords(ctx, PackageKey{}, 10)
	if len(again) != 1 || !again[0].Deleted {
		t.Fatalf("after a delete and a stale done: %+v", again)
	}
	if err := s.DoneRecords(ctx, again); err != nil {
		t.Fatal(err)
	}
	if left, _ := s.PendingRecords(ctx, PackageKey{}, 10); len(left) != 0 {
		t.Fatalf("after done: %+v", left)
	}
	commitFiles(t, s, "a", "1", dg('b'))
	commitFiles(t, s, "b", "1", dg('c'))
	commitFiles(t, s, "c", "1", dg('d'))
	page, _ := s.PendingRecords(ctx, PackageKey{Name: "a", Version: "1"}, 10)
	if len(page) != 2 || page[0].Name != "b" {
		t.Fatalf("page after a@1: %+v", page)
	}

	src, err := os.Open("testdata/schema-v1.db")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(t.TempDir(), "old.db")
	dst, _ := os.Create(path)
	io.Copy(dst, src)
	dst.Close()
	old := openTest(t, path)
	pend, err = old.PendingRecords(ctx, PackageKey{}, 10)
	if err != nil || len(pend) != 1 || pend[0].Name != "demo" || pend[0].Version != "1.0" {
		t.Fatalf("the migration did not mark the older database's package: %+v, %v", pend, err)
	}
}
