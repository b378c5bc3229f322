package store

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"slices"
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
		if err := decodePackage(v, &p); err != nil {
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
	// MaxScan bounds the commit-order entries one call reads newest first
	// (0 means 2,000). A page that is not full by then is answered from
	// the narrowest index instead (see RecentNames), so it only decides
	// which way is cheaper, never what is found.
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
	// Scanned counts the index entries read (commit-order entries, then
	// listing or version index entries, about).
	Scanned int
	// Indexed says the page was answered from a listing or version index
	// because the newest MaxScan packages did not fill it.
	Indexed bool
}

func (f Filter) isZero() bool {
	return f.Producer == "" && f.RetentionClass == "" && len(f.Labels) == 0
}

// RecentNames lists package names, newest first by the commit of their
// newest matching version; each name appears once across all pages, at its
// newest matching version. Every page is complete: a match however far
// back is found.
//
// It first reads the commit-order index newest first, which fills a page
// after a few entries when matches are common. When MaxScan entries have
// not filled the page, it answers from the narrowest of the listing
// indexes (one per filter condition: label, producer, retention class) and
// the version index (names with the prefix): it counts their entries,
// reads every entry of the smallest, checks the other conditions on the
// commit-order index and orders the matches by commit. Its cost grows with
// the matches of the most selective condition, not with the store.
func (s *Store) RecentNames(ctx context.Context, q NameQuery) (NamePage, error) {
	var page NamePage
	if q.Limit < 1 {
		q.Limit = 1
	}
	if q.MaxScan <= 0 {
		q.MaxScan = 2000
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
	m := newMatcher(q.Filter)
	err := s.db.View(func(tx *bolt.Tx) error {
		full, err := scanRecent(ctx, tx, q, m, start, &page)
		if err != nil || full {
			return err
		}
		page.Names, page.Next, page.Indexed = nil, "", true
		return fromIndex(ctx, tx, q, m, start, &page)
	})
	return page, err
}

// scanRecent fills page from the commit-order index, reading at most
// q.MaxScan entries; full reports that the page is complete (full, or the
// history ended).
func scanRecent(ctx context.Context, tx *bolt.Tx, q NameQuery, m *matcher, start []byte, page *NamePage) (full bool, err error) {
	filtered := !q.Filter.isZero()
	prefix := []byte(q.NamePrefix)
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
	for read := 0; k != nil; k, v = c.Prev() {
		if read == q.MaxScan {
			return false, nil
		}
		read++
		page.Scanned++
		if read%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return false, err
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
			return true, nil
		}
		if err := addSummary(tx, vc, page, name, match); err != nil {
			return false, err
		}
		seen[name] = true
	}
	return true, nil
}

// addSummary appends name to the page with its latest version and count;
// match nil means the latest. A name whose versions are all gone is
// skipped.
func addSummary(tx *bolt.Tx, vc *bolt.Cursor, page *NamePage, name string, match *Package) error {
	latest, count, err := latestOf(tx, vc, name)
	if err != nil || latest == nil {
		return err
	}
	if match == nil {
		match = latest
	}
	page.Names = append(page.Names, NameSummary{Name: name, Latest: latest, Match: match, Versions: count})
	return nil
}

// indexSource is one index RecentNames can answer from: the entries under
// prefix in bucket, whose keys end in the package key name \x00 version
// (strip leading bytes are not), or for the version index name \x00 seq.
type indexSource struct {
	bucket, prefix []byte
	strip          int
	versions       bool
}

// sources lists the indexes that hold every match of q: the version index
// under the name prefix and one listing index per filter condition.
func sources(q NameQuery) []indexSource {
	out := []indexSource{{bucket: bucketVersions, prefix: []byte(q.NamePrefix), versions: true}}
	add := func(b, p []byte) { out = append(out, indexSource{bucket: b, prefix: p, strip: len(p)}) }
	for k, v := range q.Filter.Labels {
		add(bucketByLabel, append(joinKey(k, v), 0))
	}
	if q.Filter.Producer != "" {
		add(bucketByProducer, append([]byte(q.Filter.Producer), 0))
	}
	if q.Filter.RetentionClass != "" {
		add(bucketByRetention, append([]byte(q.Filter.RetentionClass), 0))
	}
	return out
}

// narrowest returns the source with the fewest entries and their number,
// stepping through all of them together so that it reads about as many
// entries from each as the smallest holds.
func narrowest(tx *bolt.Tx, srcs []indexSource) (indexSource, int) {
	cs := make([]*bolt.Cursor, len(srcs))
	keys := make([][]byte, len(srcs))
	for i, src := range srcs {
		cs[i] = tx.Bucket(src.bucket).Cursor()
		keys[i], _ = cs[i].Seek(src.prefix)
	}
	for n := 0; ; n++ {
		for i, src := range srcs {
			if keys[i] == nil || !bytes.HasPrefix(keys[i], src.prefix) {
				return src, n
			}
			keys[i], _ = cs[i].Next()
		}
	}
}

// indexMatch is one matching version found through an index.
type indexMatch struct {
	seq           uint64
	name, version string
}

// fromIndex answers q from the narrowest source (see RecentNames).
func fromIndex(ctx context.Context, tx *bolt.Tx, q NameQuery, m *matcher, start []byte, page *NamePage) error {
	srcs := sources(q)
	best, bestN := narrowest(tx, srcs)
	page.Scanned += (len(srcs) + 1) * bestN
	// Conditions the source does not decide are checked on each entry:
	// the name prefix unless the source is the version index, and the
	// filter unless it is the source's only condition.
	checkPrefix := !best.versions && q.NamePrefix != ""
	checkFilter := !q.Filter.isZero() && (best.versions || len(srcs) > 2)
	prefix := []byte(q.NamePrefix)
	recent := tx.Bucket(bucketRecent)
	var matches []indexMatch
	c := tx.Bucket(best.bucket).Cursor()
	n := 0
	for k, v := c.Seek(best.prefix); k != nil && bytes.HasPrefix(k, best.prefix); k, v = c.Next() {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		var im indexMatch
		if best.versions {
			if len(k) < 9 {
				continue
			}
			im = indexMatch{seq: binary.BigEndian.Uint64(k[len(k)-8:]), name: string(k[:len(k)-9]), version: string(v)}
		} else {
			name, version, ok := bytes.Cut(k[best.strip:], []byte{0})
			if !ok || checkPrefix && !bytes.HasPrefix(name, prefix) {
				continue
			}
			im = indexMatch{name: string(name), version: string(version)}
			if len(v) == 8 {
				im.seq = binary.BigEndian.Uint64(v)
			} else if p, err := getPackage(tx, im.name, im.version); err == nil {
				im.seq = p.Seq // an entry written before the index kept seqs
			} else {
				continue
			}
		}
		if checkFilter {
			e, ok := parseRecent(recent.Get(u64(im.seq)))
			if !ok || string(e.name) != im.name || string(e.version) != im.version {
				e = recentEntry{name: []byte(im.name), version: []byte(im.version)}
			}
			if !m.matches(tx, e) {
				continue
			}
		}
		matches = append(matches, im)
	}
	slices.SortFunc(matches, func(a, b indexMatch) int { return cmp.Compare(b.seq, a.seq) })
	var after uint64 = math.MaxUint64
	if start != nil {
		after = binary.BigEndian.Uint64(start)
	}
	vc := tx.Bucket(bucketVersions).Cursor()
	seen := map[string]bool{}
	for _, im := range matches {
		if seen[im.name] {
			continue
		}
		// The name's newest matching version that still exists decides
		// its place; an index entry of a deleted version is a hint only.
		if !isVersion(vc, im.name, im.seq) {
			continue
		}
		seen[im.name] = true
		if im.seq >= after {
			continue // listed on an earlier page
		}
		var match *Package // nil: the name's latest version
		if !q.Filter.isZero() {
			p, err := getPackage(tx, im.name, im.version)
			if err != nil {
				continue
			}
			match = p
		}
		if len(page.Names) == q.Limit {
			page.Next = encodeCursor(u64(lastSeq(page.Names)))
			return nil
		}
		if err := addSummary(tx, vc, page, im.name, match); err != nil {
			return err
		}
	}
	return nil
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
			// A JSON value without the type's text is not of the type
			// (no decoding); a binary one names its type in its third byte.
			if len(needles) > 0 && len(v) > 0 && v[0] == encodingV1 && !containsAny(v, needles) {
				continue
			}
			if len(needles) > 0 && len(v) > 0 && v[0] == encodingEvent {
				if typ, ok := eventType(v); ok && !slices.Contains(q.Types, typ) {
					continue
				}
			}
			e, err := decodeEventKV(k, v, s.source)
			if err != nil {
				return fmt.Errorf("event %d: %w", seq, err)
			}
			if len(q.Types) > 0 && !slices.Contains(q.Types, e.Type) {
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
