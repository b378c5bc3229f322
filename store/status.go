package store

import (
	"bytes"
	"context"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ModeRead marks a verdict recorded by a full read through the API whose
// bytes did not hash to the digest. It counts as evidence like a deep
// check: it can set mismatch, never clear anything.
const ModeRead = "read"

// EventLocationRepaired is appended when a failed location was rewritten
// with bytes that were verified against the digest (a republish).
const EventLocationRepaired = "v1.storage.location_repaired"

// The location status state machine (docs/ARCHITECTURE.md, "Location
// status"). A failed status is cleared only by evidence that covers it: a
// deep re-hash that matches (-> verified) or a verified repair (-> stored,
// RecordRepair). A quick check may find a failure, and may lift missing
// or unreadable to the unverified stored, never mismatch. A pass whose
// check began before the location's last failure (LastFailedAt) applies
// no rule at all (RecordVerdict): it is older than the failure.

// nextStatus returns the status a location in status cur takes after a
// verdict of the given mode (deep, quick or read).
func nextStatus(cur string, mode, verdict string) string {
	if cur == StatusMismatch && !(mode == ModeDeep && verdict == StatusVerified) {
		// Only a matching re-hash (or a repair) clears a mismatch. Not
		// even another failure replaces it: missing-then-back or
		// unreadable could otherwise be lifted by a quick check.
		return StatusMismatch
	}
	if verdict != StatusVerified {
		return verdict
	}
	switch mode {
	case ModeDeep:
		return StatusVerified
	case ModeQuick:
		// Existence and size vouch for nothing about the bytes: a
		// verified location stays verified, a failed one becomes stored.
		if cur == StatusMissing || cur == StatusUnreadable {
			return StatusStored
		}
		return cur
	}
	return cur // a passing read changes nothing
}

// RepairEvent is the data of a location_repaired event.
type RepairEvent struct {
	Digest   string    `json:"digest"`
	Backend  string    `json:"backend"`
	Previous string    `json:"previous_status"`
	Error    string    `json:"previous_error,omitempty"`
	At       time.Time `json:"at"`
	Repairs  int       `json:"repairs"`
	Session  string    `json:"upload_id,omitempty"`
	// Source and Target name the backends of a repair from another copy
	// (RecordCopy); Reason says what started it.
	Source string `json:"source,omitempty"`
	Target string `json:"target,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// RecordRepair records that the object of digest on backend was rewritten
// with bytes verified against the digest. If the location has a failed
// status it becomes stored, its repair count (the generation that makes
// verdicts of older reads stale) grows, its LastError and LastFailedAt
// are cleared (they were about the old bytes), and a location_repaired
// event is appended, all in one transaction; it returns true. A location
// that is absent or not failed is left alone (false): a concurrent repair
// won.
func (s *Store) RecordRepair(ctx context.Context, digest, backend, session string) (bool, error) {
	var repaired bool
	err := s.batch(func(tx *bolt.Tx) error {
		repaired = false
		l, err := getLocation(tx, digest, backend)
		if err != nil || l == nil || !l.Failed() {
			return err
		}
		now := s.now().UTC()
		ev := RepairEvent{Digest: digest, Backend: backend, Previous: l.Status, Error: l.LastError, At: now, Repairs: l.Repairs + 1, Session: session,
			Source: RepairByUpload, Target: backend, Reason: "republish"}
		l.Status, l.LastError, l.LastFailedAt, l.StoredAt, l.Repairs = StatusStored, "", nil, now, l.Repairs+1
		if err := putLocation(tx, l); err != nil {
			return err
		}
		repaired = true
		return s.appendEvent(tx, EventLocationRepaired, digest, ev)
	})
	return repaired, err
}

// putLocation (store/locations.go) keeps the counters and the failed index.

// PackagesHolding returns, for each of digests, up to limit packages
// ("name@version", in name and version order) that have a file with that
// content. It reads the content references (package_refs) of those
// digests only, so its cost does not grow with the store.
func (s *Store) PackagesHolding(ctx context.Context, digests []string, limit int) (map[string][]string, error) {
	out := map[string][]string{}
	if len(digests) == 0 {
		return out, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		pkgs := tx.Bucket(bucketPackages)
		c := tx.Bucket(bucketPackageRefs).Cursor()
		for _, d := range digests {
			if _, done := out[d]; done {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			var ids []string
			prefix := append([]byte(d), 0)
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(ids) < limit; k, _ = c.Next() {
				pk := k[len(prefix):]
				if pkgs.Get(pk) == nil {
					continue // db check reports a reference to no package
				}
				name, version, _ := bytes.Cut(pk, []byte{0})
				ids = append(ids, string(name)+"@"+string(version))
			}
			if len(ids) > 0 {
				out[d] = ids
			}
		}
		return nil
	})
	return out, err
}
