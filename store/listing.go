package store

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Packages are written and removed only through putPackage and
// deletePackage, which keep the version index and the listing indexes
// (by producer, by retention class, by label key=value) in the same
// transaction. ListPackages walks the index that matches a filter, so a
// page costs the same however many packages the store holds.

// indexKeys returns the listing-index keys of p, by bucket.
func indexKeys(p *Package) map[string][][]byte {
	out := map[string][][]byte{
		string(bucketByProducer):  {joinKey(p.Producer, p.Name, p.Version)},
		string(bucketByRetention): {joinKey(p.RetentionClass, p.Name, p.Version)},
	}
	for k, v := range p.Labels {
		out[string(bucketByLabel)] = append(out[string(bucketByLabel)], joinKey(k, v, p.Name, p.Version))
	}
	return out
}

// versionFillPercent is the split point of the packages bucket (keys
// name \x00 version). A name's new versions mostly sort after its old
// ones, so the left page of a split rarely gets another key: split at
// bbolt's default 50% it stays half empty (measured with JSON values:
// 717 B a package for 393 B of records). With the binary values (~120 B
// a one-file package, 30 a page) 70% is the split that holds up whatever
// the version scheme and however many names interleave: 160-186 B a
// package, pages 64-68% full (2,500 packages, 1 or 37 names, four version
// schemes); 90% (the split for the JSON values) reached 139-167 B with
// one name but 221-275 B with 37, and 50% 181-245 B
// (TestPackagePagesArePacked). The small index buckets are left at 50%:
// with many names interleaving, a 90% split there leaves a trail of
// near-empty pages (37-39% full, measured).
const versionFillPercent = 0.7

// putPackage writes a new package (p.Seq set by the caller), its version
// index entry, its listing-index entries and its content references
// (package_refs, which garbage collection reads).
func putPackage(tx *bolt.Tx, p *Package) error {
	v, err := encodePackage(p)
	if err != nil {
		return err
	}
	tx.Bucket(bucketPackages).FillPercent = versionFillPercent
	if err := tx.Bucket(bucketPackages).Put(joinKey(p.Name, p.Version), v); err != nil {
		return err
	}
	if err := tx.Bucket(bucketVersions).Put(u64Append(append([]byte(p.Name), 0), p.Seq), []byte(p.Version)); err != nil {
		return err
	}
	if err := addPackageRefs(tx, p); err != nil {
		return err
	}
	if err := putRecent(tx, p); err != nil {
		return err
	}
	return putIndexes(tx, p)
}

func putIndexes(tx *bolt.Tx, p *Package) error {
	for name, keys := range indexKeys(p) {
		b := tx.Bucket([]byte(name))
		for _, k := range keys {
			if err := b.Put(k, u64(p.Seq)); err != nil {
				return err
			}
		}
	}
	return nil
}

// removePackage removes name@version with its version index entry,
// listing-index entries and content references, and returns what it
// removed (ErrNotFound if it does not exist). Blobs, locations and events
// are the caller's business.
func removePackage(tx *bolt.Tx, name, version string) (*Package, error) {
	p, err := getPackage(tx, name, version)
	if err != nil {
		return nil, err
	}
	if err := tx.Bucket(bucketPackages).Delete(joinKey(name, version)); err != nil {
		return nil, err
	}
	if err := tx.Bucket(bucketVersions).Delete(u64Append(append([]byte(name), 0), p.Seq)); err != nil {
		return nil, err
	}
	if err := removePackageRefs(tx, p); err != nil {
		return nil, err
	}
	if err := tx.Bucket(bucketRecent).Delete(u64(p.Seq)); err != nil {
		return nil, err
	}
	for bname, keys := range indexKeys(p) {
		b := tx.Bucket([]byte(bname))
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// Filter selects packages in ListPackages. Empty fields match everything.
type Filter struct {
	Name           string
	Producer       string
	RetentionClass string
	Labels         map[string]string
}

func (f Filter) match(p *Package) bool {
	if f.Name != "" && p.Name != f.Name {
		return false
	}
	if f.Producer != "" && p.Producer != f.Producer {
		return false
	}
	if f.RetentionClass != "" && p.RetentionClass != f.RetentionClass {
		return false
	}
	for k, v := range f.Labels {
		if pv, ok := p.Labels[k]; !ok || pv != v {
			return false
		}
	}
	return true
}

// source picks where a listing walks: the packages themselves (from a
// name's prefix), or one listing index, whose keys are an index prefix
// followed by the package key name \x00 version. A name is the most
// selective, then a label, then the producer, then the retention class;
// the remaining conditions are checked on each package. It returns the
// bucket, the prefix every walked key has, and how many leading bytes of
// a key are not the package key.
func (f Filter) source() (bucket, prefix []byte, strip int) {
	var p []byte
	switch {
	case f.Name != "":
		return bucketPackages, append([]byte(f.Name), 0), 0
	case len(f.Labels) > 0:
		k := slices.Min(slices.Collect(maps.Keys(f.Labels)))
		p = append(joinKey(k, f.Labels[k]), 0)
		return bucketByLabel, p, len(p)
	case f.Producer != "":
		p = append([]byte(f.Producer), 0)
		return bucketByProducer, p, len(p)
	case f.RetentionClass != "":
		p = append([]byte(f.RetentionClass), 0)
		return bucketByRetention, p, len(p)
	}
	return bucketPackages, nil, 0
}

// Page is one page of a listing; Next is empty on the last page.
type Page struct {
	Packages []*Package
	Next     string
}

// ListPackages returns packages matching f in name, then version order,
// starting after cursor (empty: from the start). The cursor is the last
// package's key, so a page never repeats or skips a package that existed
// when the listing started, whatever is published meanwhile (a package
// published behind the cursor is not seen, one ahead of it is).
func (s *Store) ListPackages(ctx context.Context, f Filter, cursor string, limit int) (Page, error) {
	var page Page
	var after []byte
	if cursor != "" {
		k, err := decodeCursor(cursor)
		if err != nil {
			return page, err
		}
		after = k
	}
	bucket, prefix, strip := f.source()
	err := s.db.View(func(tx *bolt.Tx) error {
		pkgs := tx.Bucket(bucketPackages)
		c := tx.Bucket(bucket).Cursor()
		var k, v []byte
		if after != nil {
			start := append(append([]byte{}, prefix[:strip]...), after...)
			k, v = c.Seek(start)
			if k != nil && bytes.Equal(k, start) {
				k, v = c.Next()
			}
		} else {
			k, v = c.Seek(prefix)
		}
		for n := 0; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if n++; n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			pk := k[strip:]
			if !bytes.Equal(bucket, bucketPackages) {
				if v = pkgs.Get(pk); v == nil {
					return fmt.Errorf("%w: index %s names %q, which does not exist (db check --repair rebuilds indexes)", ErrCorrupt, bucket, pk)
				}
			}
			var p Package
			if err := decodePackage(v, &p); err != nil {
				return fmt.Errorf("package %q: %w", pk, err)
			}
			if !f.match(&p) {
				continue
			}
			if len(page.Packages) == limit {
				page.Next = encodeCursor(lastKey(page.Packages))
				return nil
			}
			page.Packages = append(page.Packages, &p)
		}
		return nil
	})
	return page, err
}

var indexBuckets = [][]byte{bucketByProducer, bucketByRetention, bucketByLabel}

// rebuildPackageIndexes replaces the listing indexes with what the
// packages say.
func rebuildPackageIndexes(ctx interface{ Err() error }, tx *bolt.Tx) error {
	for _, name := range indexBuckets {
		if tx.Bucket(name) != nil {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	n := 0
	return tx.Bucket(bucketPackages).ForEach(func(k, v []byte) error {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		var p Package
		if err := decodePackage(v, &p); err != nil {
			return nil // db check reports it; it cannot be indexed
		}
		return putIndexes(tx, &p)
	})
}

// checkPackageIndexes reports index entries that are missing or name no
// package (or one that no longer matches them).
func checkPackageIndexes(ctx context.Context, tx *bolt.Tx, add func(kind, subject, format string, args ...any)) error {
	want := map[string]int{}
	pkgs := tx.Bucket(bucketPackages)
	if err := pkgs.ForEach(func(k, v []byte) error {
		var p Package
		if err := decodePackage(v, &p); err != nil {
			return nil
		}
		for name, keys := range indexKeys(&p) {
			b := tx.Bucket([]byte(name))
			want[name] += len(keys)
			for _, ik := range keys {
				if b.Get(ik) == nil {
					add("index_mismatch", p.Name+"@"+p.Version, "missing from %s (db check --repair rebuilds indexes)", name)
				}
			}
		}
		return ctx.Err()
	}); err != nil {
		return err
	}
	for _, name := range indexBuckets {
		if got := tx.Bucket(name).Stats().KeyN; got != want[string(name)] {
			add("index_mismatch", string(name), "holds %d entries, the packages need %d (db check --repair rebuilds indexes)", got, want[string(name)])
		}
	}
	return nil
}

// CursorOf returns the cursor that continues a listing after p.
func CursorOf(p *Package) string { return encodeCursor(joinKey(p.Name, p.Version)) }

// keyValue is one record to write.
type keyValue struct{ k, v []byte }

// bucketRecords are the records of one bucket, sorted by key.
type bucketRecords struct {
	bucket []byte
	kvs    []keyValue
}

// packageRecords returns every record that new packages (Seq set) write:
// the package, its version and content references, its recent entry and
// its listing-index entries, grouped by bucket (in a fixed bucket order)
// and sorted by key, so that a bulk write walks each bucket once.
func packageRecords(pkgs []Package) ([]bucketRecords, error) {
	per := map[string][]keyValue{}
	if len(pkgs) > 0 { // sized for the common case, one file and the first package's labels
		for _, name := range append([][]byte{bucketPackages, bucketVersions, bucketPackageRefs, bucketRecent}, indexBuckets...) {
			per[string(name)] = make([]keyValue, 0, len(pkgs))
		}
		per[string(bucketByLabel)] = make([]keyValue, 0, len(pkgs)*len(pkgs[0].Labels))
	}
	for i := range pkgs {
		p := &pkgs[i]
		v, err := encodePackage(p)
		if err != nil {
			return nil, err
		}
		per[string(bucketPackages)] = append(per[string(bucketPackages)], keyValue{joinKey(p.Name, p.Version), v})
		per[string(bucketVersions)] = append(per[string(bucketVersions)], keyValue{u64Append(append([]byte(p.Name), 0), p.Seq), []byte(p.Version)})
		for _, f := range p.Files {
			per[string(bucketPackageRefs)] = append(per[string(bucketPackageRefs)], keyValue{joinKey(f.Digest, p.Name, p.Version), nil})
		}
		per[string(bucketRecent)] = append(per[string(bucketRecent)], keyValue{u64(p.Seq), recentValue(p)})
		for name, keys := range indexKeys(p) {
			for _, k := range keys {
				per[name] = append(per[name], keyValue{k, u64(p.Seq)})
			}
		}
	}
	out := make([]bucketRecords, 0, len(per))
	for _, name := range slices.Sorted(maps.Keys(per)) {
		kvs := per[name]
		slices.SortFunc(kvs, func(a, b keyValue) int { return bytes.Compare(a.k, b.k) })
		out = append(out, bucketRecords{bucket: []byte(name), kvs: kvs})
	}
	return out, nil
}

// rebuildPackageRefs replaces package_refs with what the packages say.
func rebuildPackageRefs(ctx interface{ Err() error }, tx *bolt.Tx) error {
	if err := tx.DeleteBucket(bucketPackageRefs); err != nil {
		return err
	}
	if _, err := tx.CreateBucket(bucketPackageRefs); err != nil {
		return err
	}
	return tx.Bucket(bucketPackages).ForEach(func(k, v []byte) error {
		var p Package
		if decodePackage(v, &p) != nil {
			return nil // db check reports it
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return addPackageRefs(tx, &p)
	})
}
