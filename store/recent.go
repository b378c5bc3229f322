package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// putRecent records a committed package in the commit-order index, with
// the fields listings filter on, so a search reads the index alone.
func putRecent(tx *bolt.Tx, p *Package) error {
	b := tx.Bucket(bucketRecent)
	b.FillPercent = appendFillPercent
	return b.Put(u64(p.Seq), recentValue(p))
}

// recentValue is name \x00 version \x00 producer \x00 retention class \x00
// labels as JSON (none of the first four may contain NUL; the JSON is last).
func recentValue(p *Package) []byte {
	labels := []byte("{}")
	if len(p.Labels) > 0 {
		labels, _ = json.Marshal(p.Labels) // a map of strings always encodes
	}
	return append(append(joinKey(p.Name, p.Version, p.Producer, p.RetentionClass), 0), labels...)
}

// recentEntry is one decoded index value; its slices are valid only in
// the transaction that read it. The index also accepts a value of only
// name and version; such an entry has full false and filters read its
// package.
type recentEntry struct {
	name, version, producer, retention, labels []byte
	full                                       bool
}

func parseRecent(v []byte) (recentEntry, bool) {
	var parts [5][]byte
	n := 0
	for n < 4 {
		i := bytes.IndexByte(v, 0)
		if i < 0 {
			break
		}
		parts[n], v = v[:i], v[i+1:]
		n++
	}
	parts[n] = v
	switch n + 1 {
	case 2:
		return recentEntry{name: parts[0], version: parts[1]}, true
	case 5:
		return recentEntry{name: parts[0], version: parts[1], producer: parts[2], retention: parts[3], labels: parts[4], full: true}, true
	}
	return recentEntry{}, false
}

// matcher is a Filter prepared for index entries.
type matcher struct {
	f                   Filter
	producer, retention []byte
	needles             [][]byte // `"key":"value"` of each wanted label
}

func newMatcher(f Filter) *matcher {
	m := &matcher{f: f, producer: []byte(f.Producer), retention: []byte(f.RetentionClass)}
	for k, v := range f.Labels {
		kj, _ := json.Marshal(k)
		vj, _ := json.Marshal(v)
		m.needles = append(m.needles, append(append(kj, ':'), vj...))
	}
	return m
}

// entry reports whether the entry's package matches (the filter's Name is
// ignored). ok is false when the entry lacks the fields to tell.
func (m *matcher) entry(e recentEntry) (match, ok bool) {
	if !e.full {
		return false, false
	}
	if len(m.producer) > 0 && !bytes.Equal(e.producer, m.producer) || len(m.retention) > 0 && !bytes.Equal(e.retention, m.retention) {
		return false, true
	}
	if len(m.needles) == 0 {
		return true, true
	}
	for _, n := range m.needles {
		if !bytes.Contains(e.labels, n) {
			return false, true
		}
	}
	// The byte check cannot match a wrong label, but confirm exactly.
	var labels map[string]string
	if err := json.Unmarshal(e.labels, &labels); err != nil {
		return false, false
	}
	for k, v := range m.f.Labels {
		if got, ok := labels[k]; !ok || got != v {
			return false, true
		}
	}
	return true, true
}

// matches checks an index entry, reading the package when the entry
// cannot tell; a package deleted since does not match.
func (m *matcher) matches(tx *bolt.Tx, e recentEntry) bool {
	if ok, known := m.entry(e); known {
		return ok
	}
	p, err := getPackage(tx, string(e.name), string(e.version))
	return err == nil && m.f.match(p)
}

// migrateRecent (migration 6) creates the commit-order index and fills it
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
		return b.Put(u64(p.Seq), recentValue(&p))
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
	m := newMatcher(q.Filter)
	prefix := []byte(q.NamePrefix)
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
			e, ok := parseRecent(v)
			if !ok || !bytes.HasPrefix(e.name, prefix) || seen[string(e.name)] {
				continue
			}
			seq := binary.BigEndian.Uint64(k)
			var match *Package
			if filtered && !m.matches(tx, e) {
				continue
			}
			name := string(e.name)
			if filtered {
				if newerMatch(tx, vc, name, seq, m) {
					continue // listed at its newer matching version
				}
				p, err := getPackage(tx, name, string(e.version))
				if err != nil {
					continue // deleted since: the index is a hint
				}
				match = p
			} else if !isVersion(vc, name, seq) || hasNewer(vc, name, seq) {
				continue // deleted since, or listed at its newer version
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

// isVersion reports whether the version index still holds name at seq.
func isVersion(vc *bolt.Cursor, name string, seq uint64) bool {
	key := u64Append(versionPrefix(name), seq)
	k, _ := vc.Seek(key)
	return bytes.Equal(k, key)
}

// hasNewer reports whether name has a version committed after seq.
func hasNewer(vc *bolt.Cursor, name string, seq uint64) bool {
	prefix := versionPrefix(name)
	k, _ := vc.Seek(u64Append(append([]byte{}, prefix...), seq+1))
	return k != nil && bytes.HasPrefix(k, prefix)
}

// newerMatch reports whether a version of name committed after seq
// matches.
func newerMatch(tx *bolt.Tx, vc *bolt.Cursor, name string, seq uint64, m *matcher) bool {
	prefix := versionPrefix(name)
	recent := tx.Bucket(bucketRecent)
	for k, v := vc.Seek(u64Append(append([]byte{}, prefix...), seq+1)); k != nil && bytes.HasPrefix(k, prefix); k, v = vc.Next() {
		e, ok := parseRecent(recent.Get(k[len(prefix):]))
		if !ok {
			e = recentEntry{name: []byte(name), version: v}
		}
		if m.matches(tx, e) {
			return true
		}
	}
	return false
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
// hold each digest, through the package_refs index, reading at most
// maxRefs references of one digest (0 means 1,000).
func (s *Store) PackagesWithDigests(ctx context.Context, digests []string, perDigest, maxRefs int) (map[string][]*Package, error) {
	out := make(map[string][]*Package, len(digests))
	if maxRefs <= 0 {
		maxRefs = 1000
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketPackageRefs).Cursor()
		for _, d := range digests {
			if _, done := out[d]; done {
				continue
			}
			var ps []*Package
			prefix := append([]byte(d), 0)
			n := 0
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && n < maxRefs; k, _ = c.Next() {
				n++
				name, version, ok := strings.Cut(string(k[len(prefix):]), "\x00")
				if !ok {
					continue
				}
				if p, err := getPackage(tx, name, version); err == nil {
					ps = append(ps, p)
				}
			}
			sort.Slice(ps, func(i, j int) bool { return ps[i].Seq > ps[j].Seq })
			out[d] = ps[:min(len(ps), perDigest)]
		}
		return ctx.Err()
	})
	return out, err
}
