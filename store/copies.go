package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Copies: a routing rule may ask for content on several backends. Each
// copy is its own location (digest \x00 backend). A copy the publish could
// not write (min_copies allowed committing without it) is a PendingCopy
// until internal/replication writes it; a copy that verification finds
// failed is rewritten from a good one (RecordCopy, event
// location_repaired).

// PendingCopy is a copy a package's rule asks for that is not written yet.
type PendingCopy struct {
	Digest  string    `json:"digest"`
	Backend string    `json:"backend"`
	Size    int64     `json:"size"`
	Since   time.Time `json:"since"`
	// Package is the package whose publish asked for the copy
	// ("name@version").
	Package string `json:"package,omitempty"`
	// Reason says why the copy was not written at publish time.
	Reason string `json:"reason,omitempty"`
}

// ErrNotReferenced is returned by RecordCopy when no committed package
// references the content any more: garbage collection may be deleting it,
// so the copy is not recorded (the caller removes the object it wrote).
var ErrNotReferenced = errors.New("no package references the content")

// CopyRecord is a copy of content written to Target from Source with
// bytes checked against the digest.
type CopyRecord struct {
	Digest string
	Size   int64
	Source string
	Target string
	// VerifiedAt is when the written copy was re-read and matched (a
	// deep check); zero if it was not re-read (status stays "stored").
	VerifiedAt time.Time
	// Reason goes into the event ("pending", "repair", "migration", ...).
	Reason string
}

// CopyOutcome says what RecordCopy changed.
type CopyOutcome int

const (
	// CopyUnchanged: the target already had a usable location.
	CopyUnchanged CopyOutcome = iota
	// CopyCreated: a new location was recorded (event location_created).
	CopyCreated
	// CopyRepaired: a failed location was replaced (event location_repaired).
	CopyRepaired
)

// RepairSource names where the bytes of a repair came from.
const (
	RepairByUpload = "upload"
)

// RecordCopy records a copy written to rec.Target, in one transaction:
//   - no committed package references the digest: nothing is recorded,
//     ErrNotReferenced (garbage collection may be deleting the content);
//   - no location on the target: a new one (verified if rec.VerifiedAt is
//     set, else stored) and a location_created event;
//   - a failed location: it becomes verified (or stored), its repair
//     count (generation) grows and a location_repaired event names source
//     and target;
//   - a usable location: left alone.
//
// A pending copy of the digest on the target is dropped in every case but
// the first.
func (s *Store) RecordCopy(ctx context.Context, rec CopyRecord) (CopyOutcome, error) {
	outs, errs, err := s.RecordCopies(ctx, []CopyRecord{rec})
	if err != nil {
		return CopyUnchanged, err
	}
	return outs[0], errs[0]
}

// RecordCopies is RecordCopy for many copies in one transaction; errs[i]
// is rec[i]'s ErrNotReferenced, err a failure of the whole transaction.
func (s *Store) RecordCopies(ctx context.Context, recs []CopyRecord) (outs []CopyOutcome, errs []error, err error) {
	err = s.batch(func(tx *bolt.Tx) error {
		outs, errs = make([]CopyOutcome, len(recs)), make([]error, len(recs))
		for i, rec := range recs {
			var err error
			outs[i], err = s.recordCopy(tx, rec)
			if errors.Is(err, ErrNotReferenced) {
				errs[i] = err
				continue
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	return outs, errs, err
}

func (s *Store) recordCopy(tx *bolt.Tx, rec CopyRecord) (CopyOutcome, error) {
	if !packageReferenced(tx, rec.Digest) {
		return CopyUnchanged, fmt.Errorf("copy of %s to %s: %w", rec.Digest, rec.Target, ErrNotReferenced)
	}
	l, err := getLocation(tx, rec.Digest, rec.Target)
	if err != nil {
		return CopyUnchanged, err
	}
	now := s.now().UTC()
	status := StatusStored
	var verifiedAt *time.Time
	if !rec.VerifiedAt.IsZero() {
		at := rec.VerifiedAt.UTC()
		status, verifiedAt = StatusVerified, &at
	}
	out := CopyUnchanged
	switch {
	case l == nil:
		loc := Location{Digest: rec.Digest, Backend: rec.Target, Size: rec.Size, Status: status, StoredAt: now, LastVerifiedAt: verifiedAt}
		if err := putLocation(tx, &loc); err != nil {
			return out, err
		}
		if err := s.appendEvent(tx, EventLocationCreated, rec.Digest, struct {
			Location
			Source string `json:"source,omitempty"`
			Reason string `json:"reason,omitempty"`
		}{loc, rec.Source, rec.Reason}); err != nil {
			return out, err
		}
		out = CopyCreated
	case l.Failed():
		ev := RepairEvent{Digest: rec.Digest, Backend: rec.Target, Previous: l.Status, Error: l.LastError, At: now,
			Repairs: l.Repairs + 1, Source: rec.Source, Target: rec.Target, Reason: rec.Reason}
		l.Status, l.LastError, l.LastFailedAt, l.StoredAt, l.Repairs = status, "", nil, now, l.Repairs+1
		if verifiedAt != nil {
			l.LastVerifiedAt = verifiedAt
		}
		if err := putLocation(tx, l); err != nil {
			return out, err
		}
		if err := s.appendEvent(tx, EventLocationRepaired, rec.Digest, ev); err != nil {
			return out, err
		}
		out = CopyRepaired
	}
	return out, tx.Bucket(bucketPendingCopies).Delete(joinKey(rec.Digest, rec.Target))
}

// ReferencedAll reports, for each digest, whether a committed package
// references it.
func (s *Store) ReferencedAll(ctx context.Context, digests []string) (map[string]bool, error) {
	out := make(map[string]bool, len(digests))
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, d := range digests {
			out[d] = packageReferenced(tx, d)
		}
		return nil
	})
	return out, err
}

// putPendingCopy records a pending copy unless the target already has a
// location (a usable one, or a failed one that repair will handle).
func putPendingCopy(tx *bolt.Tx, p PendingCopy) error {
	if hasLocationKey(tx, p.Digest, p.Backend) {
		return nil
	}
	b := tx.Bucket(bucketPendingCopies)
	k := joinKey(p.Digest, p.Backend)
	if b.Get(k) != nil {
		return nil // keep the oldest Since
	}
	v, err := encode(p)
	if err != nil {
		return err
	}
	return b.Put(k, v)
}

// AddPendingCopies records copies to write later (see putPendingCopy), in
// one transaction.
func (s *Store) AddPendingCopies(ctx context.Context, ps []PendingCopy) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, p := range ps {
			if err := putPendingCopy(tx, p); err != nil {
				return err
			}
		}
		return nil
	})
}

// DropPendingCopy forgets a pending copy (its content is gone, or its
// target backend is no longer configured).
func (s *Store) DropPendingCopy(ctx context.Context, digest, backend string) error {
	return s.DropPendingCopies(ctx, []Ref{{Backend: backend, Digest: digest}})
}

// DropPendingCopies forgets pending copies (refs whose target holds a
// usable copy already); it writes only when one of them is recorded.
func (s *Store) DropPendingCopies(ctx context.Context, refs []Ref) error {
	found := false
	if err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPendingCopies)
		for _, r := range refs {
			if b.Get(joinKey(r.Digest, r.Backend)) != nil {
				found = true
			}
		}
		return nil
	}); err != nil || !found {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPendingCopies)
		for _, r := range refs {
			if err := b.Delete(joinKey(r.Digest, r.Backend)); err != nil {
				return err
			}
		}
		return nil
	})
}

// PendingCopies returns up to limit pending copies in key order (digest,
// then backend) and how many there are in all.
func (s *Store) PendingCopies(ctx context.Context, limit int) ([]PendingCopy, int, error) {
	var out []PendingCopy
	total := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPendingCopies)
		total = b.Stats().KeyN
		c := b.Cursor()
		for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
			var p PendingCopy
			if err := decode(v, &p); err != nil {
				return fmt.Errorf("pending copy %q: %w", k, err)
			}
			out = append(out, p)
		}
		return nil
	})
	return out, total, err
}

// PendingCopiesOf returns, for each of digests, the backends it has a
// pending copy on.
func (s *Store) PendingCopiesOf(ctx context.Context, digests []string) (map[string][]string, error) {
	out := map[string][]string{}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketPendingCopies).Cursor()
		for _, d := range digests {
			if _, done := out[d]; done {
				continue
			}
			prefix := append([]byte(d), 0)
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				out[d] = append(out[d], string(k[len(prefix):]))
			}
		}
		return nil
	})
	return out, err
}

// DropLeasesOf removes every lease whose holder id starts with prefix: the
// leases a killed process's copies held (each holder finishes or releases
// its own; at start-up none of the previous process's is still working).
func (s *Store) DropLeasesOf(ctx context.Context, prefix string) (int, error) {
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		b := tx.Bucket(bucketUploadRefs)
		var dead [][]byte
		if err := b.ForEach(func(k, _ []byte) error {
			parts := bytes.Split(k, []byte{0})
			if len(parts) == 3 && strings.HasPrefix(string(parts[2]), prefix) {
				dead = append(dead, bytes.Clone(k))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range dead {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(dead)
		return nil
	})
	return n, err
}
