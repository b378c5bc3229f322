package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// putRecent records a committed package in the commit-order index.
func putRecent(tx *bolt.Tx, seq uint64, name, version string) error {
	return tx.Bucket(bucketRecent).Put(u64(seq), joinKey(name, version))
}

// migrateRecent (migration 4) creates the commit-order index and fills it
// from the packages already committed.
func migrateRecent(tx *bolt.Tx) error {
	b, err := tx.CreateBucketIfNotExists(bucketRecent)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketPackages).ForEach(func(k, v []byte) error {
		var p Package
		if err := decode(v, &p); err != nil {
			return fmt.Errorf("package %q: %w", k, err)
		}
		return b.Put(u64(p.Seq), joinKey(p.Name, p.Version))
	})
}

// NameQuery selects package names for RecentNames.
type NameQuery struct {
	// NamePrefix keeps names that start with it; empty keeps all.
	NamePrefix string
	// Filter keeps names with at least one version matching it (its Name
	// field is ignored). The zero Filter matches every version.
	Filter Filter
	// Cursor is the Next of the previous page; empty starts at the newest.
	Cursor string
	// Limit is the page size (at least 1).
	Limit int
	// MaxScan bounds the index entries one call reads; 0 means 20,000.
	// A page that hits it ends early with Truncated set and a Next cursor
	// that continues the scan, so one call costs the same at any size.
	MaxScan int
}

// NameSummary is one package name in a RecentNames page.
type NameSummary struct {
	Name string
	// Latest is the newest version of the name.
	Latest *Package
	// Match is the newest version that matched the filter (Latest when
	// there is no filter).
	Match *Package
	// Versions counts the name's versions.
	Versions int
}

// NamePage is one page of RecentNames.
type NamePage struct {
	Names []NameSummary
	// Next continues the listing; empty on the last page.
	Next string
	// Truncated says the scan stopped at MaxScan before the page was
	// full; Next continues it.
	Truncated bool
	// Scanned counts the index entries read.
	Scanned int
}

func (f Filter) isZero() bool {
	return f.Producer == "" && f.RetentionClass == "" && len(f.Labels) == 0
}

// RecentNames lists package names, newest first by the commit of their
// newest matching version; each name appears once across all pages, at its
// newest matching version.
func (s *Store) RecentNames(ctx context.Context, q NameQuery) (NamePage, error) {
	var page NamePage
	if q.Limit < 1 {
		q.Limit = 1
	}
	if q.MaxScan <= 0 {
		q.MaxScan = 20000
	}
	var start []byte
	if q.Cursor != "" {
		k, err := decodeCursor(q.Cursor)
		if err != nil || len(k) != 8 {
			return page, ErrBadCursor
		}
		start = k
	}
	q.Filter.Name = ""
	filtered := !q.Filter.isZero()
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecent).Cursor()
		vc := tx.Bucket(bucketVersions).Cursor()
		var k, v []byte
		if start != nil {
			c.Seek(start)
			k, v = c.Prev()
		} else {
			k, v = c.Last()
		}
		seen := map[string]bool{}
		for ; k != nil; k, v = c.Prev() {
			if page.Scanned == q.MaxScan {
				// Cursors are exclusive: resume at k itself.
				page.Truncated = true
				page.Next = encodeCursor(u64(binary.BigEndian.Uint64(k) + 1))
				return nil
			}
			page.Scanned++
			if page.Scanned%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			name, version, ok := strings.Cut(string(v), "\x00")
			if !ok || !strings.HasPrefix(name, q.NamePrefix) || seen[name] {
				continue
			}
			seq := binary.BigEndian.Uint64(k)
			var match *Package
			if filtered {
				p, err := getPackage(tx, name, version)
				if err != nil {
					continue // deleted since: the index is a hint
				}
				if !q.Filter.match(p) {
					continue
				}
				newer, err := newerMatch(tx, vc, name, seq, q.Filter)
				if err != nil {
					return err
				}
				if newer {
					continue // listed at its newer matching version
				}
				match = p
			} else if hasNewer(vc, name, seq) {
				continue
			}
			if len(page.Names) == q.Limit {
				page.Next = encodeCursor(u64(lastSeq(page.Names)))
				return nil
			}
			latest, count, err := latestOf(tx, vc, name)
			if err != nil {
				return err
			}
			if latest == nil {
				continue
			}
			if match == nil {
				match = latest
			}
			seen[name] = true
			page.Names = append(page.Names, NameSummary{Name: name, Latest: latest, Match: match, Versions: count})
		}
		return nil
	})
	return page, err
}

func lastSeq(ns []NameSummary) uint64 { return ns[len(ns)-1].Match.Seq }

func versionPrefix(name string) []byte { return append([]byte(name), 0) }

// hasNewer reports whether name has a version committed after seq.
func hasNewer(vc *bolt.Cursor, name string, seq uint64) bool {
	prefix := versionPrefix(name)
	k, _ := vc.Seek(u64Append(append([]byte{}, prefix...), seq+1))
	return k != nil && bytes.HasPrefix(k, prefix)
}

// newerMatch reports whether a version of name committed after seq
// matches f.
func newerMatch(tx *bolt.Tx, vc *bolt.Cursor, name string, seq uint64, f Filter) (bool, error) {
	prefix := versionPrefix(name)
	for k, v := vc.Seek(u64Append(append([]byte{}, prefix...), seq+1)); k != nil && bytes.HasPrefix(k, prefix); k, v = vc.Next() {
		p, err := getPackage(tx, name, string(v))
		if err != nil {
			continue
		}
		if f.match(p) {
			return true, nil
		}
	}
	return false, nil
}

// latestOf returns the newest version of name and the number of versions.
func latestOf(tx *bolt.Tx, vc *bolt.Cursor, name string) (*Package, int, error) {
	prefix := versionPrefix(name)
	n := 0
	var last []byte
	for k, v := vc.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = vc.Next() {
		n++
		last = v
	}
	if last == nil {
		return nil, 0, nil
	}
	p, err := getPackage(tx, name, string(last))
	if err != nil {
		return nil, 0, err
	}
	return p, n, nil
}

// EventQuery selects events for EventsBefore.
type EventQuery struct {
	// Before lists events with a smaller seq; 0 starts at the newest.
	Before uint64
	// Types keeps events of these types; empty keeps all.
	Types []string
	Limit int
	// MaxScan bounds the events read; 0 means 50,000.
	MaxScan int
}

// EventsBefore returns events newest first. Next is the Before of the
// following page (0 when there is none); a scan that stopped at MaxScan
// returns a Next that continues it.
func (s *Store) EventsBefore(ctx context.Context, q EventQuery) ([]Event, uint64, error) {
	var out []Event
	var next uint64
	if q.MaxScan <= 0 {
		q.MaxScan = 50000
	}
	if q.Limit < 1 {
		q.Limit = 1
	}
	needles := make([][]byte, len(q.Types))
	for i, t := range q.Types {
		needles[i] = []byte(`"type":"` + t + `"`)
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		var k, v []byte
		if q.Before > 0 {
			c.Seek(u64(q.Before))
			k, v = c.Prev()
		} else {
			k, v = c.Last()
		}
		scanned := 0
		for ; k != nil; k, v = c.Prev() {
			if len(k) != 8 {
				continue
			}
			seq := binary.BigEndian.Uint64(k)
			if len(out) == q.Limit || scanned == q.MaxScan {
				next = seq + 1
				return nil
			}
			scanned++
			if len(needles) > 0 && !containsAny(v, needles) {
				continue
			}
			var e Event
			if err := decode(v, &e); err != nil {
				return fmt.Errorf("event %d: %w", seq, err)
			}
			if len(q.Types) > 0 && !contains(q.Types, e.Type) {
				continue
			}
			out = append(out, e)
		}
		return nil
	})
	return out, next, err
}

func containsAny(v []byte, needles [][]byte) bool {
	for _, n := range needles {
		if bytes.Contains(v, n) {
			return true
		}
	}
	return false
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// PackagesWithDigests finds, newest first, up to perDigest packages that
// hold each digest, reading at most maxScan packages (0 means 20,000).
func (s *Store) PackagesWithDigests(ctx context.Context, digests []string, perDigest, maxScan int) (map[string][]*Package, error) {
	out := make(map[string][]*Package, len(digests))
	if len(digests) == 0 {
		return out, nil
	}
	if maxScan <= 0 {
		maxScan = 20000
	}
	want := map[string]bool{}
	for _, d := range digests {
		want[d] = true
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecent).Cursor()
		scanned, done := 0, 0
		for k, v := c.Last(); k != nil && scanned < maxScan && done < len(want); k, v = c.Prev() {
			scanned++
			name, version, ok := strings.Cut(string(v), "\x00")
			if !ok {
				continue
			}
			p, err := getPackage(tx, name, version)
			if err != nil {
				continue
			}
			for _, f := range p.Files {
				if !want[f.Digest] || len(out[f.Digest]) >= perDigest || holds(out[f.Digest], p) {
					continue
				}
				out[f.Digest] = append(out[f.Digest], p)
				if len(out[f.Digest]) == perDigest {
					done++
				}
			}
		}
		return ctx.Err()
	})
	return out, err
}

func holds(ps []*Package, p *Package) bool {
	for _, x := range ps {
		if x.Name == p.Name && x.Version == p.Version {
			return true
		}
	}
	return false
}
