package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Lifecycle event types.
const (
	EventPackageDeleted = "v1.package.deleted"
	// EventLocationDeleted: garbage collection removed a location whose
	// content no package needs; the backend object follows (gc intent).
	EventLocationDeleted = "v1.storage.location_deleted"
)

// Lifecycle errors.
var (
	// ErrStaleBegin: content a new upload session counted on as already
	// stored lost its location meanwhile (garbage collection removed it).
	// The registry recomputes what must be uploaded and tries again.
	ErrStaleBegin = errors.New("stored content changed while the upload session was opened")
	// ErrEventsPruned: the events after the requested sequence were
	// removed by event retention. The error message names the oldest
	// sequence still available.
	ErrEventsPruned = errors.New("events pruned")
	// ErrInvalidReason: a delete needs a reason.
	ErrInvalidReason = errors.New("a delete needs a reason: 1 to 1000 characters, no control characters")
)

// migrateLifecycle creates the lifecycle buckets and indexes the content
// references of every existing package.
func migrateLifecycle(tx *bolt.Tx) error {
	for _, b := range [][]byte{bucketPackageRefs, bucketGCIntents, bucketOrphans, bucketLifecycle} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return fmt.Errorf("create bucket %s: %w", b, err)
		}
	}
	return tx.Bucket(bucketPackages).ForEach(func(k, v []byte) error {
		var p Package
		if err := decodePackage(v, &p); err != nil {
			return fmt.Errorf("package %q: %w", k, err)
		}
		return addPackageRefs(tx, &p)
	})
}

func addPackageRefs(tx *bolt.Tx, p *Package) error {
	b := tx.Bucket(bucketPackageRefs)
	for _, f := range p.Files {
		if err := b.Put(joinKey(f.Digest, p.Name, p.Version), nil); err != nil {
			return err
		}
	}
	return nil
}

func removePackageRefs(tx *bolt.Tx, p *Package) error {
	b := tx.Bucket(bucketPackageRefs)
	for _, f := range p.Files {
		if err := b.Delete(joinKey(f.Digest, p.Name, p.Version)); err != nil {
			return err
		}
	}
	return nil
}

// packageReferenced reports whether any committed package references the
// content.
func packageReferenced(tx *bolt.Tx, digest string) bool {
	prefix := append([]byte(digest), 0)
	k, _ := tx.Bucket(bucketPackageRefs).Cursor().Seek(prefix)
	return k != nil && bytes.HasPrefix(k, prefix)
}

// hasUploadRef reports whether an open upload session (or a lease taken
// by a repair or migration) stages the object.
func hasUploadRef(tx *bolt.Tx, backend, digest string) bool {
	prefix := append(joinKey(backend, digest), 0)
	k, _ := tx.Bucket(bucketUploadRefs).Cursor().Seek(prefix)
	return k != nil && bytes.HasPrefix(k, prefix)
}

// draftDigests returns every content an open upload session's draft
// package names, uploaded by it or counted on as already stored.
func draftDigests(tx *bolt.Tx) (map[string]bool, error) {
	out := map[string]bool{}
	err := tx.Bucket(bucketUploads).ForEach(func(k, v []byte) error {
		var sess Session
		if err := decode(v, &sess); err != nil {
			return fmt.Errorf("upload session %q: %w", k, err)
		}
		for _, f := range sess.Draft.Files {
			out[f.Digest] = true
		}
		return nil
	})
	return out, err
}

// checkCountedOn fails with ErrStaleBegin if a file the session does not
// upload (it counts on the stored copy) has no usable location any more.
// Called in the transaction that creates the session, so it serialises
// with garbage collection's condemn transaction: either the session
// exists first (and gc leaves the content alone) or the location is gone
// first (and the publish uploads the content again).
func checkCountedOn(tx *bolt.Tx, draft *Package, needed []string) error {
	for _, f := range draft.Files {
		if containsString(needed, f.Digest) {
			continue
		}
		l, err := getLocation(tx, f.Digest, f.Backend)
		if err != nil {
			return err
		}
		if l == nil || l.Failed() {
			return fmt.Errorf("%s on %s: %w", f.Digest, f.Backend, ErrStaleBegin)
		}
	}
	return nil
}

func containsString(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// Deletion says why and by whom a package is deleted.
type Deletion struct {
	Reason string `json:"reason"`
	// By names the actor: a token name and id, or "retention".
	By string `json:"by"`
}

type packageDeletedEvent struct {
	packageEvent
	Reason string `json:"reason"`
	By     string `json:"by"`
}

// Validate checks the reason (ErrInvalidReason).
func (d Deletion) Validate() error {
	if strings.TrimSpace(d.Reason) == "" || len(d.Reason) > 1000 {
		return ErrInvalidReason
	}
	for _, c := range d.Reason {
		if c < 0x20 || c == 0x7f {
			return ErrInvalidReason
		}
	}
	return nil
}

// DeletePackage removes name@version, its version index entry and its
// content references, and appends v1.package.deleted, in one transaction.
// The content itself stays until garbage collection finds no package
// needs it. A missing package is ErrNotFound; a missing reason
// ErrInvalidReason.
func (s *Store) DeletePackage(ctx context.Context, name, version string, d Deletion) (*Package, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	var p *Package
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		p, err = s.deletePackage(tx, name, version, d)
		return err
	})
	return p, err
}

func (s *Store) deletePackage(tx *bolt.Tx, name, version string, d Deletion) (*Package, error) {
	// removePackage takes the version index, listing indexes and content
	// references with it.
	p, err := removePackage(tx, name, version)
	if err != nil {
		return nil, err
	}
	ev := packageDeletedEvent{packageEvent: packageEventData(p), Reason: d.Reason, By: d.By}
	if err := s.appendEvent(tx, EventPackageDeleted, name+"@"+version, ev); err != nil {
		return nil, err
	}
	if err := markRecord(tx, name, version, true); err != nil {
		return nil, err
	}
	return p, nil
}

// PackageKey names one package version.
type PackageKey struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// PackageDeletion is one package to delete and why.
type PackageDeletion struct {
	PackageKey
	Deletion
}

// DeletePackages deletes several packages in one transaction (see
// DeletePackage); packages already gone are skipped. It returns the
// packages it deleted.
func (s *Store) DeletePackages(ctx context.Context, dels []PackageDeletion) ([]*Package, error) {
	var out []*Package
	err := s.db.Update(func(tx *bolt.Tx) error {
		out = out[:0]
		for _, d := range dels {
			p, err := s.deletePackage(tx, d.Name, d.Version, d.Deletion)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// Referenced reports whether any committed package references digest.
func (s *Store) Referenced(ctx context.Context, digest string) (bool, error) {
	var yes bool
	err := s.db.View(func(tx *bolt.Tx) error { yes = packageReferenced(tx, digest); return nil })
	return yes, err
}

// Freed is what deleting some packages would let garbage collection
// reclaim on one backend.
type Freed struct {
	Objects int64 `json:"objects"`
	Bytes   int64 `json:"bytes"`
}

// FreedBy computes, without changing anything, which content only the
// given packages reference (content another package shares is kept) and
// returns, per backend, the objects and bytes their deletion would free.
func (s *Store) FreedBy(ctx context.Context, keys []PackageKey) (map[string]Freed, error) {
	out := map[string]Freed{}
	gone := map[string]bool{}
	for _, k := range keys {
		gone[string(joinKey(k.Name, k.Version))] = true
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		seen := map[string]bool{}
		refs := tx.Bucket(bucketPackageRefs).Cursor()
		for _, k := range keys {
			p, err := getPackage(tx, k.Name, k.Version)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			for _, f := range p.Files {
				if seen[f.Digest] {
					continue
				}
				seen[f.Digest] = true
				prefix := append([]byte(f.Digest), 0)
				shared := false
				for rk, _ := refs.Seek(prefix); rk != nil && bytes.HasPrefix(rk, prefix); rk, _ = refs.Next() {
					if !gone[string(rk[len(prefix):])] {
						shared = true
						break
					}
				}
				if shared {
					continue
				}
				locs, err := locationsOf(tx, f.Digest)
				if err != nil {
					return err
				}
				for _, l := range locs {
					fr := out[l.Backend]
					fr.Objects++
					fr.Bytes += l.Size
					out[l.Backend] = fr
				}
			}
		}
		return nil
	})
	return out, err
}

// GCIntent records an object garbage collection decided to delete: its
// location is already gone; the backend delete follows. It is removed once
// the delete is confirmed, or cancelled when the content was published
// again meanwhile.
type GCIntent struct {
	Backend string    `json:"backend"`
	Digest  string    `json:"digest"`
	Size    int64     `json:"size"`
	At      time.Time `json:"at"`
	RunID   string    `json:"run_id"`
}

// Ref returns the object the intent names.
func (i GCIntent) Ref() Ref { return Ref{Backend: i.Backend, Digest: i.Digest} }

// Collectable returns the locations garbage collection may remove now:
// content no committed package references, not staged by an open upload
// session or held by a lease, and not counted on by an open session's
// draft. It changes nothing (a dry run is exactly this list).
func (s *Store) Collectable(ctx context.Context) ([]Location, error) {
	var out []Location
	s.settle()
	err := s.db.View(func(tx *bolt.Tx) error {
		drafts, err := draftDigests(tx)
		if err != nil {
			return err
		}
		c := tx.Bucket(bucketLocations).Cursor()
		lastDigest, lastRef := "", false
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			i := bytes.IndexByte(k, 0)
			if i < 0 {
				continue
			}
			d := string(k[:i])
			if d != lastDigest {
				lastDigest, lastRef = d, packageReferenced(tx, d) || drafts[d]
			}
			if lastRef || hasUploadRef(tx, string(k[i+1:]), d) {
				continue
			}
			var l Location
			if err := decodeLocationKV(k, v, &l); err != nil {
				return fmt.Errorf("location %q: %w", k, err)
			}
			out = append(out, l)
		}
		return nil
	})
	return out, err
}

// Condemn removes the locations of refs whose content is still
// collectable (re-checked inside this write transaction, so a package,
// session or lease that appeared since Collectable keeps its content),
// records a GCIntent for each, deletes blob records left without any
// location, and appends v1.storage.location_deleted. It returns the
// intents written; the caller deletes the objects (see IntentWanted).
func (s *Store) Condemn(ctx context.Context, refs []Ref, runID string) ([]GCIntent, error) {
	var out []GCIntent
	err := s.db.Update(func(tx *bolt.Tx) error {
		out = out[:0]
		drafts, err := draftDigests(tx)
		if err != nil {
			return err
		}
		now := s.now().UTC()
		intents := tx.Bucket(bucketGCIntents)
		for _, r := range refs {
			l, err := getLocation(tx, r.Digest, r.Backend)
			if err != nil {
				return err
			}
			if l == nil || packageReferenced(tx, r.Digest) || drafts[r.Digest] || hasUploadRef(tx, r.Backend, r.Digest) {
				continue
			}
			// deleteLocation keeps the counters and the failed index.
			if _, err := deleteLocation(tx, r.Digest, r.Backend); err != nil {
				return err
			}
			in := GCIntent{Backend: r.Backend, Digest: r.Digest, Size: l.Size, At: now, RunID: runID}
			v, err := encode(in)
			if err != nil {
				return err
			}
			if err := intents.Put(joinKey(r.Backend, r.Digest), v); err != nil {
				return err
			}
			if rest, err := locationsOf(tx, r.Digest); err != nil {
				return err
			} else if len(rest) == 0 {
				if err := tx.Bucket(bucketBlobs).Delete([]byte(r.Digest)); err != nil {
					return err
				}
			}
			if err := s.appendEvent(tx, EventLocationDeleted, r.Digest, map[string]any{
				"digest": r.Digest, "backend": r.Backend, "size": l.Size, "run_id": runID}); err != nil {
				return err
			}
			out = append(out, in)
		}
		return nil
	})
	return out, err
}

// PendingIntents returns every recorded GCIntent (objects whose delete
// was decided but not confirmed, e.g. after a crash), in key order.
func (s *Store) PendingIntents(ctx context.Context) ([]GCIntent, error) {
	var out []GCIntent
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGCIntents).ForEach(func(k, v []byte) error {
			var in GCIntent
			if err := decode(v, &in); err != nil {
				return fmt.Errorf("gc intent %q: %w", k, err)
			}
			out = append(out, in)
			return nil
		})
	})
	return out, err
}

// IntentWanted reports whether the object of an intent may be deleted
// from its backend now: the intent is still recorded, and no location and
// no upload ref or lease names the object. The caller holds the object's
// key lock (the one upload sessions take to record their refs) from this
// check until the backend delete returns, so no new reference can appear
// in between. false with a nil error means: drop the intent, keep the
// object (it was published again).
func (s *Store) IntentWanted(ctx context.Context, r Ref) (bool, error) {
	var yes bool
	s.settle()
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketGCIntents).Get(joinKey(r.Backend, r.Digest)) == nil {
			return nil
		}
		l, err := getLocation(tx, r.Digest, r.Backend)
		if err != nil {
			return err
		}
		yes = l == nil && !hasUploadRef(tx, r.Backend, r.Digest)
		return nil
	})
	return yes, err
}

// DropIntents removes intents (their deletes are confirmed or cancelled)
// in one transaction.
func (s *Store) DropIntents(ctx context.Context, refs []Ref) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGCIntents)
		for _, r := range refs {
			if err := b.Delete(joinKey(r.Backend, r.Digest)); err != nil {
				return err
			}
		}
		return nil
	})
}

// OrphanRecord is an object found in a backend that the registry does
// not know, and when garbage collection first saw it.
type OrphanRecord struct {
	Backend   string    `json:"backend"`
	Digest    string    `json:"digest"`
	Size      int64     `json:"size"`
	FirstSeen time.Time `json:"first_seen"`
}

// NoteOrphans takes every object found on backend (digest -> size),
// keeps those the registry does not know (no location, upload ref, lease
// or gc intent), records when each was first seen (earlier records are
// kept; records of objects no longer orphans are forgotten) and returns
// them sorted by digest.
func (s *Store) NoteOrphans(ctx context.Context, backend string, found map[string]int64, now time.Time) ([]OrphanRecord, error) {
	var out []OrphanRecord
	now = now.UTC()
	err := s.db.Update(func(tx *bolt.Tx) error {
		out = out[:0]
		ob := tx.Bucket(bucketOrphans)
		keep := map[string]bool{}
		for d, size := range found {
			if unknownObject(tx, backend, d) {
				k := joinKey(backend, d)
				rec := OrphanRecord{Backend: backend, Digest: d, Size: size, FirstSeen: now}
				if v := ob.Get(k); v != nil {
					var old OrphanRecord
					if decode(v, &old) == nil {
						rec.FirstSeen = old.FirstSeen
					}
				}
				v, err := encode(rec)
				if err != nil {
					return err
				}
				if err := ob.Put(k, v); err != nil {
					return err
				}
				keep[string(k)] = true
				out = append(out, rec)
			}
		}
		prefix := append([]byte(backend), 0)
		var stale [][]byte
		c := ob.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if !keep[string(k)] {
				stale = append(stale, append([]byte(nil), k...))
			}
		}
		for _, k := range stale {
			if err := ob.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out, err
}

func unknownObject(tx *bolt.Tx, backend, digest string) bool {
	return tx.Bucket(bucketLocations).Get(joinKey(digest, backend)) == nil &&
		!hasUploadRef(tx, backend, digest) &&
		tx.Bucket(bucketGCIntents).Get(joinKey(backend, digest)) == nil
}

// OrphanStillUnknown re-checks, under the caller's key lock, that an
// orphan is still unknown to the registry before it is deleted.
func (s *Store) OrphanStillUnknown(ctx context.Context, backend, digest string) (bool, error) {
	var yes bool
	s.settle()
	err := s.db.View(func(tx *bolt.Tx) error { yes = unknownObject(tx, backend, digest); return nil })
	return yes, err
}

// ForgetOrphan removes an orphan record (the object was deleted).
func (s *Store) ForgetOrphan(ctx context.Context, backend, digest string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOrphans).Delete(joinKey(backend, digest))
	})
}

// Lifecycle run kinds (keys of the lifecycle bucket).
const (
	RunGC        = "gc"
	RunRetention = "retention"
	RunEvents    = "events"
)

var keyEventsHorizon = []byte("events_horizon")

// RecordLifecycleRun stores the summary of the last run of kind and, if
// eventType is not empty, appends it as an event, in one transaction.
func (s *Store) RecordLifecycleRun(ctx context.Context, kind, eventType string, summary any) error {
	v, err := encode(summary)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketLifecycle).Put([]byte(kind), v); err != nil {
			return err
		}
		if eventType == "" {
			return nil
		}
		return s.appendEvent(tx, eventType, kind, summary)
	})
}

// LifecycleRun loads the last run summary of kind into out; false if none.
func (s *Store) LifecycleRun(ctx context.Context, kind string, out any) (bool, error) {
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketLifecycle).Get([]byte(kind))
		if v == nil {
			return nil
		}
		found = true
		return decode(v, out)
	})
	return found, err
}

// EventRetention says which events PruneEvents removes.
type EventRetention struct {
	// Now is the pruning clock.
	Now time.Time
	// MaxAge applies to every event type without its own age.
	MaxAge time.Duration
	// Ages overrides MaxAge per event type (verification verdicts shorter,
	// run summaries longer).
	Ages map[string]time.Duration
	// KeepFrom is the lowest sequence a consumer still needs (a webhook
	// subscription's position): events at or after it are never removed.
	// 0 means no such floor.
	KeepFrom uint64
	// Batch bounds the events removed per write transaction; 0 means 5000.
	Batch int
}

func (p EventRetention) ageOf(typ string) time.Duration {
	if a, ok := p.Ages[typ]; ok {
		return a
	}
	return p.MaxAge
}

// PruneResult reports one pruning pass.
type PruneResult struct {
	Deleted int   `json:"deleted"`
	Bytes   int64 `json:"bytes"`
	// Horizon is the oldest sequence a consumer can resume from: every
	// event before it is gone, except types kept longer than MaxAge.
	Horizon uint64 `json:"horizon"`
}

// PruneEvents removes events older than their retention age (never one at
// or after KeepFrom), in batches so publishes keep going, and advances the
// horizon that Events reports to consumers asking for pruned events.
func (s *Store) PruneEvents(ctx context.Context, p EventRetention) (PruneResult, error) {
	var res PruneResult
	if p.Batch <= 0 {
		p.Batch = 5000
	}
	minAge := p.MaxAge
	for _, a := range p.Ages {
		minAge = min(minAge, a)
	}
	longer := func(typ string) bool { return p.ageOf(typ) > p.MaxAge }
	youngest := p.Now.Add(-minAge)
	var from []byte // resume key of the scan
	horizon := uint64(0)
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		done := false
		err := s.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketEvents)
			c := b.Cursor()
			var k, v []byte
			if from == nil {
				k, v = c.First()
			} else {
				k, v = c.Seek(from)
			}
			var del [][]byte
			var bytesDel int64
			for ; k != nil; k, v = c.Next() {
				if len(del) >= p.Batch {
					from = append([]byte(nil), k...)
					break
				}
				if len(k) != 8 {
					continue
				}
				seq := binary.BigEndian.Uint64(k)
				if p.KeepFrom > 0 && seq >= p.KeepFrom {
					if horizon == 0 {
						horizon = seq
					}
					done = true
					break
				}
				e, err := decodeEventKV(k, v, s.source)
				if err != nil {
					continue // undecodable: db check reports it; keep it
				}
				if e.Time.After(youngest) {
					if horizon == 0 && !longer(e.Type) {
						horizon = seq
					}
					done = true
					break
				}
				if e.Time.Before(p.Now.Add(-p.ageOf(e.Type))) {
					del = append(del, append([]byte(nil), k...))
					bytesDel += int64(len(k) + len(v))
					continue
				}
				if horizon == 0 && !longer(e.Type) {
					horizon = seq
				}
			}
			if k == nil {
				done = true
			}
			for _, dk := range del {
				if err := b.Delete(dk); err != nil {
					return err
				}
			}
			res.Deleted += len(del)
			res.Bytes += bytesDel
			if done {
				if horizon == 0 {
					horizon = b.Sequence() + 1
				}
				lb := tx.Bucket(bucketLifecycle)
				if old := lb.Get(keyEventsHorizon); len(old) == 8 && binary.BigEndian.Uint64(old) > horizon {
					horizon = binary.BigEndian.Uint64(old)
				}
				res.Horizon = horizon
				return lb.Put(keyEventsHorizon, u64(horizon))
			}
			return nil
		})
		if err != nil {
			return res, err
		}
		if done {
			return res, nil
		}
	}
}

// EventHorizon returns the oldest sequence a consumer may resume from (1
// when nothing was ever pruned).
func (s *Store) EventHorizon(ctx context.Context) (uint64, error) {
	h := uint64(1)
	err := s.db.View(func(tx *bolt.Tx) error {
		h = eventHorizon(tx)
		return nil
	})
	return h, err
}

func eventHorizon(tx *bolt.Tx) uint64 {
	if v := tx.Bucket(bucketLifecycle).Get(keyEventsHorizon); len(v) == 8 {
		return max(binary.BigEndian.Uint64(v), 1)
	}
	return 1
}

// EventBytes returns the number of events and the bytes of their keys and
// values (what the event log costs in the database).
func (s *Store) EventBytes(ctx context.Context) (n int, size int64, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
			n++
			size += int64(len(k) + len(v))
			return nil
		})
	})
	return n, size, err
}

// checkPackageRefs reports package files whose content reference is not
// indexed (garbage collection could take their content) and index entries
// naming a package that does not hold that content.
func checkPackageRefs(tx *bolt.Tx, add func(kind, subject, format string, args ...any)) error {
	refs := tx.Bucket(bucketPackageRefs)
	if err := tx.Bucket(bucketPackages).ForEach(func(k, v []byte) error {
		var p Package
		if decodePackage(v, &p) != nil {
			return nil // reported as undecodable
		}
		for _, f := range p.Files {
			if refs.Get(joinKey(f.Digest, p.Name, p.Version)) == nil {
				add("missing_package_ref", p.Name+"@"+p.Version+" "+f.Path, "content %s is not indexed as referenced", f.Digest)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	return refs.ForEach(func(k, _ []byte) error {
		parts := bytes.SplitN(k, []byte{0}, 3)
		if len(parts) != 3 {
			add("bad_package_ref", printable(k), "malformed key")
			return nil
		}
		p, err := getPackage(tx, string(parts[1]), string(parts[2]))
		if err != nil {
			add("dangling_package_ref", printable(k), "package %s@%s does not exist", parts[1], parts[2])
			return nil
		}
		for _, f := range p.Files {
			if f.Digest == string(parts[0]) {
				return nil
			}
		}
		add("dangling_package_ref", printable(k), "package %s@%s does not hold %s", parts[1], parts[2], parts[0])
		return nil
	})
}

// HoldLeases records that holder (a repair or a migration, by an id that
// is not an upload session's) reads or writes the objects: garbage
// collection neither removes their locations nor deletes them while the
// lease is held. Take it under the registry's key locks of the objects
// (as upload sessions record their refs), before the first byte is
// written, on the source and the target backend. Leases survive a crash:
// the holder releases them when it finishes, gives up or resumes.
func (s *Store) HoldLeases(ctx context.Context, holder string, refs []Ref) error {
	return s.batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUploadRefs)
		for _, r := range refs {
			if err := b.Put(joinKey(r.Backend, r.Digest, holder), nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// ReleaseLeases drops the leases holder took on refs.
func (s *Store) ReleaseLeases(ctx context.Context, holder string, refs []Ref) error {
	return s.batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUploadRefs)
		for _, r := range refs {
			if err := b.Delete(joinKey(r.Backend, r.Digest, holder)); err != nil {
				return err
			}
		}
		return nil
	})
}

// IsSummaryEvent reports whether an event type is a run summary
// (v1.lifecycle.*, v1.verification.run_completed): event retention keeps
// those longer than the rest, below the horizon.
func IsSummaryEvent(typ string) bool {
	return strings.HasPrefix(typ, "v1.lifecycle.") || typ == EventVerificationRunCompleted
}

// maxTypeScan bounds the events one EventsOfTypes call looks at.
const maxTypeScan = 100000

// EventsOfTypes returns up to limit events of the given types with seq >
// after, looking at no more than 100,000 events; next is the last
// sequence it looked at (continue with after=next). Asking for events
// before the horizon fails with ErrEventsPruned unless every type asked
// for is a run summary (kept longer, below the horizon).
func (s *Store) EventsOfTypes(ctx context.Context, after uint64, limit int, types []string) (evs []Event, next uint64, err error) {
	want := map[string]bool{}
	summaries := true
	for _, t := range types {
		want[t] = true
		summaries = summaries && IsSummaryEvent(t)
	}
	next = after
	if after == ^uint64(0) {
		return nil, next, nil
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		if h := eventHorizon(tx); after+1 < h && !summaries {
			return fmt.Errorf("%w: events after seq %d up to %d were removed by event retention; the oldest available is seq %d (resume with after=%d)",
				ErrEventsPruned, after, h-1, h, h-1)
		}
		c := tx.Bucket(bucketEvents).Cursor()
		scanned := 0
		for k, v := c.Seek(u64(after + 1)); k != nil && len(evs) < limit && scanned < maxTypeScan; k, v = c.Next() {
			if len(k) != 8 {
				continue
			}
			scanned++
			next = binary.BigEndian.Uint64(k)
			if typ, ok := eventType(v); !ok || !want[typ] {
				continue
			}
			e, err := decodeEventKV(k, v, s.source)
			if err != nil {
				return fmt.Errorf("event %d: %w", next, err)
			}
			evs = append(evs, e)
		}
		return nil
	})
	return evs, next, err
}
