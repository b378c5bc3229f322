package verify

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"artifactstore/backends"
	"artifactstore/backends/local"
	"artifactstore/internal/digest"
	"artifactstore/store"
)

// fixture is a store with n small objects on a local backend, and their
// digests in order.
func fixture(t *testing.T, n int) (*store.Store, *local.Backend, []string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "r.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	lb, err := local.New("local", local.Config{Root: filepath.Join(dir, "objects")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var pkgs []store.Package
	var ds []string
	for i := 0; i < n; i++ {
		data := []byte(fmt.Sprintf("object %d of the verify fixture", i))
		d := digest.FromBytes(data)
		if err := lb.Put(ctx, d, int64(len(data)), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, store.Package{Name: "p", Version: fmt.Sprint(i), Producer: "ci", RetentionClass: "release",
			Files: []store.File{{Path: "f", Size: int64(len(data)), Digest: d.String(), MediaType: "x/y"}}})
		ds = append(ds, d.String())
	}
	if err := st.ImportPackages(ctx, pkgs, "local"); err != nil {
		t.Fatal(err)
	}
	slices.Sort(ds)
	return st, lb, ds
}

func engine(st *store.Store, lb *local.Backend, concurrency int) *Engine {
	return New(st, map[string]backends.Backend{"local": lb}, Options{Concurrency: concurrency})
}

// TestRunGoesRoundFromPosition: a run walks the backend's locations in
// digest order starting after where the last run stopped (Position) and
// wrapping around, so every location is checked once and, run after run,
// each comes at the same place: the one whose check is oldest first.
func TestRunGoesRoundFromPosition(t *testing.T) {
	ctx := context.Background()
	st, lb, ds := fixture(t, 40)
	k := 17
	if err := st.UpdateVerifyState(ctx, "local", store.ModeQuick, func(s *store.VerifyState) {
		s.Last = &store.RunSummary{Position: ds[k]}
	}); err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(ds[k+1:]), ds[:k+1]...)
	for run := 0; run < 2; run++ {
		var got []string
		total := -1
		rep, err := engine(st, lb, 1).Run(ctx, "local", store.ModeQuick, Hooks{
			Start:   func(n int) { total = n },
			Verdict: func(v store.Verdict) { got = append(got, v.Digest) },
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("run %d checked\n%v\nwant\n%v", run, got, want)
		}
		if total != len(ds) || rep.Checked != len(ds) || rep.ByVerdict[store.StatusVerified] != len(ds) || rep.Position != ds[k] {
			t.Fatalf("run %d: start total %d, report %+v", run, total, rep.RunSummary)
		}
	}
}

// TestInterruptedRunCountsWhatItRecorded: a cancelled run persists as
// checked exactly the verdicts it recorded (and passed to the hook),
// every one of them is in the database, and the resumed run checks the
// rest, once each. More objects than an orphan lookup batch, plus one
// object no location records: the orphan count is exact.
func TestInterruptedRunCountsWhatItRecorded(t *testing.T) {
	ctx := context.Background()
	st, lb, ds := fixture(t, orphanBatch+100)
	orphan := []byte("an object nobody published")
	od := digest.FromBytes(orphan)
	if err := lb.Put(ctx, od, int64(len(orphan)), bytes.NewReader(orphan)); err != nil {
		t.Fatal(err)
	}
	e := engine(st, lb, 2)
	cctx, cancel := context.WithCancel(ctx)
	seen := map[string]int{}
	var mu sync.Mutex
	hook := func(v store.Verdict) {
		mu.Lock()
		defer mu.Unlock()
		seen[v.Digest]++
		if len(seen) == 300 {
			cancel()
		}
	}
	if _, err := e.Run(cctx, "local", store.ModeDeep, Hooks{Verdict: hook}); err == nil {
		t.Fatal("the interrupted run reported success")
	}
	state, err := st.GetVerifyState(ctx, "local", store.ModeDeep)
	if err != nil || state.Current == nil {
		t.Fatalf("no current run persisted: %+v %v", state, err)
	}
	locs, _ := st.LocationsOn(ctx, "local")
	verified := 0
	for _, l := range locs {
		if l.LastVerifiedAt != nil {
			verified++
		}
	}
	if len(seen) < 300 || state.Current.Checked != len(seen) || verified != len(seen) || state.Current.ByVerdict[store.StatusVerified] != len(seen) {
		t.Fatalf("hook saw %d, persisted checked %d (%v), recorded in the database %d", len(seen), state.Current.Checked, state.Current.ByVerdict, verified)
	}
	first := len(seen)
	rep, err := e.Run(ctx, "local", store.ModeDeep, Hooks{Verdict: hook})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if seen[d] != 1 {
			t.Fatalf("%s checked %d times over the two runs", d, seen[d])
		}
	}
	if !rep.Resumed || rep.Checked != len(ds) || len(seen) != len(ds) || first == len(ds) {
		t.Fatalf("resumed run: %+v (first run %d)", rep.RunSummary, first)
	}
	if rep.Orphans != 1 || len(rep.OrphanDigests) != 1 || rep.OrphanDigests[0] != od.String() {
		t.Fatalf("orphans %d %v, want only %s", rep.Orphans, rep.OrphanDigests, od)
	}
}

// TestUnrecordedVerdictsAreNotCounted: when the database stops taking
// verdicts mid-run, the run fails and its figures count only the
// verdicts that were recorded, the same ones the hook received.
func TestUnrecordedVerdictsAreNotCounted(t *testing.T) {
	ctx := context.Background()
	st, lb, ds := fixture(t, 600)
	hooked := 0
	rep, err := engine(st, lb, 2).Run(ctx, "local", store.ModeQuick, Hooks{Verdict: func(store.Verdict) {
		hooked++
		if hooked == 100 {
			st.Close()
		}
	}})
	if err == nil {
		t.Fatal("a run whose verdicts could not be recorded reported success")
	}
	if rep == nil || rep.Checked != hooked || hooked < 100 || hooked >= len(ds) {
		t.Fatalf("hook received %d verdicts, report %+v, error %v", hooked, rep, err)
	}
}
