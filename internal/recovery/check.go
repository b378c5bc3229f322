package recovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"

	"artifactstore/backends"
	"artifactstore/store"
)

// Kinds of the problems Compare reports.
const (
	// ProblemRecordTampered: a record whose digest does not match its
	// contents. Never imported; --repair rewrites it from the database
	// when the package exists.
	ProblemRecordTampered = "record_tampered"
	// ProblemRecordInvalid: a record that cannot be read as a manifest
	// record (or does not name the package its key names).
	ProblemRecordInvalid = "record_invalid"
	// ProblemRecordWithoutPackage: a record of a package the database does
	// not have (deleted behind the outbox's back, or the database is older
	// than the records: see recover). --repair leaves it.
	ProblemRecordWithoutPackage = "record_without_package"
	// ProblemRecordDiffers: a record that describes the package otherwise
	// than the database. --repair rewrites it from the database.
	ProblemRecordDiffers = "record_differs"
	// ProblemPackageWithoutRecord: a backend holds content of a package
	// but no record of it. --repair writes it.
	ProblemPackageWithoutRecord = "package_without_record"
)

// storedRecord is one record read from one backend.
type storedRecord struct {
	backend, name string
	rec           *Record
	err           error
}

// readAll lists and reads every manifest record of one backend, with the
// manager's concurrency.
func (m *Manager) readAll(ctx context.Context, id string) ([]storedRecord, error) {
	rs := m.records[id]
	var names []string
	if err := rs.ListRecords(ctx, RecordPrefix, func(i backends.RecordInfo) error {
		names = append(names, i.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("backend %s: list records: %w", id, err)
	}
	sort.Strings(names)
	out := make([]storedRecord, len(names))
	sem := make(chan struct{}, m.opts.Concurrency)
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i] = storedRecord{backend: id, name: n}
			out[i].rec, out[i].err = m.readRecord(ctx, rs, n)
		}()
	}
	wg.Wait()
	return out, ctx.Err()
}

// readRecord reads one record and checks it is the record its name says.
func (m *Manager) readRecord(ctx context.Context, rs backends.RecordStore, n string) (*Record, error) {
	rc, _, err := rs.OpenRecord(ctx, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	rec, err := ReadRecord(rc)
	if err != nil {
		return nil, err
	}
	name, version, ok := ParseRecordName(n)
	if !ok || name != rec.Name || version != rec.Version {
		return nil, fmt.Errorf("%w: stored as %s but describes %s@%s", ErrBadRecord, n, rec.Name, rec.Version)
	}
	return rec, nil
}

// Compare reads every manifest record in every record-keeping backend and
// compares them with the database, naming every difference (at most max).
// Packages with a pending outbox entry are left out: their records are
// being written. Call Flush first to have none.
func (m *Manager) Compare(ctx context.Context, max int) ([]store.Problem, error) {
	var out []store.Problem
	add := func(kind, subject, format string, args ...any) {
		if len(out) < max {
			out = append(out, store.Problem{Kind: kind, Subject: subject, Detail: fmt.Sprintf(format, args...)})
		}
	}
	pending := func(name, version string) bool {
		yes, err := m.store.RecordsPending(ctx, name, version)
		return err == nil && yes
	}
	ids := make([]string, 0, len(m.records))
	for id := range m.records {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	// have[backend] = names of the records that backend holds.
	have := map[string]map[string]bool{}
	for _, id := range ids {
		recs, err := m.readAll(ctx, id)
		if err != nil {
			return out, err
		}
		have[id] = map[string]bool{}
		for _, sr := range recs {
			have[id][sr.name] = true
			subject := id + ":" + sr.name
			name, version, ok := ParseRecordName(sr.name)
			if ok && pending(name, version) {
				continue
			}
			switch {
			case errors.Is(sr.err, ErrTampered):
				add(ProblemRecordTampered, subject, "%v", sr.err)
				continue
			case sr.err != nil:
				add(ProblemRecordInvalid, subject, "%v", sr.err)
				continue
			}
			p, err := m.store.GetPackage(ctx, sr.rec.Name, sr.rec.Version)
			if errors.Is(err, store.ErrNotFound) {
				add(ProblemRecordWithoutPackage, subject, "the database has no %s@%s", sr.rec.Name, sr.rec.Version)
				continue
			}
			if err != nil {
				return out, err
			}
			if want := RecordOf(p); !want.Same(sr.rec) {
				rp := sr.rec.Package()
				diff := store.PackageDiff(p, &rp)
				if diff == "" {
					diff = fmt.Sprintf("created_at/seq: database %s/%d, record %s/%d", p.CreatedAt.UTC().Format("2006-01-02T15:04:05.999999999Z"), p.Seq,
						sr.rec.CreatedAt.Format("2006-01-02T15:04:05.999999999Z"), sr.rec.Seq)
				} else {
					diff = "database vs record: " + diff
				}
				add(ProblemRecordDiffers, subject, "%s", diff)
			}
		}
	}
	var after store.PackageKey
	for {
		page, err := m.store.PackagePage(ctx, after, 1000)
		if err != nil {
			return out, err
		}
		if len(page) == 0 {
			return out, nil
		}
		after = store.PackageKey{Name: page[len(page)-1].Name, Version: page[len(page)-1].Version}
		for _, p := range page {
			holders, err := m.Holders(ctx, p)
			if err != nil {
				return out, err
			}
			rn := RecordName(p.Name, p.Version)
			for _, id := range holders {
				if !have[id][rn] && !pending(p.Name, p.Version) {
					add(ProblemPackageWithoutRecord, id+":"+rn, "backend %s holds content of %s@%s but no record of it", id, p.Name, p.Version)
				}
			}
		}
	}
}

// Repair fixes the problems that are safe to fix: a record that is
// missing, differs from the database or is tampered with, of a package
// the database has, is written again from the database. Records of
// packages the database does not have are left (they may be all that is
// left of them: see recover). It returns the problems it fixed.
func (m *Manager) Repair(ctx context.Context, problems []store.Problem) ([]store.Problem, error) {
	var keys []store.PackageKey
	var fixed []store.Problem
	for _, p := range problems {
		switch p.Kind {
		case ProblemRecordTampered, ProblemRecordDiffers, ProblemPackageWithoutRecord, ProblemRecordInvalid:
		default:
			continue
		}
		_, rn, ok := cutSubject(p.Subject)
		if !ok {
			continue
		}
		name, version, ok := ParseRecordName(rn)
		if !ok {
			continue
		}
		if _, err := m.store.GetPackage(ctx, name, version); errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return fixed, err
		}
		k := store.PackageKey{Name: name, Version: version}
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
		fixed = append(fixed, p)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	if err := m.store.MarkRecords(ctx, keys); err != nil {
		return nil, err
	}
	if err := m.Flush(ctx); err != nil {
		return nil, err
	}
	return fixed, nil
}

// cutSubject splits a problem subject "backend:record name".
func cutSubject(s string) (backend, name string, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}
