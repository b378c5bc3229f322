package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Problem is one inconsistency found by Check.
type Problem struct {
	Kind    string `json:"kind"`
	Subject string `json:"subject"`
	Detail  string `json:"detail"`
}

func (p Problem) String() string { return p.Kind + ": " + p.Subject + ": " + p.Detail }

// Check verifies bbolt's page consistency and the registry's invariants:
// every package file has a blob and at least one location, sizes agree,
// every location has a blob and names a configured backend, every version
// index entry points at its package. It reports at most max problems.
func (s *Store) Check(ctx context.Context, backendIDs []string, max int) ([]Problem, error) {
	var out []Problem
	add := func(kind, subject, format string, args ...any) {
		if len(out) < max {
			out = append(out, Problem{Kind: kind, Subject: subject, Detail: fmt.Sprintf(format, args...)})
		}
	}
	configured := map[string]bool{}
	for _, id := range backendIDs {
		configured[id] = true
	}
	// bbolt's own page check reads the freelist that a concurrent write
	// transaction changes (a data race, seen with the record outbox
	// draining beside db check). It runs under the writer lock, in a
	// write transaction that is rolled back: writers wait for it.
	wtx, err := s.db.Begin(true)
	if err != nil {
		return nil, fmt.Errorf("db check: %w", err)
	}
	for err := range wtx.Check() {
		add("bbolt", s.path, "%v", err)
	}
	if err := wtx.Rollback(); err != nil {
		return nil, fmt.Errorf("db check: %w", err)
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		blobs := tx.Bucket(bucketBlobs)
		if err := tx.Bucket(bucketPackages).ForEach(func(k, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var p Package
			if err := decodePackage(v, &p); err != nil {
				add("undecodable_record", "packages/"+printable(k), "%v", err)
				return nil
			}
			subject := p.Name + "@" + p.Version
			if !bytes.Equal(k, joinKey(p.Name, p.Version)) {
				add("misplaced_package", subject, "stored under key %q", printable(k))
			}
			vk := binary.BigEndian.AppendUint64(append([]byte(p.Name), 0), p.Seq)
			if got := tx.Bucket(bucketVersions).Get(vk); string(got) != p.Version {
				add("missing_version_index", subject, "no version index entry for seq %d", p.Seq)
			}
			for _, f := range p.Files {
				bv := blobs.Get([]byte(f.Digest))
				if bv == nil {
					add("file_without_blob", subject+" "+f.Path, "blob %s is not recorded", f.Digest)
					continue
				}
				var b Blob
				if err := decodeBlobKV([]byte(f.Digest), bv, &b); err == nil && b.Size != f.Size {
					add("size_disagreement", subject+" "+f.Path, "file says %d bytes, blob %s says %d", f.Size, f.Digest, b.Size)
				}
				if !hasAnyLocation(tx, f.Digest) {
					add("file_without_location", subject+" "+f.Path, "no backend holds %s", f.Digest)
				}
			}
			return nil
		}); err != nil {
			return err
		}
		if err := forEachLocation(tx, func(l *Location) error {
			if !configured[l.Backend] {
				add("unknown_backend", l.Digest+" on "+l.Backend, "the location names backend %q, which is not configured", l.Backend)
			}
			if blobs.Get([]byte(l.Digest)) == nil {
				add("location_without_blob", l.Digest+" on "+l.Backend, "blob is not recorded")
			}
			return nil
		}, func(k []byte, err error) {
			add("undecodable_record", "storage_locations/"+printable(k), "%v", err)
		}); err != nil {
			return err
		}
		if err := checkLocationDerived(ctx, tx, add); err != nil {
			return err
		}
		if err := checkPackageIndexes(ctx, tx, add); err != nil {
			return err
		}
		if err := checkPackageRefs(tx, add); err != nil {
			return err
		}
		return tx.Bucket(bucketVersions).ForEach(func(k, v []byte) error {
			i := bytes.IndexByte(k, 0)
			if i < 0 || tx.Bucket(bucketPackages).Get(joinKey(string(k[:i]), string(v))) == nil {
				add("dangling_version_index", printable(k), "points at %s, which does not exist", v)
			}
			return nil
		})
	})
	return out, err
}

func printable(k []byte) string { return fmt.Sprintf("%q", k) }

// WriteBackup writes a consistent snapshot of the database to w (bbolt's
// hot backup: one read transaction, writers keep going) and returns its
// size.
func (s *Store) WriteBackup(ctx context.Context, w io.Writer, size func(int64)) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		if size != nil {
			size(tx.Size())
		}
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// CheckFile opens a database file read-only (a backup) and checks it: bbolt
// page consistency and a schema version this binary can open (older ones
// are migrated when the file is next opened read-write).
func CheckFile(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		v := readVersion(tx)
		if v == 0 {
			return fmt.Errorf("%s is not an artifactstore database (no schema version)", path)
		}
		if v > SchemaVersion() {
			return fmt.Errorf("%s: %w: schema version %d, this binary knows up to %d", path, ErrSchemaTooNew, v, SchemaVersion())
		}
		for err := range tx.Check() {
			return fmt.Errorf("%s fails bbolt's consistency check: %w", path, err)
		}
		return nil
	})
}
