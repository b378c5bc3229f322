package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Location statuses. A location starts "stored"; verification moves it to
// one of the verdicts, following the rules of nextStatus (status.go).
const (
	StatusStored     = "stored"
	StatusVerified   = "verified"
	StatusMismatch   = "mismatch"
	StatusMissing    = "missing"
	StatusUnreadable = "unreadable"
)

// Event types.
const (
	EventPackageCreated  = "v1.package.created"
	EventLocationCreated = "v1.storage.location_created"
)

// File is one file of a committed package.
type File struct {
	Path      string `json:"path"`
	Size      int64  `json:"size"`
	Digest    string `json:"digest"` // "sha256:hex"
	MediaType string `json:"media_type"`
	// Backend is where the file was routed when the package was committed.
	Backend string `json:"backend"`
}

// Package is a committed, immutable package version.
type Package struct {
	Name           string            `json:"name"`
	Version        string            `json:"version"`
	Producer       string            `json:"producer"`
	RetentionClass string            `json:"retention_class"`
	Labels         map[string]string `json:"labels,omitempty"`
	CreatedAt      time.Time         `json:"created_at"`
	Seq            uint64            `json:"seq"`
	Files          []File            `json:"files"`
}

// Blob is content known to the registry.
type Blob struct {
	Digest    string    `json:"digest"`
	Size      int64     `json:"size"`
	CreatedAt time.Time `json:"created_at"`
}

// Location records that a backend holds a blob.
type Location struct {
	Digest         string     `json:"digest"`
	Backend        string     `json:"backend"`
	Size           int64      `json:"size"`
	Status         string     `json:"status"`
	StoredAt       time.Time  `json:"stored_at"`
	LastVerifiedAt *time.Time `json:"last_verified_at,omitempty"`
	// LastCheckedAt is the last quick check (existence and size only).
	LastCheckedAt *time.Time `json:"last_checked_at,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	// LastFailedAt is when the latest failed verdict about the current
	// bytes was reached (its Verdict.At). A pass whose check began before
	// it is older evidence and does not clear or lift the failure
	// (RecordVerdict). A repair clears it with LastError: the failure was
	// about bytes that are gone.
	LastFailedAt *time.Time `json:"last_failed_at,omitempty"`
	// Repairs counts verified rewrites of a failed object (RecordRepair).
	// It is the location's generation: a verdict about bytes read before
	// a repair is stale and not recorded.
	Repairs int `json:"repairs,omitempty"`
}

// Failed reports whether verification found the location bad.
func (l Location) Failed() bool {
	return l.Status == StatusMismatch || l.Status == StatusMissing || l.Status == StatusUnreadable
}

// GetPackage returns name@version or ErrNotFound.
func (s *Store) GetPackage(ctx context.Context, name, version string) (*Package, error) {
	var p *Package
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		p, err = getPackage(tx, name, version)
		return err
	})
	return p, err
}

func getPackage(tx *bolt.Tx, name, version string) (*Package, error) {
	v := tx.Bucket(bucketPackages).Get(joinKey(name, version))
	if v == nil {
		return nil, fmt.Errorf("package %s@%s: %w", name, version, ErrNotFound)
	}
	var p Package
	if err := decodePackage(v, &p); err != nil {
		return nil, fmt.Errorf("package %s@%s: %w", name, version, err)
	}
	return &p, nil
}

// GetBlob returns the blob record of digest or ErrNotFound.
func (s *Store) GetBlob(ctx context.Context, digest string) (*Blob, error) {
	var b Blob
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketBlobs).Get([]byte(digest))
		if v == nil {
			return fmt.Errorf("blob %s: %w", digest, ErrNotFound)
		}
		return decodeBlobKV([]byte(digest), v, &b)
	})
	if err != nil {
		return nil, err
	}
	return &b, nil
}

// Locations returns every location of a digest, ordered by backend id.
func (s *Store) Locations(ctx context.Context, digest string) ([]Location, error) {
	var locs []Location
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		locs, err = locationsOf(tx, digest)
		return err
	})
	return locs, err
}

// LocationsOf returns the locations of many digests in one transaction.
func (s *Store) LocationsOf(ctx context.Context, digests []string) (map[string][]Location, error) {
	out := make(map[string][]Location, len(digests))
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, d := range digests {
			if _, done := out[d]; done {
				continue
			}
			locs, err := locationsOf(tx, d)
			if err != nil {
				return err
			}
			out[d] = locs
		}
		return nil
	})
	return out, err
}

// GetLocation returns the location of digest on backend, or nil.
func (s *Store) GetLocation(ctx context.Context, digest, backend string) (*Location, error) {
	var l *Location
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		l, err = getLocation(tx, digest, backend)
		return err
	})
	return l, err
}

// HasLocation reports whether backend holds digest according to the
// registry, with a status that is not a failed verdict.
func (s *Store) HasLocation(ctx context.Context, digest, backend string) (bool, error) {
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		l, err := getLocation(tx, digest, backend)
		ok = l != nil && !l.Failed()
		return err
	})
	return ok, err
}

// ErrBadCursor is returned for a cursor this store did not produce.
var ErrBadCursor = fmt.Errorf("invalid cursor")

func encodeCursor(k []byte) string { return base64.RawURLEncoding.EncodeToString(k) }

func decodeCursor(c string) ([]byte, error) {
	k, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(k) == 0 {
		return nil, ErrBadCursor
	}
	return k, nil
}

func lastKey(ps []*Package) []byte {
	p := ps[len(ps)-1]
	return joinKey(p.Name, p.Version)
}

// ListVersions returns the versions of name, newest first.
func (s *Store) ListVersions(ctx context.Context, name, cursor string, limit int) (Page, error) {
	var page Page
	prefix := append([]byte(name), 0)
	var start []byte
	if cursor != "" {
		k, err := decodeCursor(cursor)
		if err != nil || !bytes.HasPrefix(k, prefix) {
			return page, ErrBadCursor
		}
		start = k
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketVersions).Cursor()
		var k, v []byte
		if start != nil {
			k, v = c.Seek(start)
			k, v = c.Prev() // strictly before the cursor
		} else {
			// Position after the last key with this prefix.
			end := append(append([]byte{}, prefix...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
			k, v = c.Seek(end)
			if k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Prev() {
			if len(page.Packages) == limit {
				page.Next = encodeCursor(prevKey(page.Packages))
				return nil
			}
			p, err := getPackage(tx, name, string(v))
			if err != nil {
				return err
			}
			page.Packages = append(page.Packages, p)
		}
		return nil
	})
	return page, err
}

func prevKey(ps []*Package) []byte {
	p := ps[len(ps)-1]
	k := append([]byte(p.Name), 0)
	return binary.BigEndian.AppendUint64(k, p.Seq)
}

// Counts returns the number of records in each bucket, by bucket name.
func (s *Store) Counts(ctx context.Context) (map[string]int, error) {
	out := map[string]int{}
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, b := range allBuckets() {
			out[string(b)] = tx.Bucket(b).Stats().KeyN
		}
		return nil
	})
	return out, err
}

// bulkFillPercent is how full ImportPackages packs the pages it writes.
const bulkFillPercent = 0.9

// appendFillPercent is the split point of buckets whose keys only grow
// (events and packages_by_seq, keyed by sequence): a page split there
// never gets another key on its left, so bbolt's default of 50% would
// leave every page half empty for good.
const appendFillPercent = 1.0

// importTxRecords is how many records one transaction of ImportPackages
// writes at most: a bulk load of a million packages commits in a few
// dozen transactions, each appending to the right edge of every bucket.
var importTxRecords = 250_000

// ImportPackages writes committed packages, with their blobs and a stored
// location on backend for every file whose blob is new, without events or
// upload sessions. It exists for bulk loading (the benchmark datasets);
// publishing goes through upload sessions and Commit.
//
// All records of the import are sorted by key across the whole import and
// each bucket is written once, in key order, with its pages packed to
// bulkFillPercent: a random-keyed bucket (blobs, locations, content
// references) is never rewritten page by page, so the cost is linear in
// the import. Up to importTxRecords records the import is one
// transaction (all or nothing); a larger one commits every
// importTxRecords records and, if it fails, leaves what it committed: it
// is meant for a database no one else uses yet.
func (s *Store) ImportPackages(ctx context.Context, pkgs []Package, backend string) error {
	if len(pkgs) == 0 {
		return nil
	}
	tx, err := s.db.Begin(true)
	if err != nil {
		return err
	}
	defer func() {
		if tx != nil {
			tx.Rollback() // after a commit: ErrTxClosed, nothing to undo
		}
	}()
	pb := tx.Bucket(bucketPackages)
	first := pb.Sequence() + 1
	if err := pb.SetSequence(pb.Sequence() + uint64(len(pkgs))); err != nil {
		return err
	}
	now := s.now().UTC()
	blobs := tx.Bucket(bucketBlobs)
	newBlobs := map[string]int64{}
	for i := range pkgs {
		p := &pkgs[i]
		p.Seq = first + uint64(i)
		if p.CreatedAt.IsZero() {
			p.CreatedAt = now
		}
		for j := range p.Files {
			f := &p.Files[j]
			f.Backend = backend
			if _, ok := newBlobs[f.Digest]; !ok && blobs.Get([]byte(f.Digest)) == nil {
				newBlobs[f.Digest] = f.Size
			}
		}
	}
	digests := slices.Sorted(maps.Keys(newBlobs))
	recs, err := packageRecords(pkgs)
	if err != nil {
		return err
	}
	// A bulk load fills the pages it writes to 90% (bbolt splits at 50% by
	// default, which suits random single inserts); recent, keyed by
	// sequence, only ever appends.
	fill := func(tx *bolt.Tx) {
		for _, name := range append([][]byte{bucketBlobs, bucketVersions, bucketPackages, bucketPackageRefs}, indexBuckets...) {
			tx.Bucket(name).FillPercent = bulkFillPercent
		}
		tx.Bucket(bucketRecent).FillPercent = appendFillPercent
		setLocationsFill(tx, bulkFillPercent)
	}
	fill(tx)
	written := 0
	// next makes room for one more record: it commits and begins the next
	// transaction every importTxRecords records.
	next := func() error {
		if written++; written <= importTxRecords {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		if tx, err = s.db.Begin(true); err != nil {
			return err
		}
		fill(tx)
		written = 1
		return nil
	}
	for _, d := range digests {
		if err := next(); err != nil {
			return err
		}
		v, err := encodeBlob(Blob{Digest: d, Size: newBlobs[d], CreatedAt: now})
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketBlobs).Put([]byte(d), v); err != nil {
			return err
		}
	}
	for _, d := range digests {
		if err := next(); err != nil {
			return err
		}
		if err := putLocation(tx, &Location{Digest: d, Backend: backend, Size: newBlobs[d], Status: StatusStored, StoredAt: now}); err != nil {
			return err
		}
	}
	for _, r := range recs {
		for _, e := range r.kvs {
			if err := next(); err != nil {
				return err
			}
			if err := tx.Bucket(r.bucket).Put(e.k, e.v); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}
