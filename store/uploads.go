package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Upload-session errors.
var (
	ErrSessionExpired = errors.New("upload session expired")
	ErrIncomplete     = errors.New("upload incomplete")
	ErrNotNeeded      = errors.New("content not part of this upload session")
)

// Session is an open publish: the draft package and which contents the
// client still has to upload.
type Session struct {
	ID        string    `json:"id"`
	Draft     Package   `json:"draft"`
	Needed    []string  `json:"needed"` // digests the client must upload
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// Copies are the other backends the package's rule names: the commit
	// writes a copy of every file there (or records pending copies, when
	// the rule's MinCopies allows committing without them).
	Copies    []string `json:"copies,omitempty"`
	MinCopies int      `json:"min_copies,omitempty"`
}

// SessionCopies are the other backends a session's commit copies the
// content to, and how many backends (its own included) must hold it.
type SessionCopies struct {
	Backends  []string
	MinCopies int
}

// Ref names an object an upload session staged in a backend.
type Ref struct {
	Backend string
	Digest  string
}

// CreateSession opens an upload session for draft. needed lists digests the
// client must upload (each file's backend is in draft.Files). In the same
// transaction it records an upload ref for every needed digest, before any
// byte is written: from then on garbage collection of other sessions leaves
// those objects alone. A file not in needed must still have a usable
// location on its backend when the session is written; otherwise (garbage
// collection removed it since the caller looked) it fails with
// ErrStaleBegin and the caller recomputes needed.
//
// It returns once the session's transaction has run, without waiting for
// it to be durable: the service drops every session at start-up (no
// client of an earlier process can go on with one), so durability would
// buy a session nothing. Garbage collection sees the refs at once (its
// decisions are made in write transactions, or in read transactions
// after settle); if the commit fails, the session is forgotten and its
// commit fails as not found. An object uploaded for a session a crash
// lost before its commit is an orphan (gc --orphans), not a loss.
func (s *Store) CreateSession(ctx context.Context, draft Package, needed []string, ttl time.Duration, copies ...SessionCopies) (*Session, error) {
	now := s.now().UTC()
	sess := &Session{ID: newID(), Draft: draft, Needed: needed, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	for _, c := range copies {
		sess.Copies, sess.MinCopies = c.Backends, c.MinCopies
	}
	v, err := encode(sess)
	if err != nil {
		return nil, err
	}
	// Nobody knows the id before this returns, so the session can be
	// visible to GetSession before its transaction runs.
	s.sessions.Store(sess.ID, sess)
	opened := false
	defer func() {
		if !opened { // failed, or a function that panicked
			s.sessions.Delete(sess.ID)
		}
	}()
	err = s.batchEarly(func(tx *bolt.Tx) error {
		if err := checkCountedOn(tx, &draft, needed); err != nil {
			return err
		}
		refs := tx.Bucket(bucketUploadRefs)
		for _, d := range needed {
			backend, _ := sess.BackendOf(d)
			if err := refs.Put(joinKey(backend, d, sess.ID), nil); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketUploads).Put([]byte(sess.ID), v)
	}, func(err error) {
		s.sessions.Delete(sess.ID)
		s.log.Warn("upload session lost: its transaction failed to commit", "upload_id", sess.ID, "err", err)
	})
	if err != nil {
		return nil, fmt.Errorf("create upload session: %w", err)
	}
	opened = true
	return sess, nil
}

// GetSession returns an open session or ErrNotFound / ErrSessionExpired.
// The returned session is shared: callers must not modify it.
func (s *Store) GetSession(ctx context.Context, id string) (*Session, error) {
	if v, ok := s.sessions.Load(id); ok {
		sess := v.(*Session)
		if !s.now().Before(sess.ExpiresAt) {
			return nil, fmt.Errorf("upload session %q: %w at %s", id, ErrSessionExpired, sess.ExpiresAt.Format(time.RFC3339))
		}
		return sess, nil
	}
	var sess *Session
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		sess, err = s.liveSession(tx, id)
		return err
	})
	return sess, err
}

func getSession(tx *bolt.Tx, id string) (*Session, error) {
	v := tx.Bucket(bucketUploads).Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("upload session %q: %w", id, ErrNotFound)
	}
	var sess Session
	if err := decode(v, &sess); err != nil {
		return nil, fmt.Errorf("upload session %q: %w", id, err)
	}
	return &sess, nil
}

// sessionIn returns session id as tx holds it. Sessions never change
// once written, so when tx has it, the copy CreateSession kept in memory
// is the same session and spares decoding it; the caller must not
// modify it (copySession).
func (s *Store) sessionIn(tx *bolt.Tx, id string) (*Session, error) {
	if m, ok := s.sessions.Load(id); ok {
		if tx.Bucket(bucketUploads).Get([]byte(id)) == nil {
			return nil, fmt.Errorf("upload session %q: %w", id, ErrNotFound)
		}
		return m.(*Session), nil
	}
	return getSession(tx, id)
}

// copySession returns a copy of sess a caller may modify.
func copySession(sess *Session) *Session {
	c := *sess
	c.Draft.Files = slices.Clone(sess.Draft.Files)
	c.Draft.Labels = maps.Clone(sess.Draft.Labels)
	c.Needed = slices.Clone(sess.Needed)
	c.Copies = slices.Clone(sess.Copies)
	return &c
}

func (s *Store) liveSession(tx *bolt.Tx, id string) (*Session, error) {
	sess, err := s.sessionIn(tx, id)
	if err != nil {
		return nil, err
	}
	if !s.now().Before(sess.ExpiresAt) {
		return nil, fmt.Errorf("upload session %q: %w at %s", id, ErrSessionExpired, sess.ExpiresAt.Format(time.RFC3339))
	}
	return sess, nil
}

// BackendOf returns the backend a session routes digest to.
func (sess *Session) BackendOf(digest string) (string, bool) {
	for _, f := range sess.Draft.Files {
		if f.Digest == digest {
			return f.Backend, true
		}
	}
	return "", false
}

// deleteSession removes a session and its refs, returning the refs.
func deleteSession(tx *bolt.Tx, id string) ([]Ref, error) {
	sess, err := getSession(tx, id)
	if err != nil {
		return nil, err
	}
	return deleteSessionOf(tx, sess)
}

// deleteSessionOf is deleteSession of a session the caller has read.
func deleteSessionOf(tx *bolt.Tx, sess *Session) ([]Ref, error) {
	id := sess.ID
	var refs []Ref
	rb := tx.Bucket(bucketUploadRefs)
	for _, d := range sess.Needed {
		backend, _ := sess.BackendOf(d)
		k := joinKey(backend, d, id)
		if rb.Get(k) != nil {
			refs = append(refs, Ref{Backend: backend, Digest: d})
			if err := rb.Delete(k); err != nil {
				return nil, err
			}
		}
	}
	return refs, tx.Bucket(bucketUploads).Delete([]byte(id))
}

// DropSession deletes a session and returns the objects it staged, which
// the caller must garbage-collect (see IsReferenced).
func (s *Store) DropSession(ctx context.Context, id string) ([]Ref, error) {
	var refs []Ref
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		refs, err = deleteSession(tx, id)
		return err
	})
	if err == nil || errors.Is(err, ErrNotFound) {
		s.sessions.Delete(id)
	}
	return refs, err
}

// SessionIDs returns the ids of sessions expired at now, or of all sessions
// when all is true.
func (s *Store) SessionIDs(ctx context.Context, all bool) ([]string, error) {
	var ids []string
	now := s.now()
	s.settle()
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUploads).ForEach(func(k, v []byte) error {
			var sess Session
			if err := decode(v, &sess); err != nil {
				// An undecodable session is garbage too.
				ids = append(ids, string(k))
				return nil
			}
			if all || !now.Before(sess.ExpiresAt) {
				ids = append(ids, string(k))
			}
			return nil
		})
	})
	return ids, err
}

// IsReferenced reports whether the registry still needs the object: a
// location records it, or an open session stages it.
func (s *Store) IsReferenced(ctx context.Context, ref Ref) (bool, error) {
	var yes bool
	s.settle()
	err := s.db.View(func(tx *bolt.Tx) error {
		if hasLocationKey(tx, ref.Digest, ref.Backend) {
			yes = true
			return nil
		}
		prefix := append(joinKey(ref.Backend, ref.Digest), 0)
		k, _ := tx.Bucket(bucketUploadRefs).Cursor().Seek(prefix)
		yes = k != nil && bytes.HasPrefix(k, prefix)
		return nil
	})
	return yes, err
}

// CommitResult is the outcome of Commit.
type CommitResult struct {
	Package *Package
	// Created is false when an identical package already existed.
	Created bool
	// Garbage lists staged objects the session no longer references; the
	// caller garbage-collects them (normally empty on success).
	Garbage []Ref
}

// pathsOf returns the paths of p's files with digest d.
func pathsOf(p Package, d string) []string {
	var out []string
	for _, f := range p.Files {
		if f.Digest == d {
			out = append(out, f.Path)
		}
	}
	return out
}

// Commit makes the session's package visible atomically: package, blobs,
// new locations and their events are written in one transaction, and the
// session is removed. stored lists the needed digests the caller has
// confirmed the backend now holds; a needed digest missing from it fails
// the commit with ErrIncomplete, and so does a file whose location on its
// backend has a failed status (only RecordRepair clears that). Committing an identical existing package succeeds
// with Created false; a different one fails with ErrConflict (and the
// session is dropped, its refs returned for garbage collection).
func (s *Store) Commit(ctx context.Context, id string, stored []string) (CommitResult, error) {
	return s.CommitWith(ctx, id, CommitInput{Stored: stored})
}

// CommitInput is what the caller confirmed before a commit.
type CommitInput struct {
	// Stored lists the needed digests the session's backend now holds.
	Stored []string
	// Copies are objects the caller wrote (bytes checked against the
	// digest) to the session's other backends; each becomes a location of
	// its own, unless one exists.
	Copies []Ref
	// Pending are copies the rule asks for that were not written; they
	// are recorded as PendingCopy for internal/replication.
	Pending []Ref
}

// CommitWith is Commit with copies on other backends: the new package's
// copies and pending copies are written in the same transaction as the
// package. For an identical existing package they are ignored.
func (s *Store) CommitWith(ctx context.Context, id string, in CommitInput) (CommitResult, error) {
	stored := in.Stored
	var res CommitResult
	var conflict error
	err := s.batch(func(tx *bolt.Tx) error {
		res, conflict = CommitResult{}, nil
		live, err := s.liveSession(tx, id)
		if err != nil {
			return err
		}
		sess := copySession(live) // the package below is built from it
		draft := sess.Draft
		if existing, err := getPackage(tx, draft.Name, draft.Version); err == nil {
			if SamePackage(existing, &draft) {
				// A republish that repairs: every failed location it was
				// begun for must have been rewritten (RecordRepair).
				var failed []string
				for _, ds := range sess.Needed {
					backend, _ := sess.BackendOf(ds)
					if l, err := getLocation(tx, ds, backend); err != nil {
						return err
					} else if l != nil && l.Failed() {
						failed = append(failed, pathsOf(draft, ds)...)
					}
				}
				if len(failed) > 0 {
					return fmt.Errorf("%w: failed verification and not uploaded again yet: %s", ErrIncomplete, strings.Join(failed, ", "))
				}
			}
			refs, err := deleteSessionOf(tx, sess)
			if err != nil {
				return err
			}
			res.Garbage = refs
			if SamePackage(existing, &draft) {
				res.Package = existing
				return nil
			}
			conflict = &ConflictError{Name: draft.Name, Version: draft.Version, Diff: PackageDiff(existing, &draft)}
			return nil
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}

		var missing, failed []string
		for _, f := range draft.Files {
			l, err := getLocation(tx, f.Digest, f.Backend)
			if err != nil {
				return err
			}
			switch {
			case l == nil && !slices.Contains(stored, f.Digest):
				missing = append(missing, f.Path)
			case l != nil && l.Failed():
				// The object's presence proves nothing about its bytes:
				// only a verified repair (RecordRepair) clears a failure.
				failed = append(failed, f.Path)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%w: not uploaded yet: %s", ErrIncomplete, strings.Join(missing, ", "))
		}
		if len(failed) > 0 {
			return fmt.Errorf("%w: failed verification and not uploaded again yet: %s", ErrIncomplete, strings.Join(failed, ", "))
		}

		now := s.now().UTC()
		blobs := tx.Bucket(bucketBlobs)
		for _, f := range draft.Files {
			if blobs.Get([]byte(f.Digest)) == nil {
				v, err := encodeBlob(Blob{Digest: f.Digest, Size: f.Size, CreatedAt: now})
				if err != nil {
					return err
				}
				if err := blobs.Put([]byte(f.Digest), v); err != nil {
					return err
				}
			}
			if old, err := getLocation(tx, f.Digest, f.Backend); err != nil {
				return err
			} else if old != nil {
				continue
			}
			loc := Location{Digest: f.Digest, Backend: f.Backend, Size: f.Size, Status: StatusStored, StoredAt: now}
			if err := putLocation(tx, &loc); err != nil {
				return err
			}
			if err := s.appendEvent(tx, EventLocationCreated, f.Digest, loc); err != nil {
				return err
			}
		}

		for _, c := range in.Copies {
			if hasLocationKey(tx, c.Digest, c.Backend) {
				continue
			}
			var size int64 = -1
			for _, f := range draft.Files {
				if f.Digest == c.Digest {
					size = f.Size
				}
			}
			if size < 0 {
				continue // not content of this package
			}
			loc := Location{Digest: c.Digest, Backend: c.Backend, Size: size, Status: StatusStored, StoredAt: now}
			if err := putLocation(tx, &loc); err != nil {
				return err
			}
			if err := s.appendEvent(tx, EventLocationCreated, c.Digest, loc); err != nil {
				return err
			}
		}
		for _, c := range in.Pending {
			for _, f := range draft.Files {
				if f.Digest == c.Digest {
					if err := putPendingCopy(tx, PendingCopy{Digest: c.Digest, Backend: c.Backend, Size: f.Size, Since: now,
						Package: draft.Name + "@" + draft.Version, Reason: "backend unavailable at publish (min_copies allowed the commit)"}); err != nil {
						return err
					}
					break
				}
			}
		}

		pkgs := tx.Bucket(bucketPackages)
		seq, err := pkgs.NextSequence()
		if err != nil {
			return err
		}
		pkg := draft
		pkg.Seq, pkg.CreatedAt = seq, now
		if err := putPackage(tx, &pkg); err != nil {
			return err
		}
		if err := s.appendEvent(tx, EventPackageCreated, pkg.Name+"@"+pkg.Version, packageEventData(&pkg)); err != nil {
			return err
		}
		if err := markRecord(tx, pkg.Name, pkg.Version, false); err != nil {
			return err
		}
		refs, err := deleteSessionOf(tx, sess)
		if err != nil {
			return err
		}
		// Refs of files now located are not garbage; IsReferenced will say so.
		res = CommitResult{Package: &pkg, Created: true, Garbage: refs}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			s.sessions.Delete(id)
		}
		return CommitResult{}, err
	}
	s.sessions.Delete(id) // committed, or dropped as a conflict
	if conflict != nil {
		return res, conflict
	}
	return res, nil
}

// SamePackage reports whether two packages have the same declared content.
func SamePackage(a, b *Package) bool { return PackageDiff(a, b) == "" }

func u64Append(b []byte, v uint64) []byte {
	return append(b, u64(v)...)
}

type packageEvent struct {
	Name           string            `json:"name"`
	Version        string            `json:"version"`
	Producer       string            `json:"producer"`
	RetentionClass string            `json:"retention_class"`
	Labels         map[string]string `json:"labels,omitempty"`
	Files          int               `json:"files"`
	Bytes          int64             `json:"bytes"`
}

func packageEventData(p *Package) packageEvent {
	e := packageEvent{Name: p.Name, Version: p.Version, Producer: p.Producer,
		RetentionClass: p.RetentionClass, Labels: p.Labels, Files: len(p.Files)}
	for _, f := range p.Files {
		e.Bytes += f.Size
	}
	return e
}
