package store

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// TestPassOlderThanAFailure: a pass whose check began before the
// location's last failure was reached is older evidence than the failure
// and changes nothing on the location, whenever it is recorded; a pass
// whose check began after it applies as before. Times are seconds after
// t0; a verdict runs from began to ended (At = ended, Duration the span).
func TestPassOlderThanAFailure(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	type rec struct {
		mode, verdict string
		began, ended  int
	}
	for _, c := range []struct {
		name     string
		verdicts []rec // recorded in this order
		want     string
		// wantError is the location's LastError: the failure's diagnosis
		// is kept when the pass does not apply.
		wantError                                   string
		wantVerifiedAt, wantCheckedAt, wantFailedAt int // -1: nil
		superseded                                  int // events marked superseded
	}{
		{name: "deep pass began before a read mismatch, committed after it",
			verdicts: []rec{{ModeRead, StatusMismatch, 5, 5}, {ModeDeep, StatusVerified, 0, 10}},
			want:     StatusMismatch, wantError: "read mismatch", wantVerifiedAt: -1, wantCheckedAt: -1, wantFailedAt: 5, superseded: 1},
		{name: "deep pass began after a read mismatch",
			verdicts: []rec{{ModeRead, StatusMismatch, 5, 5}, {ModeDeep, StatusVerified, 6, 10}},
			want:     StatusVerified, wantVerifiedAt: 10, wantCheckedAt: -1, wantFailedAt: 5},
		{name: "deep pass began before a deep unreadable",
			verdicts: []rec{{ModeDeep, StatusUnreadable, 1, 5}, {ModeDeep, StatusVerified, 0, 10}},
			want:     StatusUnreadable, wantError: "deep unreadable", wantVerifiedAt: 5, wantCheckedAt: -1, wantFailedAt: 5, superseded: 1},
		{name: "deep pass began during a deep unreadable",
			verdicts: []rec{{ModeDeep, StatusUnreadable, 1, 5}, {ModeDeep, StatusVerified, 3, 10}},
			want:     StatusUnreadable, wantError: "deep unreadable", wantVerifiedAt: 5, wantCheckedAt: -1, wantFailedAt: 5, superseded: 1},
		{name: "quick pass began before a quick missing",
			verdicts: []rec{{ModeQuick, StatusMissing, 4, 5}, {ModeQuick, StatusVerified, 0, 10}},
			want:     StatusMissing, wantError: "quick missing", wantVerifiedAt: -1, wantCheckedAt: 5, wantFailedAt: 5, superseded: 1},
		{name: "quick pass began after a quick missing",
			verdicts: []rec{{ModeQuick, StatusMissing, 4, 5}, {ModeQuick, StatusVerified, 6, 7}},
			want:     StatusStored, wantVerifiedAt: -1, wantCheckedAt: 7, wantFailedAt: 5},
		{name: "quick pass began before a read mismatch on a verified location",
			verdicts: []rec{{ModeDeep, StatusVerified, 0, 1}, {ModeRead, StatusMismatch, 5, 5}, {ModeQuick, StatusVerified, 2, 10}},
			want:     StatusMismatch, wantError: "read mismatch", wantVerifiedAt: 1, wantCheckedAt: -1, wantFailedAt: 5, superseded: 1},
		{name: "a failure recorded late still applies, and keeps the newer failure time",
			verdicts: []rec{{ModeQuick, StatusMissing, 4, 5}, {ModeDeep, StatusUnreadable, 1, 3}, {ModeDeep, StatusVerified, 4, 8}},
			want:     StatusUnreadable, wantError: "deep unreadable", wantVerifiedAt: 3, wantCheckedAt: 5, wantFailedAt: 5, superseded: 1},
		{name: "an older pass after a newer pass cleared the failure",
			verdicts: []rec{{ModeRead, StatusMismatch, 5, 5}, {ModeDeep, StatusVerified, 6, 8}, {ModeDeep, StatusVerified, 0, 10}},
			want:     StatusVerified, wantVerifiedAt: 8, wantCheckedAt: -1, wantFailedAt: 5, superseded: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			s, d := locStore(t)
			for _, r := range c.verdicts {
				v := Verdict{Digest: d, Backend: "b", Mode: r.mode, Verdict: r.verdict, At: sec(r.ended), Duration: sec(r.ended).Sub(sec(r.began))}
				if v.Failed() {
					v.Error = r.mode + " " + r.verdict
				}
				if err := s.RecordVerdict(ctx, v); err != nil {
					t.Fatal(err)
				}
			}
			l, err := s.GetLocation(ctx, d, "b")
			if err != nil {
				t.Fatal(err)
			}
			at := func(p *time.Time) int {
				if p == nil {
					return -1
				}
				return int(p.Sub(t0) / time.Second)
			}
			if l.Status != c.want || l.LastError != c.wantError || at(l.LastVerifiedAt) != c.wantVerifiedAt ||
				at(l.LastCheckedAt) != c.wantCheckedAt || at(l.LastFailedAt) != c.wantFailedAt {
				t.Fatalf("location %s %q, verified at %d, checked at %d, failed at %d; want %s %q, %d, %d, %d",
					l.Status, l.LastError, at(l.LastVerifiedAt), at(l.LastCheckedAt), at(l.LastFailedAt),
					c.want, c.wantError, c.wantVerifiedAt, c.wantCheckedAt, c.wantFailedAt)
			}
			// Every verdict is on record, the superseded ones marked.
			evs, err := s.Events(ctx, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			verified, superseded := 0, 0
			for _, e := range evs {
				if e.Type != EventLocationVerified {
					continue
				}
				verified++
				var v Verdict
				if err := json.Unmarshal(e.Data, &v); err != nil {
					t.Fatal(err)
				}
				if v.Superseded {
					superseded++
				}
			}
			if verified != len(c.verdicts) || superseded != c.superseded {
				t.Fatalf("%d location_verified events, %d superseded; want %d, %d", verified, superseded, len(c.verdicts), c.superseded)
			}
		})
	}
}

// TestRepairAfterAFailure: a verified repair clears a failure and its
// time, so the next check (of the new generation) passes whatever the
// clock said at the failure, while a pass that began before the repair
// stays stale by its generation.
func TestRepairAfterAFailure(t *testing.T) {
	ctx := context.Background()
	for _, repair := range []struct {
		name string
		do   func(t *testing.T, s *Store, d string)
	}{
		{"republish", func(t *testing.T, s *Store, d string) {
			if ok, err := s.RecordRepair(ctx, d, "b", "sess"); err != nil || !ok {
				t.Fatalf("repair: %v %v", ok, err)
			}
		}},
		{"copy", func(t *testing.T, s *Store, d string) {
			if out, err := s.RecordCopy(ctx, CopyRecord{Digest: d, Size: 3, Target: "b", Source: "a", Reason: "repair"}); err != nil || out != CopyRepaired {
				t.Fatalf("repair from a copy: %v %v", out, err)
			}
		}},
	} {
		t.Run(repair.name, func(t *testing.T) {
			s, d := locStore(t)
			failedAt := time.Now().Add(time.Hour) // the clock is stepped back after the failure
			if err := s.RecordVerdict(ctx, Verdict{Digest: d, Backend: "b", Mode: ModeRead, Verdict: StatusMismatch, At: failedAt, Error: "read"}); err != nil {
				t.Fatal(err)
			}
			repair.do(t, s, d)
			l, _ := s.GetLocation(ctx, d, "b")
			if l.Failed() || l.LastFailedAt != nil || l.LastError != "" || l.Repairs != 1 {
				t.Fatalf("after the repair: %+v", l)
			}
			stale := Verdict{Digest: d, Backend: "b", Mode: ModeDeep, Verdict: StatusMismatch, At: time.Now(), Error: "old bytes"}
			if err := s.RecordVerdict(ctx, stale); err != nil {
				t.Fatal(err)
			}
			next := Verdict{Digest: d, Backend: "b", Mode: ModeDeep, Verdict: StatusVerified, At: time.Now(), Duration: time.Second, Generation: l.Repairs}
			if err := s.RecordVerdict(ctx, next); err != nil {
				t.Fatal(err)
			}
			if l, _ := s.GetLocation(ctx, d, "b"); l.Status != StatusVerified || l.LastFailedAt != nil || l.LastVerifiedAt == nil {
				t.Fatalf("after a deep pass of the repaired bytes: %+v", l)
			}
		})
	}
}
