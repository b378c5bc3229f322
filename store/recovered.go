package store

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// EventPackageRecovered is appended for every package recovery brought
// back from a manifest record (the package was committed after the
// snapshot recovery started from, or there was no snapshot).
const EventPackageRecovered = "v1.package.recovered"

// recoveredEvent is the data of v1.package.recovered.
type recoveredEvent struct {
	packageEvent
	CreatedAt string `json:"created_at"`
	// Record names the backend whose manifest record was imported.
	Record string `json:"record_backend"`
}

// Recovered is a package to import from a manifest record.
type Recovered struct {
	Package Package
	// RecordBackend is the backend the record was read from.
	RecordBackend string
}

// ImportRecovered writes packages read from manifest records, with their
// blobs and a v1.package.recovered event each, in transactions of 500.
// A package keeps its recorded Seq and CreatedAt when the sequence is
// free (the packages sequence is raised past it), else it takes the next
// sequence. A package that exists already is skipped. Locations are not
// written here (ReconcileLocations). It returns how many it imported.
func (s *Store) ImportRecovered(ctx context.Context, pkgs []Recovered) (int, error) {
	n := 0
	for start := 0; start < len(pkgs); start += 500 {
		chunk := pkgs[start:min(start+500, len(pkgs))]
		done := 0
		err := s.db.Update(func(tx *bolt.Tx) error {
			done = 0
			pb := tx.Bucket(bucketPackages)
			blobs := tx.Bucket(bucketBlobs)
			for _, r := range chunk {
				if err := ctx.Err(); err != nil {
					return err
				}
				p := r.Package
				if pb.Get(joinKey(p.Name, p.Version)) != nil {
					continue
				}
				if p.Seq == 0 || tx.Bucket(bucketRecent).Get(u64(p.Seq)) != nil {
					seq, err := pb.NextSequence()
					if err != nil {
						return err
					}
					p.Seq = seq
				} else if pb.Sequence() < p.Seq {
					if err := pb.SetSequence(p.Seq); err != nil {
						return err
					}
				}
				if p.CreatedAt.IsZero() {
					p.CreatedAt = s.now().UTC()
				}
				for _, f := range p.Files {
					if blobs.Get([]byte(f.Digest)) != nil {
						continue
					}
					v, err := encodeBlob(Blob{Digest: f.Digest, Size: f.Size, CreatedAt: p.CreatedAt})
					if err != nil {
						return err
					}
					if err := blobs.Put([]byte(f.Digest), v); err != nil {
						return err
					}
				}
				if err := putPackage(tx, &p); err != nil {
					return fmt.Errorf("import %s@%s: %w", p.Name, p.Version, err)
				}
				ev := recoveredEvent{packageEvent: packageEventData(&p), CreatedAt: p.CreatedAt.UTC().Format("2006-01-02T15:04:05.999999999Z07:00"), Record: r.RecordBackend}
				if err := s.appendEvent(tx, EventPackageRecovered, p.Name+"@"+p.Version, ev); err != nil {
					return err
				}
				done++
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		n += done
	}
	return n, nil
}

// ReconcileLocations writes the locations recovery found by listing the
// backends (add: created with their blob when absent, kept as they are
// when present) and removes the locations whose objects are gone (drop),
// in transactions of 5000 changes. It marks nothing in the record outbox
// (recovery marks the packages whose records are missing itself).
func (s *Store) ReconcileLocations(ctx context.Context, add []Location, drop []Ref) error {
	const chunk = 5000
	for start := 0; start < len(add); start += chunk {
		part := add[start:min(start+chunk, len(add))]
		err := s.db.Update(func(tx *bolt.Tx) error {
			blobs := tx.Bucket(bucketBlobs)
			for i := range part {
				l := part[i]
				if old, err := getLocation(tx, l.Digest, l.Backend); err != nil {
					return err
				} else if old != nil {
					continue
				}
				if blobs.Get([]byte(l.Digest)) == nil {
					v, err := encodeBlob(Blob{Digest: l.Digest, Size: l.Size, CreatedAt: l.StoredAt})
					if err != nil {
						return err
					}
					if err := blobs.Put([]byte(l.Digest), v); err != nil {
						return err
					}
				}
				if err := putLocationMarking(tx, &l, false); err != nil {
					return err
				}
			}
			return ctx.Err()
		})
		if err != nil {
			return err
		}
	}
	for start := 0; start < len(drop); start += chunk {
		part := drop[start:min(start+chunk, len(drop))]
		err := s.db.Update(func(tx *bolt.Tx) error {
			for _, r := range part {
				if _, err := deleteLocation(tx, r.Digest, r.Backend); err != nil {
					return err
				}
			}
			return ctx.Err()
		})
		if err != nil {
			return err
		}
	}
	return nil
}
