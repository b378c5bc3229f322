package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNextStatus is the whole state machine of docs/ARCHITECTURE.md,
// "Location status": every status against every mode and verdict.
func TestNextStatus(t *testing.T) {
	all := []string{StatusStored, StatusVerified, StatusMismatch, StatusMissing, StatusUnreadable}
	for _, cur := range all {
		for _, mode := range []string{ModeDeep, ModeQuick, ModeRead} {
			for _, verdict := range []string{StatusVerified, StatusMismatch, StatusMissing, StatusUnreadable} {
				var want string
				switch {
				case cur == StatusMismatch && mode == ModeDeep && verdict == StatusVerified:
					want = StatusVerified // a matching re-hash clears a mismatch
				case cur == StatusMismatch:
					want = StatusMismatch // nothing else does
				case verdict != StatusVerified:
					want = verdict // any check may find a failure
				case mode == ModeDeep:
					want = StatusVerified
				case mode == ModeQuick && (cur == StatusMissing || cur == StatusUnreadable):
					want = StatusStored // back, but unverified
				default:
					want = cur // a quick pass or a good read vouches for nothing more
				}
				if got := nextStatus(cur, mode, verdict); got != want {
					t.Errorf("%s + %s %s = %s, want %s", cur, mode, verdict, got, want)
				}
			}
		}
	}
}

// locStore is a store with one committed location of digest on "b".
func locStore(t *testing.T) (*Store, string) {
	t.Helper()
	s := openTest(t, filepath.Join(t.TempDir(), "db"))
	d := "sha256:" + strings.Repeat("cd", 32)
	draft := Package{Name: "p", Version: "1", Producer: "ci", RetentionClass: "release",
		Files: []File{{Path: "a", Size: 3, Digest: d, MediaType: "text/plain", Backend: "b"}}}
	sess, err := s.CreateSession(context.Background(), draft, []string{d}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(context.Background(), sess.ID, []string{d}); err != nil {
		t.Fatal(err)
	}
	return s, d
}

type step struct {
	mode, verdict string // a verdict, or mode "repair"
	want          string
}

func runSteps(t *testing.T, s *Store, d string, steps []step) {
	t.Helper()
	ctx := context.Background()
	for i, st := range steps {
		if st.mode == "repair" {
			if _, err := s.RecordRepair(ctx, d, "b", "sess"); err != nil {
				t.Fatal(err)
			}
		} else {
			l, _ := s.GetLocation(ctx, d, "b")
			v := Verdict{Digest: d, Backend: "b", Mode: st.mode, Verdict: st.verdict, At: time.Now(), Generation: l.Repairs}
			if st.verdict != StatusVerified {
				v.Error = "step " + st.verdict
			}
			if err := s.RecordVerdict(ctx, v); err != nil {
				t.Fatal(err)
			}
		}
		l, _ := s.GetLocation(ctx, d, "b")
		if l.Status != st.want {
			t.Fatalf("step %d (%s %s): status %s, want %s", i, st.mode, st.verdict, l.Status, st.want)
		}
	}
}

// TestStatusSequences: the sequences the issue names, through the
// database.
func TestStatusSequences(t *testing.T) {
	for _, c := range []struct {
		name  string
		steps []step
	}{
		{"deep-then-quick keeps mismatch", []step{
			{ModeDeep, StatusMismatch, StatusMismatch},
			{ModeQuick, StatusVerified, StatusMismatch},
			{ModeQuick, StatusMissing, StatusMismatch},
			{ModeQuick, StatusVerified, StatusMismatch},
			{ModeDeep, StatusUnreadable, StatusMismatch},
			{ModeQuick, StatusVerified, StatusMismatch},
			{ModeDeep, StatusVerified, StatusVerified},
		}},
		{"quick-then-deep", []step{
			{ModeQuick, StatusMissing, StatusMissing},
			{ModeQuick, StatusVerified, StatusStored},
			{ModeDeep, StatusMismatch, StatusMismatch},
			{ModeQuick, StatusVerified, StatusMismatch},
		}},
		{"quick finds a size mismatch", []step{
			{ModeQuick, StatusMismatch, StatusMismatch},
			{ModeQuick, StatusVerified, StatusMismatch},
		}},
		{"unreadable lifted to stored, not verified", []step{
			{ModeDeep, StatusVerified, StatusVerified},
			{ModeDeep, StatusUnreadable, StatusUnreadable},
			{ModeQuick, StatusVerified, StatusStored},
			{ModeQuick, StatusVerified, StatusStored},
			{ModeDeep, StatusVerified, StatusVerified},
			{ModeQuick, StatusVerified, StatusVerified},
		}},
		{"read mismatch, then repair", []step{
			{ModeRead, StatusMismatch, StatusMismatch},
			{ModeQuick, StatusVerified, StatusMismatch},
			{"repair", "", StatusStored},
			{ModeDeep, StatusVerified, StatusVerified},
			{"repair", "", StatusVerified}, // nothing to repair
		}},
		{"missing, then repair", []step{
			{ModeQuick, StatusMissing, StatusMissing},
			{"repair", "", StatusStored},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, d := locStore(t)
			runSteps(t, s, d, c.steps)
		})
	}
}

// TestVerdictRacingARepair: a check that read the object before a repair
// records its verdict after it; the stale verdict must not undo the repair.
func TestVerdictRacingARepair(t *testing.T) {
	ctx := context.Background()
	s, d := locStore(t)
	runSteps(t, s, d, []step{{ModeDeep, StatusMismatch, StatusMismatch}})
	before, _ := s.GetLocation(ctx, d, "b") // a deep run snapshots the location
	ok, err := s.RecordRepair(ctx, d, "b", "sess1")
	if err != nil || !ok {
		t.Fatalf("repair: %v %v", ok, err)
	}
	if ok, _ := s.RecordRepair(ctx, d, "b", "sess2"); ok {
		t.Fatal("a second repair of a location no longer failed was recorded")
	}
	for _, mode := range []string{ModeDeep, ModeRead, ModeQuick} {
		stale := Verdict{Digest: d, Backend: "b", Mode: mode, Verdict: StatusMismatch, At: time.Now(), Generation: before.Repairs, Error: "stale"}
		if err := s.RecordVerdict(ctx, stale); err != nil {
			t.Fatal(err)
		}
	}
	l, _ := s.GetLocation(ctx, d, "b")
	if l.Status != StatusStored || l.Repairs != 1 || l.LastError != "" {
		t.Fatalf("after stale verdicts: %+v", l)
	}
	// A verdict of the current generation counts.
	if err := s.RecordVerdict(ctx, Verdict{Digest: d, Backend: "b", Mode: ModeRead, Verdict: StatusMismatch, At: time.Now(), Generation: l.Repairs, Error: "fresh"}); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.GetLocation(ctx, d, "b"); l.Status != StatusMismatch || l.LastError != "fresh" {
		t.Fatalf("after a current verdict: %+v", l)
	}
	// Exactly one repair event, naming what was repaired.
	evs, _ := s.Events(ctx, 0, 100)
	var repairs []RepairEvent
	for _, e := range evs {
		if e.Type == EventLocationRepaired {
			var r RepairEvent
			json.Unmarshal(e.Data, &r)
			repairs = append(repairs, r)
		}
	}
	if len(repairs) != 1 || repairs[0].Previous != StatusMismatch || repairs[0].Session != "sess1" || repairs[0].Backend != "b" {
		t.Fatalf("repair events: %+v", repairs)
	}
}

// TestCommitNeverClearsAFailure: committing content whose location failed
// is incomplete until a verified repair recorded it; the object's mere
// presence (what Commit's stored list proves) is not enough.
func TestCommitNeverClearsAFailure(t *testing.T) {
	ctx := context.Background()
	s, d := locStore(t)
	runSteps(t, s, d, []step{{ModeDeep, StatusMismatch, StatusMismatch}})
	for _, version := range []string{"2", "1"} { // a new version, and the existing one again
		draft := Package{Name: "p", Version: version, Producer: "ci", RetentionClass: "release",
			Files: []File{{Path: "a", Size: 3, Digest: d, MediaType: "text/plain", Backend: "b"}}}
		sess, err := s.CreateSession(ctx, draft, []string{d}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit(ctx, sess.ID, []string{d}); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("version %s: commit over a mismatch without repair: %v, want ErrIncomplete", version, err)
		}
		if l, _ := s.GetLocation(ctx, d, "b"); l.Status != StatusMismatch {
			t.Fatalf("version %s: status %s after a refused commit", version, l.Status)
		}
		if version == "1" {
			if _, err := s.RecordRepair(ctx, d, "b", sess.ID); err != nil {
				t.Fatal(err)
			}
		}
		if version == "2" {
			s.DropSession(ctx, sess.ID)
			continue
		}
		res, err := s.Commit(ctx, sess.ID, []string{d})
		if err != nil || res.Created {
			t.Fatalf("commit after the repair: created %v, %v", res.Created, err)
		}
	}
}

// TestPackagesHolding: the packages holding a content, in name and version
// order up to the limit, found through the content references; a digest no
// package holds has no entry.
func TestPackagesHolding(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "h.db"))
	ctx := context.Background()
	shared, own := fmt.Sprintf("sha256:%064x", 1), fmt.Sprintf("sha256:%064x", 2)
	var pkgs []Package
	for _, id := range []string{"web@2", "api@1", "web@1", "etl@9"} {
		name, version, _ := strings.Cut(id, "@")
		files := []File{{Path: "a", Size: 1, Digest: shared, MediaType: "x/y", Backend: "local"}}
		if id == "etl@9" {
			files = []File{{Path: "b", Size: 1, Digest: own, MediaType: "x/y", Backend: "local"}}
		}
		pkgs = append(pkgs, Package{Name: name, Version: version, Producer: "ci", RetentionClass: "r", Files: files})
	}
	if err := s.ImportPackages(ctx, pkgs, "local"); err != nil {
		t.Fatal(err)
	}
	got, err := s.PackagesHolding(ctx, []string{shared, own, "sha256:none", shared}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprintf("map[%s:[api@1 web@1] %s:[etl@9]]", shared, own) {
		t.Fatalf("holding: %v", got)
	}
}
