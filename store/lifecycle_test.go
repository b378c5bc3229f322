package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func dg(c byte) string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return "sha256:" + string(b)
}

func commitFiles(t *testing.T, s *Store, name, version string, digests ...string) *Package {
	t.Helper()
	ctx := context.Background()
	draft := Package{Name: name, Version: version, Producer: "ci", RetentionClass: "ci"}
	var needed []string
	for i, d := range digests {
		draft.Files = append(draft.Files, File{Path: string(rune('a' + i)), Size: 10, Digest: d, MediaType: "text/plain", Backend: "local"})
		if l, _ := s.GetLocation(ctx, d, "local"); l == nil {
			needed = append(needed, d)
		}
	}
	sess, err := s.CreateSession(ctx, draft, needed, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Commit(ctx, sess.ID, needed)
	if err != nil {
		t.Fatal(err)
	}
	return res.Package
}

func refsOf(ls []Location) []Ref {
	var out []Ref
	for _, l := range ls {
		out = append(out, Ref{Backend: l.Backend, Digest: l.Digest})
	}
	return out
}

// TestCondemnRechecksEveryReference: content a package, an open session's
// draft or an upload ref needs is never condemned, even when the caller
// asks for it.
func TestCondemnRechecksEveryReference(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	ctx := context.Background()
	a, b, c := dg('a'), dg('b'), dg('c')
	commitFiles(t, s, "p", "1", a, b)
	commitFiles(t, s, "q", "1", b, c)
	if got, _ := s.Collectable(ctx); len(got) != 0 {
		t.Fatalf("collectable with every content referenced: %+v", got)
	}
	if _, err := s.DeletePackage(ctx, "p", "1", Deletion{Reason: "x", By: "t"}); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Collectable(ctx)
	if len(got) != 1 || got[0].Digest != a {
		t.Fatalf("collectable after deleting p@1: %+v, want only %s (b is shared with q@1)", got, a)
	}
	// An open session that counts on a's stored copy protects it.
	sess, err := s.CreateSession(ctx, Package{Name: "r", Version: "1", Files: []File{{Path: "x", Size: 10, Digest: a, Backend: "local"}}}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if in, err := s.Condemn(ctx, []Ref{{Backend: "local", Digest: a}, {Backend: "local", Digest: b}}, "run"); err != nil || len(in) != 0 {
		t.Fatalf("condemn with a's draft open and b referenced: %v %+v", err, in)
	}
	if _, err := s.DropSession(ctx, sess.ID); err != nil {
		t.Fatal(err)
	}
	in, err := s.Condemn(ctx, refsOf(got), "run")
	if err != nil || len(in) != 1 || in[0].Digest != a {
		t.Fatalf("condemn of a: %v %+v", err, in)
	}
	if l, _ := s.GetLocation(ctx, a, "local"); l != nil {
		t.Fatal("condemned location still recorded")
	}
	if _, err := s.GetBlob(ctx, a); !errors.Is(err, ErrNotFound) {
		t.Fatalf("blob without locations kept: %v", err)
	}
	if ok, _ := s.IntentWanted(ctx, in[0].Ref()); !ok {
		t.Fatal("intent not wanted with nothing referencing the object")
	}
	// A new session that must upload a again takes an upload ref: the
	// pending delete is called off.
	sess, err = s.CreateSession(ctx, Package{Name: "r", Version: "1", Files: []File{{Path: "x", Size: 10, Digest: a, Backend: "local"}}}, []string{a}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.IntentWanted(ctx, in[0].Ref()); ok {
		t.Fatal("intent still wanted while an upload session stages the object")
	}
	s.DropSession(ctx, sess.ID)
	if problems, err := s.Check(ctx, []string{"local"}, 10); err != nil || len(problems) > 0 {
		t.Fatalf("db check: %v %v", err, problems)
	}
}

// TestCreateSessionRefusesLostLocation: a session that counts on a stored
// copy gc removed since begin looked fails with ErrStaleBegin.
func TestCreateSessionRefusesLostLocation(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	ctx := context.Background()
	a := dg('a')
	commitFiles(t, s, "p", "1", a)
	s.DeletePackage(ctx, "p", "1", Deletion{Reason: "x", By: "t"})
	if _, err := s.Condemn(ctx, []Ref{{Backend: "local", Digest: a}}, "run"); err != nil {
		t.Fatal(err)
	}
	_, err := s.CreateSession(ctx, Package{Name: "q", Version: "1", Files: []File{{Path: "x", Size: 10, Digest: a, Backend: "local"}}}, nil, time.Hour)
	if !errors.Is(err, ErrStaleBegin) {
		t.Fatalf("session counting on a condemned location: %v, want ErrStaleBegin", err)
	}
}

func TestDeletePackageNeedsReasonAndIndexesRefs(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	ctx := context.Background()
	commitFiles(t, s, "p", "1", dg('a'))
	for _, r := range []string{"", "   ", "line\nbreak"} {
		if _, err := s.DeletePackage(ctx, "p", "1", Deletion{Reason: r}); !errors.Is(err, ErrInvalidReason) {
			t.Fatalf("reason %q: %v, want ErrInvalidReason", r, err)
		}
	}
	if ok, _ := s.Referenced(ctx, dg('a')); !ok {
		t.Fatal("committed content not indexed as referenced")
	}
	if _, err := s.DeletePackage(ctx, "p", "1", Deletion{Reason: "gone", By: "t"}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Referenced(ctx, dg('a')); ok {
		t.Fatal("deleted package's content still indexed as referenced")
	}
	if _, err := s.DeletePackage(ctx, "p", "1", Deletion{Reason: "gone", By: "t"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	evs, _ := s.Events(ctx, 0, 10)
	if last := evs[len(evs)-1]; last.Type != EventPackageDeleted || last.Subject != "p@1" {
		t.Fatalf("last event %+v", last)
	}
}

// TestPruneEventsHorizonAndFloor: events older than their age go, never
// one at or after the floor, and Events reports the horizon.
func TestPruneEventsHorizonAndFloor(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s, err := Open(filepath.Join(t.TempDir(), "r.db"), Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	commitFiles(t, s, "p", "1", dg('a')) // seq 1, 2 at day 0
	now = now.Add(24 * time.Hour)
	commitFiles(t, s, "p", "2", dg('b')) // seq 3, 4 at day 1
	pol := EventRetention{MaxAge: 36 * time.Hour, Batch: 1}
	now = now.Add(24 * time.Hour) // day 2: day-0 events are 48h old
	res, err := s.PruneEvents(ctx, EventRetention{Now: now, MaxAge: pol.MaxAge, Batch: 1, KeepFrom: 2})
	if err != nil || res.Deleted != 1 || res.Horizon != 2 {
		t.Fatalf("prune with floor 2: %v %+v", err, res)
	}
	res, err = s.PruneEvents(ctx, EventRetention{Now: now, MaxAge: pol.MaxAge, Batch: 1})
	if err != nil || res.Deleted != 1 || res.Horizon != 3 {
		t.Fatalf("prune: %v %+v", err, res)
	}
	if _, err := s.Events(ctx, 1, 10); !errors.Is(err, ErrEventsPruned) {
		t.Fatalf("events after 1: %v, want ErrEventsPruned", err)
	}
	if evs, err := s.Events(ctx, 2, 10); err != nil || len(evs) != 2 || evs[0].Seq != 3 {
		t.Fatalf("events after 2: %v %+v", err, evs)
	}
}

// TestMigrationIndexesExistingPackages: migration 4 indexes the content
// references of packages written by older binaries, so gc never takes
// their content.
func TestMigrationIndexesExistingPackages(t *testing.T) {
	src, err := os.ReadFile("testdata/schema-v1.db")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "r.db")
	os.WriteFile(path, src, 0o600)
	s := openTest(t, path)
	ctx := context.Background()
	p, err := s.GetPackage(ctx, "demo", "1.0")
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Referenced(ctx, p.Files[0].Digest); !ok {
		t.Fatal("migrated package's content is not indexed as referenced")
	}
	if got, _ := s.Collectable(ctx); len(got) != 0 {
		t.Fatalf("gc would collect a migrated package's content: %+v", got)
	}
	problems, _ := s.Check(ctx, []string{p.Files[0].Backend}, 10)
	for _, pr := range problems {
		if pr.Kind == "missing_package_ref" || pr.Kind == "dangling_package_ref" {
			t.Fatalf("after migration: %v", pr)
		}
	}
}

// TestLeaseProtectsContent: a repair or migration lease keeps gc away
// from an object no package references.
func TestLeaseProtectsContent(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	ctx := context.Background()
	a := dg('a')
	commitFiles(t, s, "p", "1", a)
	s.DeletePackage(ctx, "p", "1", Deletion{Reason: "x", By: "t"})
	ref := Ref{Backend: "local", Digest: a}
	if err := s.HoldLeases(ctx, "migrate-1", []Ref{ref}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Collectable(ctx); len(got) != 0 {
		t.Fatalf("leased content collectable: %+v", got)
	}
	if in, _ := s.Condemn(ctx, []Ref{ref}, "run"); len(in) != 0 {
		t.Fatalf("leased content condemned: %+v", in)
	}
	if staged, _ := s.StagedOn(ctx, "local"); !staged[a] {
		t.Fatal("leased object would be reported as an orphan")
	}
	s.ReleaseLeases(ctx, "migrate-1", []Ref{ref})
	if in, _ := s.Condemn(ctx, []Ref{ref}, "run"); len(in) != 1 {
		t.Fatalf("released content not condemned: %+v", in)
	}
	if staged, _ := s.StagedOn(ctx, "local"); !staged[a] {
		t.Fatal("object with a pending gc intent would be reported as an orphan")
	}
}
