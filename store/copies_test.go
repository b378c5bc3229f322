package store

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRecordCopy is RecordCopy's table: what each state of the target
// location becomes, which event it writes, and that content no package
// references is never recorded (gc may be deleting it).
func TestRecordCopy(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name       string
		target     func(s *Store, d string) // prepares the target "c"
		unref      bool                     // delete the package first
		want       CopyOutcome
		wantErr    error
		wantStatus string // "" = no location on c
		wantEvent  string
	}{
		{name: "absent", target: func(*Store, string) {}, want: CopyCreated, wantStatus: StatusVerified, wantEvent: EventLocationCreated},
		{name: "failed", target: func(s *Store, d string) {
			addLoc(t, s, d, "c", StatusStored)
			if err := s.RecordVerdict(ctx, Verdict{Digest: d, Backend: "c", Mode: ModeDeep, Verdict: StatusMismatch, At: at, Error: "flipped"}); err != nil {
				t.Fatal(err)
			}
		}, want: CopyRepaired, wantStatus: StatusVerified, wantEvent: EventLocationRepaired},
		{name: "usable", target: func(s *Store, d string) { addLoc(t, s, d, "c", StatusStored) }, want: CopyUnchanged, wantStatus: StatusStored},
		{name: "not referenced", target: func(*Store, string) {}, unref: true, wantErr: ErrNotReferenced},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, d := locStore(t)
			c.target(s, d)
			if err := s.AddPendingCopies(ctx, []PendingCopy{{Digest: d, Backend: "c", Size: 3, Since: at}}); err != nil {
				t.Fatal(err)
			}
			if c.unref {
				if _, err := s.DeletePackage(ctx, "p", "1", Deletion{Reason: "test"}); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := s.LastEventSeq(ctx)
			got, err := s.RecordCopy(ctx, CopyRecord{Digest: d, Size: 3, Source: "b", Target: "c", VerifiedAt: at, Reason: "repair"})
			if !errors.Is(err, c.wantErr) || (err == nil) != (c.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, c.wantErr)
			}
			if got != c.want {
				t.Errorf("outcome = %v, want %v", got, c.want)
			}
			l, _ := s.GetLocation(ctx, d, "c")
			switch {
			case c.wantStatus == "" && l != nil:
				t.Errorf("location recorded: %+v", l)
			case c.wantStatus != "" && (l == nil || l.Status != c.wantStatus):
				t.Errorf("location = %+v, want status %s", l, c.wantStatus)
			}
			evs, _ := s.Events(ctx, before, 10)
			var types []string
			for _, e := range evs {
				types = append(types, e.Type)
			}
			if c.wantEvent == "" && len(evs) > 0 || c.wantEvent != "" && (len(evs) != 1 || evs[0].Type != c.wantEvent) {
				t.Fatalf("events %v, want [%s]", types, c.wantEvent)
			}
			if c.wantEvent == EventLocationRepaired {
				var ev RepairEvent
				json.Unmarshal(evs[0].Data, &ev)
				if ev.Source != "b" || ev.Target != "c" || ev.Previous != StatusMismatch || ev.Repairs != 1 {
					t.Errorf("repair event %+v, want source b, target c, previous mismatch, repairs 1", ev)
				}
			}
			_, pending, _ := s.PendingCopies(ctx, 10)
			if wantPending := 0; c.wantErr != nil {
				wantPending = 1
				if pending != wantPending {
					t.Errorf("pending copies %d, want %d (a refused copy leaves the pending one)", pending, wantPending)
				}
			} else if pending != 0 {
				t.Errorf("pending copies %d after the copy was recorded", pending)
			}
			if probs, err := s.Check(ctx, []string{"b", "c"}, 10); err != nil || len(probs) > 0 {
				t.Errorf("db check: %v %v", probs, err)
			}
		})
	}
}

// addLoc records a location through a commit of another package with the
// same content routed to backend.
func addLoc(t *testing.T, s *Store, d, backend, status string) {
	t.Helper()
	draft := Package{Name: "q-" + backend, Version: "1", Producer: "ci", RetentionClass: "release",
		Files: []File{{Path: "a", Size: 3, Digest: d, MediaType: "text/plain", Backend: backend}}}
	sess, err := s.CreateSession(context.Background(), draft, []string{d}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(context.Background(), sess.ID, []string{d}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeletePackage(context.Background(), draft.Name, draft.Version, Deletion{Reason: "test"}); err != nil {
		t.Fatal(err)
	}
}

// TestCommitWithCopies: the commit records the copies written to other
// backends as locations of their own and the unwritten ones as pending
// copies, in the package's transaction; DropLeasesOf removes only the
// leases of its prefix.
func TestCommitWithCopies(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "db"))
	d1, d2 := "sha256:"+strings.Repeat("a1", 32), "sha256:"+strings.Repeat("b2", 32)
	draft := Package{Name: "p", Version: "1", Producer: "ci", RetentionClass: "release",
		Files: []File{{Path: "a", Size: 3, Digest: d1, Backend: "x"}, {Path: "b", Size: 4, Digest: d2, Backend: "x"}}}
	sess, err := s.CreateSession(ctx, draft, []string{d1, d2}, time.Hour, SessionCopies{Backends: []string{"y", "z"}, MinCopies: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.HoldLeases(ctx, "copy-"+sess.ID, []Ref{{"y", d1}, {"y", d2}}); err != nil {
		t.Fatal(err)
	}
	if err := s.HoldLeases(ctx, "other", []Ref{{"z", d1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CommitWith(ctx, sess.ID, CommitInput{Stored: []string{d1, d2},
		Copies: []Ref{{"y", d1}, {"y", d2}}, Pending: []Ref{{"z", d1}, {"z", d2}}}); err != nil {
		t.Fatal(err)
	}
	locs, _ := s.LocationsOf(ctx, []string{d1, d2})
	for _, d := range []string{d1, d2} {
		if len(locs[d]) != 2 || locs[d][0].Backend != "x" || locs[d][1].Backend != "y" {
			t.Errorf("locations of %s: %+v, want x and y", d, locs[d])
		}
	}
	pending, n, _ := s.PendingCopies(ctx, 10)
	if n != 2 || pending[0].Backend != "z" || pending[0].Package != "p@1" {
		t.Errorf("pending copies %d %+v, want both files on z", n, pending)
	}
	of, _ := s.PendingCopiesOf(ctx, []string{d1})
	if len(of[d1]) != 1 || of[d1][0] != "z" {
		t.Errorf("PendingCopiesOf = %v", of)
	}
	if n, err := s.DropLeasesOf(ctx, "copy-"); err != nil || n != 2 {
		t.Errorf("DropLeasesOf dropped %d (%v), want the 2 copy leases", n, err)
	}
	if held, _ := s.IsReferenced(ctx, Ref{Backend: "z", Digest: d1}); !held {
		t.Error("a lease of another holder was dropped")
	}
	if probs, err := s.Check(ctx, []string{"x", "y", "z"}, 10); err != nil || len(probs) > 0 {
		t.Errorf("db check: %v %v", probs, err)
	}
}
