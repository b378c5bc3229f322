package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// openAt opens a store whose clock stands still, so two stores fed the
// same operations hold the same records.
func openAt(t *testing.T, name string) *Store {
	t.Helper()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	s, err := Open(filepath.Join(t.TempDir(), name), Options{NoSync: true, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// importOn records a stored location of each digest of ds on backend.
func importOn(t *testing.T, s *Store, backend string, ds []int) {
	t.Helper()
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, i := range ds {
			l := &Location{Digest: digestN(i), Backend: backend, Size: int64(1 + i%5), Status: StatusStored, StoredAt: s.now().UTC()}
			if err := putLocation(tx, l); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRecordVerdictsAsOneByOne: recording verdicts in batches leaves the
// same locations, counters, failed index and events as recording them one
// by one, through a random workload of deep, quick and read verdicts,
// repairs (which make older verdicts stale) and verdicts about locations
// that do not exist.
func TestRecordVerdictsAsOneByOne(t *testing.T) {
	ctx := context.Background()
	one, batched := openAt(t, "one.db"), openAt(t, "batch.db")
	var ds []int
	for i := 0; i < 30; i++ {
		ds = append(ds, i)
	}
	for _, s := range []*Store{one, batched} {
		importOn(t, s, "b0", ds)
		importOn(t, s, "b1", ds[:15])
	}
	r := rand.New(rand.NewPCG(15, 5))
	modes := []string{ModeDeep, ModeQuick, ModeRead}
	verdicts := []string{StatusVerified, StatusMismatch, StatusMissing, StatusUnreadable}
	at := time.Date(2026, 11, 27, 13, 0, 0, 0, time.UTC)
	recorded := 0
	for round := 0; round < 40; round++ {
		var batch []Verdict
		for n := 1 + r.IntN(20); n > 0; n-- {
			at = at.Add(time.Second)
			batch = append(batch, Verdict{Digest: digestN(r.IntN(35)), Backend: []string{"b0", "b1"}[r.IntN(2)],
				Mode: modes[r.IntN(3)], Verdict: verdicts[r.IntN(4)], At: at, RunID: "r", Generation: r.IntN(2), Error: fmt.Sprint("e", round)})
		}
		for _, v := range batch {
			if err := one.RecordVerdict(ctx, v); err != nil {
				t.Fatal(err)
			}
		}
		if err := batched.RecordVerdicts(ctx, batch); err != nil {
			t.Fatal(err)
		}
		recorded += len(batch)
		// Repairs between rounds make some later verdicts stale.
		d, b := digestN(r.IntN(30)), "b0"
		r1, err1 := one.RecordRepair(ctx, d, b, "")
		r2, err2 := batched.RecordRepair(ctx, d, b, "")
		if err1 != nil || err2 != nil || r1 != r2 {
			t.Fatalf("repair: %v %v, %v %v", r1, err1, r2, err2)
		}
	}
	for _, b := range []string{"b0", "b1"} {
		l1, err1 := one.LocationsOn(ctx, b)
		l2, err2 := batched.LocationsOn(ctx, b)
		if err1 != nil || err2 != nil || !reflect.DeepEqual(l1, l2) {
			t.Fatalf("locations on %s differ (%v, %v):\none by one %+v\nbatched   %+v", b, err1, err2, l1, l2)
		}
	}
	u1, _ := one.Usage(ctx)
	u2, _ := batched.Usage(ctx)
	if !reflect.DeepEqual(u1, u2) {
		t.Fatalf("counters differ: %+v vs %+v", u1, u2)
	}
	f1, n1, _ := one.FailedLocations(ctx, 1000)
	f2, n2, _ := batched.FailedLocations(ctx, 1000)
	if n1 != n2 || !reflect.DeepEqual(f1, f2) || n1 == 0 {
		t.Fatalf("failed index differs or is empty: %d %+v vs %d %+v", n1, f1, n2, f2)
	}
	if sc, err := batched.ScanUsage(ctx); err != nil || !reflect.DeepEqual(sc, u2) {
		t.Fatalf("batched counters %+v, a scan says %+v (%v)", u2, sc, err)
	}
	e1, e2 := eventCount(t, one), eventCount(t, batched)
	if e1 != e2 || e1 < recorded/2 {
		t.Fatalf("events: one by one %d, batched %d (of %d verdicts)", e1, e2, recorded)
	}
}

func eventCount(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	if err := s.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(bucketEvents).Stats().KeyN; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLocationsPage: paging through a backend's locations, with small
// pages, a filter, and a walk that goes round from a digest (after it to
// the end, then from the first up to it), yields exactly the backend's
// locations the filter keeps, each once, in digest order; a digest held
// by several backends is never split between pages.
func TestLocationsPage(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, "page.db")
	var all, some []int
	for i := 0; i < 60; i++ {
		all = append(all, i)
		if i%3 != 0 {
			some = append(some, i)
		}
	}
	importOn(t, s, "a", all)
	importOn(t, s, "b", some)
	importOn(t, s, "ab", all[:10]) // a backend id that ends like another
	keep := func(l *Location) bool { return l.Size != 3 }
	var want []string
	on, _ := s.LocationsOn(ctx, "b")
	for _, l := range on {
		if keep(&l) {
			want = append(want, l.Digest)
		}
	}
	if len(want) < 20 {
		t.Fatalf("fixture too small: %d", len(want))
	}
	walk := func(after, until string, limit int) []string {
		var got []string
		pages := 0
		for {
			p, err := s.LocationsPage(ctx, "b", after, until, limit, keep)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, l := range p.Locations {
				if l.Backend != "b" {
					t.Fatalf("page holds a location on %s", l.Backend)
				}
				got = append(got, l.Digest)
			}
			if len(p.Locations) > limit {
				t.Fatalf("page of %d, limit %d", len(p.Locations), limit)
			}
			if p.Done {
				break
			}
			if pages > 1000 {
				t.Fatal("paging does not end")
			}
			after = p.Last
		}
		return got
	}
	for _, limit := range []int{1, 2, 7, 1000} {
		if got := walk("", "", limit); !slices.Equal(got, want) {
			t.Fatalf("limit %d: got %v\nwant %v", limit, got, want)
		}
		// Round from a digest in the middle (one b holds) and from one
		// it does not hold.
		for _, from := range []string{digestN(31), digestN(30)} {
			got := append(walk(from, "", limit), walk("", from, limit)...)
			var round []string
			for _, d := range want {
				if d > from {
					round = append(round, d)
				}
			}
			for _, d := range want {
				if d <= from {
					round = append(round, d)
				}
			}
			if !slices.Equal(got, round) {
				t.Fatalf("limit %d from %s: got %v\nwant %v", limit, from, got, round)
			}
		}
	}
}

// TestVerifyLookups: LocationsExist and FailedLocationsOn answer what a
// scan of the backend's locations answers.
func TestVerifyLookups(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, "lookups.db")
	importOn(t, s, "a", []int{1, 2, 3, 4, 5, 6})
	importOn(t, s, "b", []int{2, 4, 6})
	for _, v := range []Verdict{{Digest: digestN(2), Backend: "a", Verdict: StatusMissing}, {Digest: digestN(4), Backend: "a", Verdict: StatusMismatch},
		{Digest: digestN(6), Backend: "a", Verdict: StatusUnreadable}, {Digest: digestN(2), Backend: "b", Verdict: StatusMismatch}} {
		v.Mode = ModeDeep
		if err := s.RecordVerdict(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	ex, err := s.LocationsExist(ctx, "b", []string{digestN(1), digestN(2), digestN(6), digestN(9)})
	if err != nil || !reflect.DeepEqual(ex, map[string]bool{digestN(2): true, digestN(6): true}) {
		t.Fatalf("LocationsExist = %v, %v", ex, err)
	}
	got, total, err := s.FailedLocationsOn(ctx, "a", 2)
	if err != nil || total != 3 || len(got) != 2 || got[0].Digest != digestN(2) || got[1].Digest != digestN(4) || got[1].Status != StatusMismatch {
		t.Fatalf("FailedLocationsOn(a, 2) = %+v, %d, %v", got, total, err)
	}
	got, total, err = s.FailedLocationsOn(ctx, "b", 10)
	if err != nil || total != 1 || len(got) != 1 || got[0].Backend != "b" || got[0].Digest != digestN(2) {
		t.Fatalf("FailedLocationsOn(b) = %+v, %d, %v", got, total, err)
	}
}
