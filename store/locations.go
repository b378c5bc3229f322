package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"sort"

	bolt "go.etcd.io/bbolt"
)

// Every write to storage_locations goes through putLocation or
// deleteLocation (TestLocationsAreWrittenOnlyThroughHelpers enforces it):
// they keep, in the same transaction, the per-backend counters
// (location_counts) and the index of failed locations (failed_locations)
// that /metrics, /v1/health and `storage ls` read in O(backends) instead of
// scanning every location. Only this file and the migrations name
// bucketLocations.

// putLocation writes l (new or changed) and adjusts the counters and the
// failed-location index by the difference from the record it replaces.
// A new location marks the packages its backend now holds entirely in
// the record outbox (markNewHolder).
func putLocation(tx *bolt.Tx, l *Location) error { return putLocationMarking(tx, l, true) }

// putLocationMarking is putLocation; mark false skips the record outbox
// (recovery, which knows which records exist, marks what it must).
func putLocationMarking(tx *bolt.Tx, l *Location, mark bool) error {
	b := tx.Bucket(bucketLocations)
	k := joinKey(l.Digest, l.Backend)
	old, err := decodeLocation(k, b.Get(k))
	if err != nil {
		return err
	}
	v, err := encodeLocation(l)
	if err != nil {
		return err
	}
	if err := b.Put(k, v); err != nil {
		return err
	}
	if old == nil && mark {
		// A backend that now holds all of a package gets its manifest
		// record too (copies).
		if err := markNewHolder(tx, l.Digest, l.Backend); err != nil {
			return err
		}
	}
	return adjustDerived(tx, old, l)
}

// deleteLocation removes the location of digest on backend, if any, with
// its counters and index entry, and returns what it removed (nil if none).
func deleteLocation(tx *bolt.Tx, digest, backend string) (*Location, error) {
	b := tx.Bucket(bucketLocations)
	k := joinKey(digest, backend)
	old, err := decodeLocation(k, b.Get(k))
	if err != nil || old == nil {
		return nil, err
	}
	if err := b.Delete(k); err != nil {
		return nil, err
	}
	return old, adjustDerived(tx, old, nil)
}

// setLocationsFill sets how full this transaction packs the pages of
// storage_locations (bulk loads).
func setLocationsFill(tx *bolt.Tx, f float64) { tx.Bucket(bucketLocations).FillPercent = f }

func decodeLocation(k, v []byte) (*Location, error) {
	if v == nil {
		return nil, nil
	}
	var l Location
	if err := decodeLocationKV(k, v, &l); err != nil {
		return nil, fmt.Errorf("location %q: %w", k, err)
	}
	return &l, nil
}

// adjustDerived moves one location from old's counters to new's (either may
// be nil) and keeps the failed index in step.
func adjustDerived(tx *bolt.Tx, old, new *Location) error {
	if old != nil && new != nil && old.Status == new.Status && old.Size == new.Size && old.Backend == new.Backend {
		return nil // a verdict that changes nothing the counters see
	}
	if old != nil {
		if err := addCount(tx, old.Backend, old.Status, -1, -old.Size); err != nil {
			return err
		}
		if old.Failed() {
			if err := tx.Bucket(bucketFailedLocations).Delete(joinKey(old.Digest, old.Backend)); err != nil {
				return err
			}
		}
	}
	if new != nil {
		if err := addCount(tx, new.Backend, new.Status, 1, new.Size); err != nil {
			return err
		}
		if new.Failed() {
			if err := tx.Bucket(bucketFailedLocations).Put(joinKey(new.Digest, new.Backend), nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// A counter value is count(8) and bytes(8), big-endian, under
// backend \x00 status; a counter that reaches zero is deleted.
func addCount(tx *bolt.Tx, backend, status string, n, size int64) error {
	b := tx.Bucket(bucketLocationCounts)
	k := joinKey(backend, status)
	count, bytes := decodeCount(b.Get(k))
	count += n
	bytes += size
	if count <= 0 {
		return b.Delete(k)
	}
	return b.Put(k, encodeCount(count, bytes))
}

func encodeCount(count, bytes int64) []byte {
	v := make([]byte, 16)
	binary.BigEndian.PutUint64(v, uint64(count))
	binary.BigEndian.PutUint64(v[8:], uint64(bytes))
	return v
}

func decodeCount(v []byte) (count, bytes int64) {
	if len(v) != 16 {
		return 0, 0
	}
	return int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint64(v[8:]))
}

func getLocation(tx *bolt.Tx, digest, backend string) (*Location, error) {
	k := joinKey(digest, backend)
	l, err := decodeLocation(k, tx.Bucket(bucketLocations).Get(k))
	if err != nil {
		return nil, fmt.Errorf("location %s on %s: %w", digest, backend, err)
	}
	return l, nil
}

// hasLocationKey reports whether a location record exists, whatever its
// status, without decoding it.
func hasLocationKey(tx *bolt.Tx, digest, backend string) bool {
	return tx.Bucket(bucketLocations).Get(joinKey(digest, backend)) != nil
}

// hasAnyLocation reports whether any backend records digest.
func hasAnyLocation(tx *bolt.Tx, digest string) bool {
	prefix := append([]byte(digest), 0)
	k, _ := tx.Bucket(bucketLocations).Cursor().Seek(prefix)
	return k != nil && bytes.HasPrefix(k, prefix)
}

func locationsOf(tx *bolt.Tx, digest string) ([]Location, error) {
	prefix := append([]byte(digest), 0)
	var locs []Location
	c := tx.Bucket(bucketLocations).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var l Location
		if err := decodeLocationKV(k, v, &l); err != nil {
			return nil, fmt.Errorf("location %q: %w", k, err)
		}
		locs = append(locs, l)
	}
	return locs, nil
}

// forEachLocation calls fn for every location in key order (digest, then
// backend). An undecodable record is passed to bad (nil: it is an error).
func forEachLocation(tx *bolt.Tx, fn func(l *Location) error, bad func(k []byte, err error)) error {
	return tx.Bucket(bucketLocations).ForEach(func(k, v []byte) error {
		var l Location
		if err := decodeLocationKV(k, v, &l); err != nil {
			if bad != nil {
				bad(k, err)
				return nil
			}
			return fmt.Errorf("location %q: %w", k, err)
		}
		return fn(&l)
	})
}

// BackendUsage is what the registry places on one backend.
type BackendUsage struct {
	Backend string `json:"backend"`
	// Blobs is the number of locations on the backend (objects it holds).
	Blobs    int64          `json:"blobs"`
	Bytes    int64          `json:"bytes"`
	ByStatus map[string]int `json:"by_status"`
}

// Usage returns locations, bytes and locations by status per backend from
// the maintained counters: its cost does not grow with the store.
func (s *Store) Usage(ctx context.Context) (map[string]*BackendUsage, error) {
	var out map[string]*BackendUsage
	err := s.db.View(func(tx *bolt.Tx) error {
		out = readCounts(tx)
		return nil
	})
	return out, err
}

func readCounts(tx *bolt.Tx) map[string]*BackendUsage {
	out := map[string]*BackendUsage{}
	_ = tx.Bucket(bucketLocationCounts).ForEach(func(k, v []byte) error {
		i := bytes.IndexByte(k, 0)
		if i < 0 {
			return nil
		}
		backend, status := string(k[:i]), string(k[i+1:])
		count, size := decodeCount(v)
		u := out[backend]
		if u == nil {
			u = &BackendUsage{Backend: backend, ByStatus: map[string]int{}}
			out[backend] = u
		}
		u.Blobs += count
		u.Bytes += size
		u.ByStatus[status] += int(count)
		return nil
	})
	return out
}

// ScanUsage computes what Usage reports by reading every location. It is
// what the counters must equal (db check compares them).
func (s *Store) ScanUsage(ctx context.Context) (map[string]*BackendUsage, error) {
	var out map[string]*BackendUsage
	err := s.db.View(func(tx *bolt.Tx) error {
		sc, err := scanLocations(ctx, tx, nil)
		out = sc.usage()
		return err
	})
	return out, err
}

// locationScan is the counters and the failed index as the locations
// themselves say they should be.
type locationScan struct {
	counts map[string][2]int64 // backend \x00 status -> count, bytes
	failed [][]byte
}

func (sc locationScan) usage() map[string]*BackendUsage {
	out := map[string]*BackendUsage{}
	for k, c := range sc.counts {
		backend, status, _ := bytes.Cut([]byte(k), []byte{0})
		u := out[string(backend)]
		if u == nil {
			u = &BackendUsage{Backend: string(backend), ByStatus: map[string]int{}}
			out[string(backend)] = u
		}
		u.Blobs += c[0]
		u.Bytes += c[1]
		u.ByStatus[string(status)] += int(c[0])
	}
	return out
}

func scanLocations(ctx interface{ Err() error }, tx *bolt.Tx, bad func(k []byte, err error)) (locationScan, error) {
	sc := locationScan{counts: map[string][2]int64{}}
	n := 0
	err := forEachLocation(tx, func(l *Location) error {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		k := string(joinKey(l.Backend, l.Status))
		c := sc.counts[k]
		c[0]++
		c[1] += l.Size
		sc.counts[k] = c
		if l.Failed() {
			sc.failed = append(sc.failed, joinKey(l.Digest, l.Backend))
		}
		return nil
	}, bad)
	return sc, err
}

// checkLocationDerived reports where the counters or the failed index
// disagree with the locations.
func checkLocationDerived(ctx context.Context, tx *bolt.Tx, add func(kind, subject, format string, args ...any)) error {
	sc, err := scanLocations(ctx, tx, func([]byte, error) {})
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	if err := tx.Bucket(bucketLocationCounts).ForEach(func(k, v []byte) error {
		count, size := decodeCount(v)
		want := sc.counts[string(k)]
		seen[string(k)] = true
		if count != want[0] || size != want[1] {
			add("counter_mismatch", printable(k), "counter says %d locations, %d bytes; the locations say %d, %d (db check --repair rebuilds it)", count, size, want[0], want[1])
		}
		return nil
	}); err != nil {
		return err
	}
	for k, want := range sc.counts {
		if !seen[k] {
			add("counter_mismatch", printable([]byte(k)), "no counter; the locations say %d locations, %d bytes (db check --repair rebuilds it)", want[0], want[1])
		}
	}
	fb := tx.Bucket(bucketFailedLocations)
	for _, k := range sc.failed {
		if fb.Get(k) == nil {
			add("failed_index_mismatch", printable(k), "failed location missing from the failed index (db check --repair rebuilds it)")
		}
	}
	if n := fb.Stats().KeyN; n != len(sc.failed) {
		add("failed_index_mismatch", string(bucketFailedLocations), "index holds %d entries, %d locations failed (db check --repair rebuilds it)", n, len(sc.failed))
	}
	return nil
}

// rebuildLocationDerived replaces the counters and the failed index with
// what the locations say. ctx is only asked whether to stop (migrations
// run without one: noCancel).
func rebuildLocationDerived(ctx interface{ Err() error }, tx *bolt.Tx) error {
	sc, err := scanLocations(ctx, tx, func([]byte, error) {})
	if err != nil {
		return err
	}
	for _, name := range [][]byte{bucketLocationCounts, bucketFailedLocations} {
		if tx.Bucket(name) != nil {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	counts := tx.Bucket(bucketLocationCounts)
	for _, k := range slices.Sorted(maps.Keys(sc.counts)) {
		c := sc.counts[k]
		if err := counts.Put([]byte(k), encodeCount(c[0], c[1])); err != nil {
			return err
		}
	}
	fb := tx.Bucket(bucketFailedLocations)
	for _, k := range sc.failed {
		if err := fb.Put(k, nil); err != nil {
			return err
		}
	}
	return nil
}

// LocationsOn returns every location on one backend, sorted by digest.
func (s *Store) LocationsOn(ctx context.Context, backend string) ([]Location, error) {
	var locs []Location
	suffix := append([]byte{0}, backend...)
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLocations).ForEach(func(k, v []byte) error {
			if !bytes.HasSuffix(k, suffix) {
				return nil
			}
			var l Location
			if err := decodeLocationKV(k, v, &l); err != nil {
				return fmt.Errorf("location %q: %w", k, err)
			}
			if l.Backend == backend {
				locs = append(locs, l)
			}
			return nil
		})
	})
	sort.Slice(locs, func(i, j int) bool { return locs[i].Digest < locs[j].Digest })
	return locs, err
}

// FailedLocations returns up to limit locations with a failed verdict and
// their total, from the failed index and the counters (no scan).
func (s *Store) FailedLocations(ctx context.Context, limit int) ([]Location, int, error) {
	var out []Location
	total := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, u := range readCounts(tx) {
			for status, n := range u.ByStatus {
				if (Location{Status: status}).Failed() {
					total += n
				}
			}
		}
		c := tx.Bucket(bucketFailedLocations).Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			l, err := decodeLocation(k, tx.Bucket(bucketLocations).Get(k))
			if err != nil {
				return err
			}
			if l != nil {
				out = append(out, *l)
			}
		}
		return nil
	})
	return out, total, err
}

// noCancel is the cancellation of work that must not stop halfway (a
// migration's transaction).
type noCancel struct{}

func (noCancel) Err() error { return nil }

// Repair rebuilds every record derived from others (the location counters,
// the failed-location index, the listing indexes and the content references
// of packages) from what they are derived from, in one
// transaction. It is what `db check --repair` runs.
func (s *Store) Repair(ctx context.Context) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, rebuild := range derivedRebuilders {
			if err := rebuild(ctx, tx); err != nil {
				return err
			}
		}
		return nil
	})
}

// derivedRebuilders rebuild one kind of derived record each.
var derivedRebuilders = []func(ctx context.Context, tx *bolt.Tx) error{
	func(ctx context.Context, tx *bolt.Tx) error { return rebuildLocationDerived(ctx, tx) },
	func(ctx context.Context, tx *bolt.Tx) error { return rebuildPackageIndexes(ctx, tx) },
	func(ctx context.Context, tx *bolt.Tx) error { return rebuildPackageRefs(ctx, tx) },
}
