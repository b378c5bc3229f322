package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openFast(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "r.db"), Options{NoSync: true, BatchDelay: time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// listAll pages through a listing and returns name@version in order.
func listAll(t *testing.T, s *Store, f Filter, limit int) []string {
	t.Helper()
	return listAllWith(t, s, f, limit, nil)
}

// listAllWith calls between after every page.
func listAllWith(t *testing.T, s *Store, f Filter, limit int, between func()) []string {
	t.Helper()
	var out []string
	cursor := ""
	for pages := 0; ; pages++ {
		page, err := s.ListPackages(context.Background(), f, cursor, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Packages) > limit {
			t.Fatalf("page of %d, limit %d", len(page.Packages), limit)
		}
		for _, p := range page.Packages {
			out = append(out, p.Name+"@"+p.Version)
		}
		if page.Next == "" {
			return out
		}
		if pages > 10000 {
			t.Fatal("listing does not end")
		}
		if between != nil {
			between()
		}
		cursor = page.Next
	}
}

// Listings by producer, retention class, label and their combinations,
// paged, return exactly what filtering every package returns.
func TestIndexedListingMatchesAFullFilter(t *testing.T) {
	s := openFast(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	var all []Package
	for i := 0; i < 400; i++ {
		p := Package{Name: fmt.Sprintf("n%d", r.IntN(20)), Version: fmt.Sprintf("v%03d", i), Producer: []string{"ci", "nightly", "alice"}[r.IntN(3)],
			RetentionClass: []string{"release", "snapshot"}[r.IntN(2)], Labels: map[string]string{},
			Files: []File{{Path: "f", Size: 1, Digest: digestN(i + 1), MediaType: "x/y"}}}
		if r.IntN(2) == 0 {
			p.Labels["team"] = []string{"red", "blue"}[r.IntN(2)]
		}
		if r.IntN(3) == 0 {
			p.Labels["os"] = "linux"
		}
		all = append(all, p)
	}
	if err := s.ImportPackages(ctx, append([]Package(nil), all...), "local"); err != nil {
		t.Fatal(err)
	}
	filters := []Filter{
		{Producer: "ci"}, {Producer: "nobody"}, {RetentionClass: "snapshot"},
		{Labels: map[string]string{"team": "red"}}, {Labels: map[string]string{"os": "linux", "team": "blue"}},
		{Producer: "nightly", Labels: map[string]string{"team": "red"}}, {Producer: "alice", RetentionClass: "release"},
		{Name: "n3", Producer: "ci"}, {},
	}
	for _, f := range filters {
		var want []string
		for i := range all {
			if f.match(&all[i]) {
				want = append(want, all[i].Name+"@"+all[i].Version)
			}
		}
		sortPackageKeys(want)
		got := listAll(t, s, f, 7)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("filter %+v: got %d packages, want %d\ngot  %v\nwant %v", f, len(got), len(want), got, want)
		}
	}
}

func sortPackageKeys(ks []string) {
	// Package keys sort by name, then version (NUL between them).
	for i := range ks {
		ks[i] = strings.Replace(ks[i], "@", "\x00", 1)
	}
	sortStrings(ks)
	for i := range ks {
		ks[i] = strings.Replace(ks[i], "\x00", "@", 1)
	}
}

// The listing walks the index: an entry removed behind the store's back
// is missing from the listing, db check reports it and repair restores it.
func TestListingReadsTheIndexAndRepairRebuildsIt(t *testing.T) {
	s := openFast(t)
	ctx := context.Background()
	err := s.ImportPackages(ctx, []Package{
		{Name: "a", Version: "1", Producer: "ci", RetentionClass: "release", Labels: map[string]string{"team": "red"}, Files: []File{{Path: "f", Size: 1, Digest: digestN(1)}}},
		{Name: "b", Version: "1", Producer: "ci", RetentionClass: "release", Labels: map[string]string{"team": "red"}, Files: []File{{Path: "f", Size: 1, Digest: digestN(2)}}},
	}, "local")
	if err != nil {
		t.Fatal(err)
	}
	s.db.Update(func(tx *bolt.Tx) error {
		tx.Bucket(bucketPackageRefs).Delete(joinKey(digestN(2), "b", "1"))
		return tx.Bucket(bucketByLabel).Delete(joinKey("team", "red", "a", "1"))
	})
	if got := listAll(t, s, Filter{Labels: map[string]string{"team": "red"}}, 10); !reflect.DeepEqual(got, []string{"b@1"}) {
		t.Fatalf("listing by label does not read the index: %v", got)
	}
	problems, _ := s.Check(ctx, []string{"local"}, 10)
	kinds := map[string]bool{}
	for _, p := range problems {
		kinds[p.Kind] = true
	}
	if !kinds["index_mismatch"] || !kinds["missing_package_ref"] {
		t.Fatalf("db check: %v", problems)
	}
	if err := s.Repair(ctx); err != nil {
		t.Fatal(err)
	}
	if got := listAll(t, s, Filter{Labels: map[string]string{"team": "red"}}, 10); !reflect.DeepEqual(got, []string{"a@1", "b@1"}) {
		t.Fatalf("after repair: %v", got)
	}
	if problems, _ := s.Check(ctx, []string{"local"}, 10); len(problems) != 0 {
		t.Fatalf("after repair: %v", problems)
	}
	// removePackage takes the index entries with the package.
	if err := s.db.Update(func(tx *bolt.Tx) error { _, err := removePackage(tx, "a", "1"); return err }); err != nil {
		t.Fatal(err)
	}
	if got := listAll(t, s, Filter{Producer: "ci"}, 10); !reflect.DeepEqual(got, []string{"b@1"}) {
		t.Fatalf("after delete: %v", got)
	}
	if problems, _ := s.Check(ctx, []string{"local"}, 10); len(problems) != 0 {
		t.Fatalf("after delete: %v", problems)
	}
}

// The migration builds the indexes of an older database (see
// TestMigrationBuildsCountersOnAnOlderDatabase for its content).
func TestMigrationBuildsIndexesOnAnOlderDatabase(t *testing.T) {
	s := openTest(t, copyTestdata(t, "testdata/schema-v3.db"))
	for _, c := range []struct {
		f    Filter
		want []string
	}{
		{Filter{Producer: "nightly"}, []string{"app0@1.4", "app1@1.1"}},
		{Filter{Labels: map[string]string{"team": "blue"}}, []string{"app0@1.4", "app1@1.1"}},
		{Filter{RetentionClass: "snapshot"}, []string{"app1@1.1", "app1@1.3", "app1@1.5"}},
		{Filter{Labels: map[string]string{"os": "linux"}, Producer: "ci"}, []string{"app0@1.0", "app0@1.2", "app1@1.3", "app1@1.5"}},
	} {
		if got := listAll(t, s, c.f, 2); !reflect.DeepEqual(got, c.want) {
			t.Fatalf("%+v after migration: %v, want %v", c.f, got, c.want)
		}
	}
	if problems, err := s.Check(context.Background(), []string{"local", "s3"}, 10); err != nil || len(problems) != 0 {
		t.Fatalf("db check after migration: %v %v", err, problems)
	}
}

// Paging by producer and by label while other packages are published
// returns every package that existed before the listing began exactly
// once, in order, and never a duplicate.
func TestPaginationIsStableUnderConcurrentPublishes(t *testing.T) {
	s := openFast(t)
	ctx := context.Background()
	publish := func(name, version string, i int) error {
		d := digestN(i)
		draft := Package{Name: name, Version: version, Producer: "ci", RetentionClass: "release", Labels: map[string]string{"team": "red"},
			Files: []File{{Path: "f", Size: 1, Digest: d, MediaType: "x/y", Backend: "local"}}}
		sess, err := s.CreateSession(ctx, draft, []string{d}, time.Hour)
		if err != nil {
			return err
		}
		_, err = s.Commit(ctx, sess.ID, []string{d})
		return err
	}
	before := map[string]bool{}
	for i := 0; i < 150; i++ {
		name, version := fmt.Sprintf("n%02d", i%15), fmt.Sprintf("%03d", i)
		if err := publish(name, version, i+1); err != nil {
			t.Fatal(err)
		}
		before[name+"@"+version] = true
	}
	for _, f := range []Filter{{Producer: "ci"}, {Labels: map[string]string{"team": "red"}}} {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		var published int
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// Names spread before and after any cursor position.
				if err := publish(fmt.Sprintf("n%02d", i%17), fmt.Sprintf("new-%p-%04d", &f, i), 100000+i); err != nil {
					t.Error(err)
					return
				}
				published++
			}
		}()
		// Besides the concurrent publisher, publish between pages, so
		// new packages land both behind and ahead of every cursor.
		j := 0
		got := listAllWith(t, s, f, 10, func() {
			for k := 0; k < 2; k++ {
				j++
				if err := publish(fmt.Sprintf("n%02d", (j*7)%17), fmt.Sprintf("between-%p-%04d", &f, j), 200000+j); err != nil {
					t.Fatal(err)
				}
			}
		})
		close(stop)
		wg.Wait()
		seen := map[string]bool{}
		for i, k := range got {
			if seen[k] {
				t.Fatalf("%+v: %s listed twice", f, k)
			}
			seen[k] = true
			if i > 0 && strings.Replace(got[i-1], "@", "\x00", 1) >= strings.Replace(k, "@", "\x00", 1) {
				t.Fatalf("%+v: out of order: %s then %s", f, got[i-1], k)
			}
		}
		for k := range before {
			if !seen[k] {
				t.Fatalf("%+v: %s existed before the listing and was skipped", f, k)
			}
		}
		if published == 0 {
			t.Fatal("nothing was published during the listing")
		}
		t.Logf("%+v: %d listed, %d published meanwhile", f, len(got), published)
		for k := range seen {
			before[k] = true
		}
	}
}

// Packages are written only by putPackage(s) and removed only by
// removePackage, which keep the version index, the listing indexes and
// the content references.
func TestPackagesAreWrittenOnlyThroughHelpers(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	write := regexp.MustCompile(`Bucket\((bucketPackages|bucketVersions|bucketPackageRefs|bucketByProducer|bucketByRetention|bucketByLabel)\)\.(Put|Delete)\(`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "listing.go" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if loc := write.FindIndex(b); loc != nil {
			t.Errorf("%s:%d writes packages directly: use putPackage/removePackage (store/listing.go) so the indexes stay right",
				f, 1+strings.Count(string(b[:loc[0]]), "\n"))
		}
	}
}

func sortStrings(s []string) { slices.Sort(s) }
