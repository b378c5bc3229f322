package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// The record outbox: every commit and every delete of a package marks the
// package here, in its own transaction, so the manifest records the
// backends keep of each package (internal/recovery) follow the database
// even across a crash: whatever the process did not get to write is still
// marked at the next start.

// migrateRecordOutbox creates the outbox and marks every package already
// committed, so the service writes their records at its next start.
func migrateRecordOutbox(tx *bolt.Tx) error {
	if _, err := tx.CreateBucketIfNotExists(bucketRecordOutbox); err != nil {
		return err
	}
	return tx.Bucket(bucketPackages).ForEach(func(k, _ []byte) error {
		i := bytes.IndexByte(k, 0)
		if i < 0 {
			return nil // db check reports a misplaced package
		}
		return markRecord(tx, string(k[:i]), string(k[i+1:]), false)
	})
}

// maxHolderMarks bounds how many packages referencing one content
// markNewHolder looks at, so a content shared by very many packages
// reaching a new backend does not make one transaction slow; db check
// --repair writes the records of the others.
const maxHolderMarks = 1000

// markNewHolder is called when content gets its first location on a
// backend: every package referencing it whose files the backend now all
// holds is marked, so its record is written there as well.
func markNewHolder(tx *bolt.Tx, digest, backend string) error {
	refs := tx.Bucket(bucketPackageRefs)
	if refs == nil || tx.Bucket(bucketRecordOutbox) == nil {
		return nil // a migration older than the outbox
	}
	prefix := append([]byte(digest), 0)
	c := refs.Cursor()
	n := 0
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && n < maxHolderMarks; k, _ = c.Next() {
		n++
		rest := k[len(prefix):]
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			continue
		}
		p, err := getPackage(tx, string(rest[:i]), string(rest[i+1:]))
		if err != nil {
			continue // db check reports a dangling reference
		}
		all := true
		for _, f := range p.Files {
			if f.Digest != digest && !hasLocationKey(tx, f.Digest, backend) {
				all = false
				break
			}
		}
		if all {
			if err := markRecord(tx, p.Name, p.Version, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// Outbox value: generation(8, big-endian) flags(1).
const outboxDeleted byte = 1 // a delete happened since the mark was taken

// markRecord marks name@version in tx; deleted says the package was
// deleted (so stale records elsewhere must go even if it is published
// again before the outbox is drained).
func markRecord(tx *bolt.Tx, name, version string, deleted bool) error {
	b := tx.Bucket(bucketRecordOutbox)
	k := joinKey(name, version)
	var flags byte
	if old := b.Get(k); len(old) == 9 {
		flags = old[8]
	}
	if deleted {
		flags |= outboxDeleted
	}
	gen, err := b.NextSequence()
	if err != nil {
		return err
	}
	return b.Put(k, append(u64(gen), flags))
}

// OutboxEntry is a package whose manifest records must be brought up to
// date with the database.
type OutboxEntry struct {
	PackageKey
	// Deleted: the package was deleted at least once since the entry was
	// first taken; records of it on backends that do not hold it now are
	// stale.
	Deleted bool
	gen     uint64
}

// PendingRecords returns up to limit outbox entries after the entry of
// package after (from the first when after is zero), in key order.
func (s *Store) PendingRecords(ctx context.Context, after PackageKey, limit int) ([]OutboxEntry, error) {
	var out []OutboxEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecordOutbox).Cursor()
		var from []byte
		if after != (PackageKey{}) {
			from = joinKey(after.Name, after.Version)
		}
		k, v := seekAfter(c, from)
		for ; k != nil && len(out) < limit; k, v = c.Next() {
			i := bytes.IndexByte(k, 0)
			if i < 0 || len(v) != 9 {
				return fmt.Errorf("%w: record outbox entry %q", ErrCorrupt, k)
			}
			out = append(out, OutboxEntry{PackageKey: PackageKey{Name: string(k[:i]), Version: string(k[i+1:])},
				Deleted: v[8]&outboxDeleted != 0, gen: binary.BigEndian.Uint64(v[:8])})
		}
		return ctx.Err()
	})
	return out, err
}

// RecordsPendingCount returns how many packages have an outbox entry.
func (s *Store) RecordsPendingCount(ctx context.Context) (int, error) {
	var n int
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketRecordOutbox).Stats().KeyN
		return nil
	})
	return n, err
}

// RecordsPending reports whether name@version has an outbox entry.
func (s *Store) RecordsPending(ctx context.Context, name, version string) (bool, error) {
	var yes bool
	err := s.db.View(func(tx *bolt.Tx) error {
		yes = tx.Bucket(bucketRecordOutbox).Get(joinKey(name, version)) != nil
		return nil
	})
	return yes, err
}

// DoneRecords removes the entries whose records were written, unless the
// package was marked again meanwhile (then its entry stays for the next
// pass). It joins the publishes' group commit: the worker runs after
// every commit, and a transaction of its own would hold the writer for a
// whole commit and fsync between two groups of publishes.
func (s *Store) DoneRecords(ctx context.Context, done []OutboxEntry) error {
	if len(done) == 0 {
		return nil
	}
	return s.batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecordOutbox)
		for _, e := range done {
			k := joinKey(e.Name, e.Version)
			if v := b.Get(k); len(v) == 9 && binary.BigEndian.Uint64(v[:8]) == e.gen {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// MarkRecords marks packages for a rewrite of their records (db check
// --repair).
func (s *Store) MarkRecords(ctx context.Context, keys []PackageKey) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, k := range keys {
			if err := markRecord(tx, k.Name, k.Version, false); err != nil {
				return err
			}
		}
		return nil
	})
}

// PackagePage returns up to limit committed packages after the package
// after (from the first when after is zero), in key order: a full scan in
// pages, each in its own read transaction.
func (s *Store) PackagePage(ctx context.Context, after PackageKey, limit int) ([]*Package, error) {
	var out []*Package
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketPackages).Cursor()
		var from []byte
		if after != (PackageKey{}) {
			from = joinKey(after.Name, after.Version)
		}
		k, v := seekAfter(c, from)
		for ; k != nil && len(out) < limit; k, v = c.Next() {
			var p Package
			if err := decodePackage(v, &p); err != nil {
				return fmt.Errorf("package %q: %w", k, err)
			}
			out = append(out, &p)
		}
		return ctx.Err()
	})
	return out, err
}

// AddLocation records that a backend holds content, as a copy to
// another backend does: a new location (an existing one is left as it
// is), which marks the packages the backend now holds entirely in the
// record outbox. The content's blob must be known (ErrNotFound).
func (s *Store) AddLocation(ctx context.Context, l Location) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketBlobs).Get([]byte(l.Digest)) == nil {
			return fmt.Errorf("blob %s: %w", l.Digest, ErrNotFound)
		}
		if old, err := getLocation(tx, l.Digest, l.Backend); err != nil || old != nil {
			return err
		}
		return putLocation(tx, &l)
	})
}

// seekAfter positions c on the first key after from (on the first key
// when from is nil): the start of a page that follows the key from.
func seekAfter(c *bolt.Cursor, from []byte) (k, v []byte) {
	if from == nil {
		return c.First()
	}
	if k, v = c.Seek(from); k != nil && bytes.Equal(k, from) {
		return c.Next()
	}
	return k, v
}
