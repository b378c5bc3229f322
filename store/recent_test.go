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
	// A scan bound of 2 entries: truncated pages continue to the end.
	got = nil
	cursor = ""
	for i := 0; i < 10; i++ {
		p, err := s.RecentNames(ctx, NameQuery{Limit: 10, MaxScan: 2, Cursor: cursor, Filter: Filter{Labels: map[string]string{"sha": "a"}}})
		if err != nil {
			t.Fatal(err)
		}
		if p.Scanned > 2 {
			t.Fatalf("scanned %d entries with MaxScan 2", p.Scanned)
		}
		got = append(got, names(p)...)
		if cursor = p.Next; cursor == "" {
			break
		}
		if !p.Truncated {
			t.Fatalf("a page with Next but not truncated: %+v", p)
		}
	}
	if fmt.Sprint(got) != "[etl@0.1/0.1#1 web@1.0/1.1#2]" {
		t.Fatalf("truncated scans: %v", got)
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
