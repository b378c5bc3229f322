package store

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func commitLabelled(t *testing.T, s *Store, name, version, producer string, labels map[string]string) {
	t.Helper()
	ctx := context.Background()
	d := fmt.Sprintf("sha256:%064x", len(name)*1000+len(version))
	draft := Package{Name: name, Version: version, Producer: producer, RetentionClass: "release", Labels: labels,
		Files: []File{{Path: "a", Size: 3, Digest: d, MediaType: "text/plain", Backend: "local"}}}
	sess, err := s.CreateSession(ctx, draft, []string{d}, 3600e9)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, sess.ID, []string{d}); err != nil {
		t.Fatal(err)
	}
}

func names(p NamePage) []string {
	var out []string
	for _, n := range p.Names {
		out = append(out, fmt.Sprintf("%s@%s/%s#%d", n.Name, n.Match.Version, n.Latest.Version, n.Versions))
	}
	return out
}

// TestRecentNames: names newest first by their newest matching version,
// each name once across pages, filters on any version, name prefixes, and
// a bounded scan that continues where it stopped.
func TestRecentNames(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	ctx := context.Background()
	commitLabelled(t, s, "web", "1.0", "ci", map[string]string{"sha": "a"})
	commitLabelled(t, s, "api", "1.0", "ci", nil)
	commitLabelled(t, s, "web", "1.1", "ci", map[string]string{"sha": "b"})
	commitLabelled(t, s, "etl", "0.1", "alice", map[string]string{"sha": "a"})
	commitLabelled(t, s, "webhooks", "3", "ci", nil)
	commitLabelled(t, s, "api", "1.1", "ci", nil)

	cases := []struct {
		q    NameQuery
		want string
	}{
		{NameQuery{Limit: 10}, "[api@1.1/1.1#2 webhooks@3/3#1 etl@0.1/0.1#1 web@1.1/1.1#2]"},
		{NameQuery{Limit: 10, NamePrefix: "web"}, "[webhooks@3/3#1 web@1.1/1.1#2]"},
		{NameQuery{Limit: 10, Filter: Filter{Labels: map[string]string{"sha": "a"}}}, "[etl@0.1/0.1#1 web@1.0/1.1#2]"},
		{NameQuery{Limit: 10, Filter: Filter{Producer: "alice"}}, "[etl@0.1/0.1#1]"},
		{NameQuery{Limit: 10, Filter: Filter{Producer: "nobody"}}, "[]"},
	}
	for _, c := range cases {
		p, err := s.RecentNames(ctx, c.q)
		if err != nil || fmt.Sprint(names(p)) != c.want || p.Next != "" {
			t.Errorf("%+v: %v %v next %q, want %s", c.q, err, names(p), p.Next, c.want)
		}
	}
	// Pages of one: every name once, in order, then an empty Next.
	var got []string
	cursor := ""
	for i := 0; i < 10; i++ {
		p, err := s.RecentNames(ctx, NameQuery{Limit: 1, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, names(p)...)
		if cursor = p.Next; cursor == "" {
			break
		}
	}
	if fmt.Sprint(got) != "[api@1.1/1.1#2 webhooks@3/3#1 etl@0.1/0.1#1 web@1.1/1.1#2]" {
		t.Fatalf("paged: %v", got)
	}
	// A scan bound of 1 entry: the page is answered from the label index,
	// complete, in the same order.
	p, err := s.RecentNames(ctx, NameQuery{Limit: 10, MaxScan: 1, Filter: Filter{Labels: map[string]string{"sha": "a"}}})
	if err != nil || !p.Indexed || p.Next != "" || fmt.Sprint(names(p)) != "[etl@0.1/0.1#1 web@1.0/1.1#2]" {
		t.Fatalf("from the index: %v %+v %v", err, p, names(p))
	}
	if _, err := s.RecentNames(ctx, NameQuery{Limit: 1, Cursor: "!!"}); err != ErrBadCursor {
		t.Fatalf("bad cursor: %v", err)
	}
}

func TestEventsBefore(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		commitLabelled(t, s, fmt.Sprintf("p%d", i), "1", "ci", nil)
	}
	// 4 events: one location (the three share their content), three packages.
	evs, next, err := s.EventsBefore(ctx, EventQuery{Limit: 2, Types: []string{EventPackageCreated}})
	if err != nil || len(evs) != 2 || evs[0].Subject != "p2@1" || evs[1].Subject != "p1@1" {
		t.Fatalf("newest package events: %v %+v", err, evs)
	}
	evs, next, err = s.EventsBefore(ctx, EventQuery{Before: next, Limit: 2, Types: []string{EventPackageCreated}})
	if err != nil || len(evs) != 1 || evs[0].Subject != "p0@1" {
		t.Fatalf("older package events: %v %+v next %d", err, evs, next)
	}
	all, _, err := s.EventsBefore(ctx, EventQuery{Limit: 100})
	if err != nil || len(all) != 4 || all[0].Seq != 4 || all[3].Seq != 1 {
		t.Fatalf("all events newest first: %v %d", err, len(all))
	}
}

func TestPackagesWithDigests(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	ctx := context.Background()
	commitLabelled(t, s, "ab", "1", "ci", nil) // digest of len 2*1000+1
	commitLabelled(t, s, "cd", "1", "ci", nil) // the same digest
	commitLabelled(t, s, "xyz", "1", "ci", nil)
	d := fmt.Sprintf("sha256:%064x", 2001)
	got, err := s.PackagesWithDigests(ctx, []string{d, "sha256:none"}, 3, 0)
	if err != nil || len(got[d]) != 2 || got[d][0].Name != "cd" || got[d][1].Name != "ab" || len(got["sha256:none"]) != 0 {
		t.Fatalf("holders: %v %v", err, got)
	}
}

// TestRecentIndexMigration: the checked-in version-1 database gains the
// commit-order index with its package.
func TestRecentIndexMigration(t *testing.T) {
	src, err := os.Open("testdata/schema-v1.db")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(t.TempDir(), "r.db")
	dst, _ := os.Create(path)
	io.Copy(dst, src)
	dst.Close()
	s := openTest(t, path)
	p, err := s.RecentNames(context.Background(), NameQuery{Limit: 10})
	if err != nil || fmt.Sprint(names(p)) != "[demo@1.0/1.0#1]" {
		t.Fatalf("recent names of the migrated database: %v %v", err, names(p))
	}
	s.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketRecent).Stats().KeyN; n != 1 {
			t.Fatalf("%d index entries, want 1", n)
		}
		return nil
	})
}

// TestRecentNamesReadsOldEntries: an index entry without the summary
// fields (name and version only) is still filtered correctly, by reading
// its package.
func TestRecentNamesReadsOldEntries(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	ctx := context.Background()
	commitLabelled(t, s, "web", "1.0", "ci", map[string]string{"sha": "a"})
	commitLabelled(t, s, "web", "1.1", "ci", map[string]string{"sha": "b"})
	commitLabelled(t, s, "etl", "0.1", "alice", map[string]string{"sha": "a"})
	s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecent)
		return b.ForEach(func(k, v []byte) error {
			e, _ := parseRecent(v)
			return b.Put(k, joinKey(string(e.name), string(e.version)))
		})
	})
	for _, c := range []struct {
		f    Filter
		want string
	}{
		{Filter{Labels: map[string]string{"sha": "a"}}, "[etl@0.1/0.1#1 web@1.0/1.1#2]"},
		{Filter{Labels: map[string]string{"sha": "b"}}, "[web@1.1/1.1#2]"},
		{Filter{Producer: "alice"}, "[etl@0.1/0.1#1]"},
	} {
		p, err := s.RecentNames(ctx, NameQuery{Limit: 10, Filter: c.f})
		if err != nil || fmt.Sprint(names(p)) != c.want {
			t.Errorf("%+v on old entries: %v %v, want %s", c.f, err, names(p), c.want)
		}
	}
}

// TestRecentEntryLabelMatch: the label check on the index's JSON never
// matches a key or value that only contains the wanted one.
func TestRecentEntryLabelMatch(t *testing.T) {
	p := &Package{Name: "n", Version: "1", Producer: "ci", RetentionClass: "r",
		Labels: map[string]string{"team": "web-ui", "note": `"team":"web"`, "x.team": "web"}}
	e, ok := parseRecent(recentValue(p))
	if !ok || !e.full {
		t.Fatalf("parse: %+v", e)
	}
	for f, want := range map[string]bool{"team=web-ui": true, "team=web": false, "x.team=web": true, "note=\"team\":\"web\"": true, "team=web-u": false} {
		k, v, _ := strings.Cut(f, "=")
		got, ok := newMatcher(Filter{Labels: map[string]string{k: v}}).entry(e)
		if !ok || got != want {
			t.Errorf("label %s: %v (%v), want %v", f, got, ok, want)
		}
	}
	if got, _ := newMatcher(Filter{Producer: "ci", RetentionClass: "other"}).entry(e); got {
		t.Error("retention class other matched")
	}
}

// TestRecentNamesSkipsDeleted: an index entry whose package is gone (a
// delete that left the entry) is skipped, and the name is listed once at
// the version that remains.
func TestRecentNamesSkipsDeleted(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	ctx := context.Background()
	commitLabelled(t, s, "web", "1.0", "ci", map[string]string{"sha": "a"})
	commitLabelled(t, s, "api", "1.0", "ci", nil)
	commitLabelled(t, s, "web", "1.1", "ci", map[string]string{"sha": "a"})
	s.db.Update(func(tx *bolt.Tx) error {
		tx.Bucket(bucketPackages).Delete(joinKey("web", "1.1"))
		return tx.Bucket(bucketVersions).Delete(u64Append(versionPrefix("web"), 3))
	})
	for _, f := range []Filter{{}, {Labels: map[string]string{"sha": "a"}}} {
		var got []string
		cursor := ""
		for i := 0; i < 5; i++ {
			p, err := s.RecentNames(ctx, NameQuery{Limit: 1, Cursor: cursor, Filter: f})
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, names(p)...)
			if cursor = p.Next; cursor == "" {
				break
			}
		}
		want := "[api@1.0/1.0#1 web@1.0/1.0#1]"
		if len(f.Labels) > 0 {
			want = "[web@1.0/1.0#1]"
		}
		if fmt.Sprint(got) != want {
			t.Errorf("filter %+v after a delete: %v, want %s", f, got, want)
		}
	}
}

// recentFixture publishes n packages (n/7+1 names, several versions each,
// three producers, two classes, labels of varied rarity) in commit order,
// and deletes a few.
func recentFixture(t *testing.T, n int) *Store {
	t.Helper()
	s := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	ctx := context.Background()
	var pkgs []Package
	for i := 0; i < n; i++ {
		p := Package{Name: fmt.Sprintf("%c%03d", 'a'+i%3, i%(n/7+1)), Version: fmt.Sprintf("v%d", i),
			Producer: []string{"ci", "alice", "bob"}[i*7%3], RetentionClass: []string{"release", "nightly"}[i%2],
			Labels: map[string]string{"team": fmt.Sprintf("t%d", i%4), "sha": fmt.Sprintf("%x", i*2654435761%4096)},
			Files:  []File{{Path: "f", Size: 1, Digest: fmt.Sprintf("sha256:%064x", i), MediaType: "x/y", Backend: "local"}}}
		if i%11 == 0 {
			p.Labels["rare"] = "yes"
		}
		pkgs = append(pkgs, p)
	}
	if err := s.ImportPackages(ctx, pkgs, "local"); err != nil {
		t.Fatal(err)
	}
	for i := 5; i < n; i += 37 {
		if err := s.db.Update(func(tx *bolt.Tx) error {
			_, err := removePackage(tx, pkgs[i].Name, pkgs[i].Version)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// allNames pages through q with the given page size and returns every
// name summary in order.
func allNames(t *testing.T, s *Store, q NameQuery) (out []string, indexed bool) {
	t.Helper()
	for i := 0; ; i++ {
		p, err := s.RecentNames(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, names(p)...)
		indexed = indexed || p.Indexed
		if q.Cursor = p.Next; q.Cursor == "" {
			return out, indexed
		}
		if i > 1000 {
			t.Fatalf("%+v does not end", q)
		}
	}
}

// TestRecentNamesIndexMatchesScan: answering from the indexes (a scan bound
// of one entry) lists exactly what reading every package newest first
// lists, page by page, for every kind of search and page size.
func TestRecentNamesIndexMatchesScan(t *testing.T) {
	s := recentFixture(t, 400)
	queries := []NameQuery{
		{},
		{NamePrefix: "b"},
		{NamePrefix: "c01"},
		{NamePrefix: "zz"},
		{Filter: Filter{Producer: "alice"}},
		{Filter: Filter{RetentionClass: "nightly"}},
		{Filter: Filter{Labels: map[string]string{"team": "t1"}}},
		{Filter: Filter{Labels: map[string]string{"rare": "yes"}}},
		{Filter: Filter{Labels: map[string]string{"rare": "yes", "team": "t2"}, Producer: "bob"}},
		{Filter: Filter{Labels: map[string]string{"sha": fmt.Sprintf("%x", 17*2654435761%4096)}}},
		{NamePrefix: "a", Filter: Filter{Producer: "ci", RetentionClass: "release"}},
		{NamePrefix: "a0", Filter: Filter{Labels: map[string]string{"rare": "yes"}}},
		{Filter: Filter{Producer: "nobody"}},
	}
	for _, q := range queries {
		for _, limit := range []int{1, 3, 50} {
			q.Limit = limit
			q.MaxScan = 1 << 30
			want, indexed := allNames(t, s, q)
			if indexed {
				t.Fatalf("%+v: an unbounded scan used the index", q)
			}
			q.MaxScan = 1
			got, indexed := allNames(t, s, q)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%+v limit %d:\nindex %v\nscan  %v", q.Filter, limit, got, want)
			}
			if len(want) > 1 && !indexed {
				t.Errorf("%+v: MaxScan 1 never used the index", q)
			}
		}
	}
}

// TestRecentNamesFindsOldMatch: a package matching a rare label far
// behind the scan bound is on the first page, found through the label
// index by reading about as many entries as the label has, and so are
// matches of a rare name prefix.
func TestRecentNamesFindsOldMatch(t *testing.T) {
	s := recentFixture(t, 3000)
	ctx := context.Background()
	if err := s.ImportPackages(ctx, []Package{{Name: "zz-old", Version: "1", Producer: "ci", RetentionClass: "release",
		Labels: map[string]string{"ticket": "OPS-1"}}}, "local"); err != nil {
		t.Fatal(err)
	}
	var pkgs []Package
	for i := 0; i < 3000; i++ {
		pkgs = append(pkgs, Package{Name: fmt.Sprintf("new-%04d", i), Version: "1", Producer: "ci", RetentionClass: "release"})
	}
	if err := s.ImportPackages(ctx, pkgs, "local"); err != nil {
		t.Fatal(err)
	}
	for _, q := range []NameQuery{
		{Limit: 50, MaxScan: 100, Filter: Filter{Labels: map[string]string{"ticket": "OPS-1"}}},
		{Limit: 50, MaxScan: 100, Filter: Filter{Labels: map[string]string{"ticket": "OPS-1"}, Producer: "ci"}},
		{Limit: 50, MaxScan: 100, NamePrefix: "zz"},
	} {
		p, err := s.RecentNames(ctx, q)
		if err != nil || fmt.Sprint(names(p)) != "[zz-old@1/1#1]" || p.Next != "" {
			t.Fatalf("%+v: %v %v next %q", q, err, names(p), p.Next)
		}
		if !p.Indexed || p.Scanned > 100+10 {
			t.Errorf("%+v: read %d entries (indexed %v), want the 100 newest and a few index entries", q, p.Scanned, p.Indexed)
		}
	}
}

// TestRecentNamesOldIndexValues: listing-index entries written before they
// carried the package's seq (empty values) still answer correctly.
func TestRecentNamesOldIndexValues(t *testing.T) {
	s := recentFixture(t, 200)
	q := NameQuery{Limit: 7, Filter: Filter{Labels: map[string]string{"rare": "yes"}}}
	q.MaxScan = 1 << 30
	want, _ := allNames(t, s, q)
	if err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range indexBuckets {
			b := tx.Bucket(name)
			if err := b.ForEach(func(k, _ []byte) error { return b.Put(k, nil) }); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	q.MaxScan = 1
	got, indexed := allNames(t, s, q)
	if !indexed || len(want) < 2 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("old index values: %v (indexed %v), want %v", got, indexed, want)
	}
}
