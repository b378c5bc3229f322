package store

import (
	"bytes"
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Verification modes.
const (
	ModeDeep  = "deep"  // re-read and re-hash every byte
	ModeQuick = "quick" // existence and size only
)

// Event types of verification.
const (
	EventLocationVerified = "v1.storage.location_verified"
	// EventLocationFailed is emitted in addition to location_verified for
	// every failed verdict, so consumers can subscribe to failures alone.
	EventLocationFailed = "v1.storage.location_failed"
	// EventVerificationRunCompleted is the summary of a finished run (kept
	// longer than the verdicts by event retention).
	EventVerificationRunCompleted = "v1.verification.run_completed"
)

// VerificationFinished appends the summary event of a finished run.
func (s *Store) VerificationFinished(ctx context.Context, run RunSummary) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return s.appendEvent(tx, EventVerificationRunCompleted, run.Backend+"/"+run.Mode, run)
	})
}

// Verdict is the outcome of verifying one location.
type Verdict struct {
	Digest  string `json:"digest"`
	Backend string `json:"backend"`
	Mode    string `json:"mode"`
	Verdict string `json:"verdict"` // verified, mismatch, missing, unreadable
	// At is when the check ended (the verdict was reached) and Duration
	// how long it took, so the check began at At-Duration (Began). A read
	// mismatch has no Duration: At is when the read found it.
	At        time.Time     `json:"at"`
	BytesRead int64         `json:"bytes_read"`
	Duration  time.Duration `json:"duration_ns"`
	Error     string        `json:"error,omitempty"`
	RunID     string        `json:"run_id"`
	// Generation is the location's Repairs when the check began; a
	// verdict whose location was repaired since is stale and dropped.
	Generation int `json:"generation,omitempty"`
	// Superseded is set by RecordVerdict on the recorded event of a pass
	// that did not apply: the location had failed after the check began.
	Superseded bool `json:"superseded,omitempty"`
}

// Failed reports whether the verdict is a failure.
func (v Verdict) Failed() bool { return v.Verdict != StatusVerified }

// Began is when the check began.
func (v Verdict) Began() time.Time { return v.At.Add(-v.Duration) }

// RecordVerdict updates the location's status (by the rules of nextStatus:
// only a deep match clears a mismatch, a quick pass lifts missing or
// unreadable to stored) and writes the verdict's events in one
// transaction. A location deleted meanwhile, or repaired since the check
// began (v.Generation below its Repairs), is skipped: the verdict is about
// bytes that are no longer there.
//
// A failed verdict always applies and moves the location's LastFailedAt
// up to v.At. A pass whose check began before LastFailedAt (v.Began) is
// older evidence than the failure: the location is left as it is (status,
// LastError, and LastVerifiedAt or LastCheckedAt, which reads and direct
// downloads trust), and only its location_verified event is appended,
// marked Superseded, so the check is on record.
func (s *Store) RecordVerdict(ctx context.Context, v Verdict) error {
	return s.RecordVerdicts(ctx, []Verdict{v})
}

// RecordVerdicts records vs in order, each exactly as RecordVerdict does,
// all in one durable transaction: either every verdict is recorded (or
// skipped as stale, as RecordVerdict skips it) or, on error, none is.
// Verification records its verdicts in batches through it, so a run
// costs one commit per batch instead of one per object.
func (s *Store) RecordVerdicts(ctx context.Context, vs []Verdict) error {
	if len(vs) == 0 {
		return nil
	}
	return s.batch(func(tx *bolt.Tx) error {
		for i := range vs {
			if err := s.recordVerdict(tx, &vs[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Store) recordVerdict(tx *bolt.Tx, v *Verdict) error {
	l, err := getLocation(tx, v.Digest, v.Backend)
	if err != nil || l == nil || v.Generation < l.Repairs {
		return err
	}
	if !v.Failed() && l.LastFailedAt != nil && v.Began().Before(*l.LastFailedAt) {
		ev := *v
		ev.Superseded = true
		return s.appendEvent(tx, EventLocationVerified, v.Digest, ev)
	}
	at := v.At.UTC()
	l.Status = nextStatus(l.Status, v.Mode, v.Verdict)
	switch v.Mode {
	case ModeDeep:
		l.LastVerifiedAt = &at
	case ModeQuick:
		l.LastCheckedAt = &at
	}
	if v.Failed() {
		l.LastError = v.Error
		if l.LastFailedAt == nil || at.After(*l.LastFailedAt) {
			l.LastFailedAt = &at
		}
	} else if !l.Failed() {
		l.LastError = ""
	} // else: a pass that cannot clear the failure keeps its diagnosis
	if err := putLocation(tx, l); err != nil {
		return err
	}
	if err := s.appendEvent(tx, EventLocationVerified, v.Digest, *v); err != nil {
		return err
	}
	if v.Failed() {
		return s.appendEvent(tx, EventLocationFailed, v.Digest, *v)
	}
	return nil
}

// LocationPage is one page of a backend's locations (LocationsPage).
type LocationPage struct {
	// Locations are the page's locations that keep accepted, in digest
	// order.
	Locations []Location
	// Last is the last digest the page looked at; the next page starts
	// after it.
	Last string
	// Done is set when no digest after Last is left within the bound.
	Done bool
}

// pageScanFactor bounds the keys one page reads (in one read
// transaction) to this many times its limit whatever keep rejects, so a
// page stays short.
const pageScanFactor = 4

// LocationsPage reads, in one short read transaction and digest order,
// the locations on backend whose digest is after after ("" = from the
// first) and not after until ("" = no bound), up to limit of them that
// keep accepts (nil keeps all). It reads at most limit*4 keys, so a page
// whose locations keep mostly rejects may hold fewer than limit and not
// be Done; the caller pages on from Last. Paging through a backend thus
// costs memory for one page, not for every location.
func (s *Store) LocationsPage(ctx context.Context, backend, after, until string, limit int, keep func(*Location) bool) (LocationPage, error) {
	if limit < 1 {
		limit = 1
	}
	var p LocationPage
	suffix := append([]byte{0}, backend...)
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketLocations).Cursor()
		var k, v []byte
		if after == "" {
			k, v = c.First()
		} else {
			// Every key of digest after sorts before after+"\x01".
			k, v = c.Seek(append([]byte(after), 1))
		}
		p.Done = true
		scanned := 0
		for ; k != nil; k, v = c.Next() {
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				continue // db check reports a malformed key
			}
			d := k[:i]
			if until != "" && string(d) > until {
				break
			}
			if string(d) != p.Last {
				// A page ends between digests, never inside one (the
				// next page starts after Last).
				if scanned >= limit*pageScanFactor || len(p.Locations) >= limit {
					p.Done = false
					break
				}
				p.Last = string(d)
			}
			scanned++
			if !bytes.Equal(k[i:], suffix) {
				continue
			}
			var l Location
			if err := decodeLocationKV(k, v, &l); err != nil {
				return fmt.Errorf("location %q: %w", k, err)
			}
			if keep == nil || keep(&l) {
				p.Locations = append(p.Locations, l)
			}
		}
		return ctx.Err()
	})
	return p, err
}

// LocationsExist reports which of digests have a location on backend, in
// one read transaction (one lookup per digest).
func (s *Store) LocationsExist(ctx context.Context, backend string, digests []string) (map[string]bool, error) {
	out := make(map[string]bool, len(digests))
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, d := range digests {
			if hasLocationKey(tx, d, backend) {
				out[d] = true
			}
		}
		return ctx.Err()
	})
	return out, err
}

// FailedLocationsOn returns up to limit locations of backend with a
// failed status, in digest order, and how many there are, from the
// failed index and the counters (no scan of the backend's locations).
func (s *Store) FailedLocationsOn(ctx context.Context, backend string, limit int) ([]Location, int, error) {
	var out []Location
	total := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		if u := readCounts(tx)[backend]; u != nil {
			for status, n := range u.ByStatus {
				if (Location{Status: status}).Failed() {
					total += n
				}
			}
		}
		c := tx.Bucket(bucketFailedLocations).Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			i := bytes.IndexByte(k, 0)
			if i < 0 || string(k[i+1:]) != backend {
				continue
			}
			l, err := getLocation(tx, string(k[:i]), backend)
			if err != nil {
				return err
			}
			if l != nil {
				out = append(out, *l)
			}
		}
		return ctx.Err()
	})
	return out, total, err
}

// RunSummary describes one verification run.
type RunSummary struct {
	ID         string         `json:"id"`
	Backend    string         `json:"backend"`
	Mode       string         `json:"mode"`
	StartedAt  time.Time      `json:"started_at"`
	FinishedAt *time.Time     `json:"finished_at,omitempty"`
	Checked    int            `json:"checked"`
	ByVerdict  map[string]int `json:"by_verdict"`
	BytesRead  int64          `json:"bytes_read"`
	Orphans    int            `json:"orphans"`
	Error      string         `json:"error,omitempty"`
	Resumed    bool           `json:"resumed,omitempty"`
	// Position is the digest of the last location the run handed to a
	// check: a resumed run, or the next run, goes on after it (round the
	// backend's locations in digest order).
	Position string `json:"position,omitempty"`
}

// VerifyState is the persisted schedule of one backend and mode.
type VerifyState struct {
	// Current is set while a run is in progress; a restart resumes it.
	Current *RunSummary `json:"current,omitempty"`
	// Last is the last finished run.
	Last *RunSummary `json:"last,omitempty"`
	// LastSuccessAt is when a run last finished without error.
	LastSuccessAt *time.Time `json:"last_success_at,omitempty"`
	// NextAt is when the scheduler plans the next run.
	NextAt *time.Time `json:"next_at,omitempty"`
	// Overruns counts runs that were due while the previous one still ran.
	Overruns      int        `json:"overruns"`
	LastOverrunAt *time.Time `json:"last_overrun_at,omitempty"`
}

// GetVerifyState returns the state of backend and mode (zero if none).
func (s *Store) GetVerifyState(ctx context.Context, backend, mode string) (VerifyState, error) {
	var st VerifyState
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketVerifyState).Get(joinKey(backend, mode))
		if v == nil {
			return nil
		}
		return decode(v, &st)
	})
	return st, err
}

// UpdateVerifyState applies fn to the state in one transaction.
func (s *Store) UpdateVerifyState(ctx context.Context, backend, mode string, fn func(*VerifyState)) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVerifyState)
		var st VerifyState
		if v := b.Get(joinKey(backend, mode)); v != nil {
			if err := decode(v, &st); err != nil {
				return err
			}
		}
		fn(&st)
		v, err := encode(&st)
		if err != nil {
			return err
		}
		return b.Put(joinKey(backend, mode), v)
	})
}

// StagedOn returns the digests open upload sessions stage (or leases
// hold) on backend and those garbage collection is deleting (gc intents);
// verification does not report them as orphans.
func (s *Store) StagedOn(ctx context.Context, backend string) (map[string]bool, error) {
	out := map[string]bool{}
	prefix := append([]byte(backend), 0)
	s.settle()
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketUploadRefs).Cursor()
		for k, _ := c.Seek(prefix); k != nil && len(k) > len(prefix) && string(k[:len(prefix)]) == string(prefix); k, _ = c.Next() {
			rest := k[len(prefix):]
			for i, b := range rest {
				if b == 0 {
					out[string(rest[:i])] = true
					break
				}
			}
		}
		c = tx.Bucket(bucketGCIntents).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			out[string(k[len(prefix):])] = true
		}
		return nil
	})
	return out, err
}
