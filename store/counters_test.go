package store

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func digestN(i int) string { return fmt.Sprintf("sha256:%064x", i) }

// assertCountersMatchScan fails unless the maintained counters and the
// failed index say exactly what a full scan of the locations says.
func assertCountersMatchScan(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	got, err := s.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want, err := s.ScanUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("counters disagree with a full scan:\ncounters: %s\nscan:     %s", usageString(got), usageString(want))
	}
	failed, total, err := s.FailedLocations(ctx, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	var scanFailed []Location
	s.db.View(func(tx *bolt.Tx) error {
		return forEachLocation(tx, func(l *Location) error {
			if l.Failed() {
				scanFailed = append(scanFailed, *l)
			}
			return nil
		}, nil)
	})
	if total != len(scanFailed) || !reflect.DeepEqual(failed, scanFailed) {
		t.Fatalf("failed locations: index says %d %+v, scan says %d %+v", total, failed, len(scanFailed), scanFailed)
	}
	// Deleted locations leave files without one; only the derived
	// records matter here.
	problems, err := s.Check(ctx, []string{"b0", "b1", "b2"}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if p.Kind != "file_without_location" {
			t.Fatalf("db check: %v", p)
		}
	}
}

func usageString(u map[string]*BackendUsage) string {
	var b strings.Builder
	for _, id := range []string{"b0", "b1", "b2"} {
		if x := u[id]; x != nil {
			fmt.Fprintf(&b, "%s{%d locations, %d bytes, %v} ", id, x.Blobs, x.Bytes, x.ByStatus)
		}
	}
	return b.String()
}

// A random workload of commits, verdicts of every kind, repairs by a new
// upload, deletes and bulk imports keeps the counters equal to a full scan
// after every step.
func TestCountersFollowARandomWorkload(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "r.db"), Options{NoSync: true, BatchDelay: time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	r := rand.New(rand.NewPCG(15, 15))
	backends := []string{"b0", "b1", "b2"}
	verdicts := []string{StatusVerified, StatusMismatch, StatusMissing, StatusUnreadable}
	const digests = 40
	pkg := 0
	for step := 0; step < 600; step++ {
		n := 1 + r.IntN(digests)
		d := digestN(n)
		backend := backends[r.IntN(len(backends))]
		size := int64(1 + n%7*100)
		switch op := r.IntN(10); {
		case op < 4: // publish one file (new, dedup or repair of a failed location)
			pkg++
			draft := Package{Name: "p", Version: fmt.Sprint(pkg), Producer: "ci", RetentionClass: "release",
				Files: []File{{Path: "f", Size: size, Digest: d, MediaType: "x/y", Backend: backend}}}
			sess, err := s.CreateSession(ctx, draft, []string{d}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			stored := []string{d}
			if r.IntN(3) == 0 {
				stored = nil // dedup against an existing location, or incomplete
			}
			if _, err := s.Commit(ctx, sess.ID, stored); err != nil && !strings.Contains(err.Error(), "not uploaded") {
				t.Fatal(err)
			}
		case op < 8: // a verdict, deep or quick
			mode := ModeDeep
			if r.IntN(2) == 0 {
				mode = ModeQuick
			}
			if err := s.RecordVerdict(ctx, Verdict{Digest: d, Backend: backend, Mode: mode, Verdict: verdicts[r.IntN(len(verdicts))], At: time.Now()}); err != nil {
				t.Fatal(err)
			}
		case op < 9: // a location goes away (delete / gc)
			if err := s.db.Update(func(tx *bolt.Tx) error { _, err := deleteLocation(tx, d, backend); return err }); err != nil {
				t.Fatal(err)
			}
		default: // bulk import
			pkg++
			err := s.ImportPackages(ctx, []Package{{Name: "imp", Version: fmt.Sprint(pkg), Producer: "ci", RetentionClass: "release",
				Files: []File{{Path: "f", Size: 7, Digest: digestN(1000 + pkg), MediaType: "x/y"}}}}, backend)
			if err != nil {
				t.Fatal(err)
			}
		}
		if step%50 == 0 {
			assertCountersMatchScan(t, s)
		}
	}
	assertCountersMatchScan(t, s)
	u, _ := s.Usage(ctx)
	statuses := map[string]bool{}
	for _, x := range u {
		for st := range x.ByStatus {
			statuses[st] = true
		}
	}
	if len(statuses) < 4 {
		t.Fatalf("the workload reached only statuses %v; it should exercise most of them", statuses)
	}
}

// Usage reads the counters, not the locations: a wrong counter shows (so
// the counters are what is read), db check reports it, and Repair rebuilds
// it from the locations.
func TestWrongCounterIsReportedAndRepaired(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	ctx := context.Background()
	commitOne(t, s, "demo", "1.0")
	if err := s.RecordVerdict(ctx, Verdict{Digest: digestN(7), Backend: "local", Mode: ModeDeep, Verdict: StatusMismatch, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	s.db.Update(func(tx *bolt.Tx) error {
		tx.Bucket(bucketLocationCounts).Put(joinKey("local", StatusStored), encodeCount(1000, 5))
		return tx.Bucket(bucketFailedLocations).Put(joinKey(digestN(9), "local"), nil)
	})
	u, err := s.Usage(ctx)
	if err != nil || u["local"].Blobs != 1000 || u["local"].Bytes != 5 {
		t.Fatalf("Usage does not read the counters: %v %+v", err, u["local"])
	}
	problems, err := s.Check(ctx, []string{"local"}, 100)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, p := range problems {
		kinds[p.Kind] = true
	}
	if !kinds["counter_mismatch"] || !kinds["failed_index_mismatch"] {
		t.Fatalf("db check did not report the wrong counter and index: %v", problems)
	}
	if err := s.Repair(ctx); err != nil {
		t.Fatal(err)
	}
	if problems, err := s.Check(ctx, []string{"local"}, 100); err != nil || len(problems) != 0 {
		t.Fatalf("after repair: %v %v", err, problems)
	}
	u, _ = s.Usage(ctx)
	if u["local"].Blobs != 1 || u["local"].Bytes != 3 || u["local"].ByStatus[StatusStored] != 1 {
		t.Fatalf("after repair: %+v", u["local"])
	}
}

// testdata/schema-v3.db was written by schema version 3 (before the
// counters): app0/app1 versions 1.0-1.5, one file each, digests 1..6 of
// 100..600 bytes, odd digests on "local" and even ones on "s3"; digest 1
// verified, 3 mismatch (deep), 2 missing (quick). Labels team=red|blue
// and os=linux, producers ci and nightly, classes release and snapshot.
func TestMigrationBuildsCountersOnAnOlderDatabase(t *testing.T) {
	s := openTest(t, copyTestdata(t, "testdata/schema-v3.db"))
	ctx := context.Background()
	u, err := s.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*BackendUsage{
		"local": {Backend: "local", Blobs: 3, Bytes: 900, ByStatus: map[string]int{StatusVerified: 1, StatusMismatch: 1, StatusStored: 1}},
		"s3":    {Backend: "s3", Blobs: 3, Bytes: 1200, ByStatus: map[string]int{StatusMissing: 1, StatusStored: 2}},
	}
	if !reflect.DeepEqual(u, want) {
		t.Fatalf("counters after migration: %s, want local 3/900 s3 3/1200", fmt.Sprint(u["local"], u["s3"]))
	}
	failed, total, err := s.FailedLocations(ctx, 10)
	if err != nil || total != 2 || len(failed) != 2 || failed[0].Digest != digestN(2) || failed[1].Digest != digestN(3) {
		t.Fatalf("failed locations after migration: %v %d %+v", err, total, failed)
	}
	if problems, err := s.Check(ctx, []string{"local", "s3"}, 100); err != nil || len(problems) != 0 {
		t.Fatalf("db check after migration: %v %v", err, problems)
	}
}

func copyTestdata(t *testing.T, name string) string {
	t.Helper()
	src, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(t.TempDir(), "r.db")
	dst, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	return path
}

// Every write to storage_locations must go through putLocation or
// deleteLocation, or the counters drift. Outside locations.go (and the
// migrations in store.go) the bucket may only be read: no Put or Delete on
// it and no variable holding it (which could write).
func TestLocationsAreWrittenOnlyThroughHelpers(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"locations.go": true, "buckets.go": true}
	write := regexp.MustCompile(`Bucket\(bucketLocations\)\.(Put|Delete|NextSequence|SetSequence)\b|(=|,)\s*tx\.Bucket\(bucketLocations\)\s*(,|\n)`)
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || allowed[f] {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, loc := range write.FindAllIndex(b, -1) {
			line := 1 + strings.Count(string(b[:loc[0]]), "\n")
			t.Errorf("%s:%d writes storage_locations (or holds the bucket): use putLocation/deleteLocation (store/locations.go), so the counters and the failed index stay right", f, line)
		}
	}
	if checked < 5 {
		t.Fatalf("checked only %d files", checked)
	}
	// The check itself catches both forms.
	for _, bad := range []string{"tx.Bucket(bucketLocations).Put(k, v)", "locs, x := tx.Bucket(bucketLocations), 1\n", "locs := tx.Bucket(bucketLocations)\n"} {
		if !write.MatchString(bad) {
			t.Fatalf("the guard misses %q", bad)
		}
	}
	if write.MatchString("c := tx.Bucket(bucketLocations).Cursor()") {
		t.Fatal("the guard flags a read")
	}
}
