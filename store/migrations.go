package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Storage migrations (internal/replication) move content between
// backends. Their progress is kept here, one record per selection, so a
// restarted service resumes an interrupted run where it stopped.

// MigrationRun is one run of a storage migration.
type MigrationRun struct {
	ID             string     `json:"id"`
	From           string     `json:"from,omitempty"`
	To             string     `json:"to,omitempty"`
	ByRules        bool       `json:"by_rules,omitempty"`
	Producer       string     `json:"producer,omitempty"`
	RetentionClass string     `json:"retention_class,omitempty"`
	DeleteSource   bool       `json:"delete_source,omitempty"`
	StartedAt      time.Time  `json:"started_at"`
	FinishedAt     *time.Time `json:"finished_at,omitempty"`
	// Cursor is the key (name \x00 version) of the last package done;
	// a resumed run goes on after it.
	Cursor string `json:"cursor,omitempty"`
	// Packages looked at; Contents selected (content of a matching
	// package on a backend it must leave, or missing from one it must be
	// on); Copied (and CopiedBytes) written; Present already there;
	// Deleted (and DeletedBytes) source copies removed; Kept source
	// copies left because an upload counts on them or no other usable
	// copy exists; Failed copies or deletes (a later run retries them).
	Packages     int    `json:"packages"`
	Contents     int    `json:"contents"`
	Copied       int    `json:"copied"`
	CopiedBytes  int64  `json:"copied_bytes"`
	Present      int    `json:"present"`
	Deleted      int    `json:"deleted"`
	DeletedBytes int64  `json:"deleted_bytes"`
	Kept         int    `json:"kept"`
	Failed       int    `json:"failed"`
	Error        string `json:"error,omitempty"`
	Resumed      bool   `json:"resumed,omitempty"`
}

// MigrationState is the stored state of one selection: the run in
// progress (nil when none) and the last finished one.
type MigrationState struct {
	Current *MigrationRun `json:"current,omitempty"`
	Last    *MigrationRun `json:"last,omitempty"`
}

// GetMigration returns the state stored under key (empty if none).
func (s *Store) GetMigration(ctx context.Context, key string) (MigrationState, error) {
	var st MigrationState
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMigrations).Get([]byte(key))
		if v == nil {
			return nil
		}
		return decode(v, &st)
	})
	return st, err
}

// PutMigration stores the state of key.
func (s *Store) PutMigration(ctx context.Context, key string, st MigrationState) error {
	v, err := encode(st)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMigrations).Put([]byte(key), v) })
}

// PackagesFrom returns up to limit packages in key order (name, then
// version bytes) after the key after ("" from the start), and the key of
// the last one returned ("" when none): a migration's cursor.
func (s *Store) PackagesFrom(ctx context.Context, after string, limit int) ([]*Package, string, error) {
	var out []*Package
	last := ""
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketPackages).Cursor()
		var from []byte
		if after != "" {
			from = []byte(after)
		}
		k, v := seekAfter(c, from)
		for ; k != nil && len(out) < limit; k, v = c.Next() {
			var p Package
			if err := decodePackage(v, &p); err != nil {
				return fmt.Errorf("package %q: %w", k, err)
			}
			out = append(out, &p)
			last = string(k)
		}
		return nil
	})
	return out, last, err
}

// PackageKeyOf returns the key PackagesFrom orders by.
func PackageKeyOf(p *Package) string { return string(joinKey(p.Name, p.Version)) }

// ReferencingPackages returns the packages that reference digest.
func (s *Store) ReferencingPackages(ctx context.Context, digest string) ([]*Package, error) {
	var out []*Package
	err := s.db.View(func(tx *bolt.Tx) error {
		prefix := append([]byte(digest), 0)
		c := tx.Bucket(bucketPackageRefs).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			parts := bytes.SplitN(k[len(prefix):], []byte{0}, 2)
			if len(parts) != 2 {
				continue
			}
			p, err := getPackage(tx, string(parts[0]), string(parts[1]))
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

// Why RemoveCopy kept a location.
var (
	// ErrLastCopy: no other usable location of the content exists.
	ErrLastCopy = errors.New("no other usable copy")
	// ErrCopyInUse: an open upload session stages the object or counts on
	// the location (or another copy holds a lease on it).
	ErrCopyInUse = errors.New("an upload counts on this copy")
)

// RemoveCopy removes the location of digest on backend, in one
// transaction, if another usable location (on keep, or anywhere when keep
// is empty) holds the content, no upload ref or lease names the object and
// no open session's draft counts on it there (else ErrLastCopy or
// ErrCopyInUse, and nothing changes). It records a GCIntent (run id
// runID) for the object's delete, which the caller performs holding the
// object's key lock from before this call (so no upload can start
// counting on the object in between), then drops the intent (a crash in
// between leaves the intent for the next gc or migration run); and it
// appends v1.storage.location_deleted. It returns the removed location,
// nil if there was none.
func (s *Store) RemoveCopy(ctx context.Context, digest, backend, keep, runID string) (*Location, error) {
	ls, errs, err := s.RemoveCopies(ctx, []Ref{{Backend: backend, Digest: digest}}, keep, runID)
	if err != nil {
		return nil, err
	}
	return ls[0], errs[0]
}

// RemoveCopies is RemoveCopy for many copies in one transaction; errs[i]
// says why refs[i] was kept, err is a failure of the whole transaction.
func (s *Store) RemoveCopies(ctx context.Context, refs []Ref, keep, runID string) (removed []*Location, errs []error, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		removed, errs = make([]*Location, len(refs)), make([]error, len(refs))
		// What open sessions count on, by digest and backend.
		drafts := map[string]bool{}
		if err := tx.Bucket(bucketUploads).ForEach(func(k, v []byte) error {
			var sess Session
			if decode(v, &sess) == nil {
				for _, f := range sess.Draft.Files {
					drafts[f.Digest+"\x00"+f.Backend] = true
				}
			}
			return nil
		}); err != nil {
			return err
		}
		intents := tx.Bucket(bucketGCIntents)
		for i, r := range refs {
			l, err := getLocation(tx, r.Digest, r.Backend)
			if err != nil {
				return err
			}
			if l == nil {
				continue
			}
			others, err := locationsOf(tx, r.Digest)
			if err != nil {
				return err
			}
			usable := false
			for _, o := range others {
				if o.Backend != r.Backend && !o.Failed() && (keep == "" || o.Backend == keep) {
					usable = true
				}
			}
			switch {
			case !usable:
				errs[i] = fmt.Errorf("%s on %s: %w", r.Digest, r.Backend, ErrLastCopy)
				continue
			case hasUploadRef(tx, r.Backend, r.Digest) || drafts[r.Digest+"\x00"+r.Backend]:
				errs[i] = fmt.Errorf("%s on %s: %w", r.Digest, r.Backend, ErrCopyInUse)
				continue
			}
			if _, err := deleteLocation(tx, r.Digest, r.Backend); err != nil {
				return err
			}
			// The manifest records of the packages holding the content
			// follow it: rewritten where it is, removed where it was.
			if err := markLeftHolder(tx, r.Digest); err != nil {
				return err
			}
			v, err := encode(GCIntent{Backend: r.Backend, Digest: r.Digest, Size: l.Size, At: s.now().UTC(), RunID: runID})
			if err != nil {
				return err
			}
			if err := intents.Put(joinKey(r.Backend, r.Digest), v); err != nil {
				return err
			}
			if err := s.appendEvent(tx, EventLocationDeleted, r.Digest, map[string]any{
				"digest": r.Digest, "backend": r.Backend, "size": l.Size, "run_id": runID, "reason": "migration"}); err != nil {
				return err
			}
			removed[i] = l
		}
		return nil
	})
	return removed, errs, err
}

// markLeftHolder marks, after content lost its location on a backend, the
// packages referencing it (at most maxHolderMarks) in the record outbox
// with the flag that makes the records go from the backends that no
// longer hold the whole package (internal/recovery's sync), while the
// holders keep theirs.
func markLeftHolder(tx *bolt.Tx, digest string) error {
	if tx.Bucket(bucketRecordOutbox) == nil {
		return nil
	}
	prefix := append([]byte(digest), 0)
	c := tx.Bucket(bucketPackageRefs).Cursor()
	n := 0
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && n < maxHolderMarks; k, _ = c.Next() {
		n++
		parts := bytes.SplitN(k[len(prefix):], []byte{0}, 2)
		if len(parts) != 2 {
			continue
		}
		if err := markRecord(tx, string(parts[0]), string(parts[1]), true); err != nil {
			return err
		}
	}
	return nil
}
