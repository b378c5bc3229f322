package recovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"artifactstore/backends"
	"artifactstore/internal/durable"
	"artifactstore/store"
)

// Problem kinds only recover reports (besides the record kinds of
// Compare).
const (
	// ProblemSnapshotUnusable: a snapshot that failed its digest or
	// consistency check; an older one is tried.
	ProblemSnapshotUnusable = "snapshot_unusable"
	// ProblemRecordConflict: two backends hold different records of one
	// package; the one read first (the --from-backend's) is used.
	ProblemRecordConflict = "record_conflict"
	// ProblemContentMissing: a recorded package whose content no backend
	// holds (with the recorded size); it is not imported.
	ProblemContentMissing = "content_missing"
	// ProblemLocationGone: the snapshot locates content on a backend that
	// no longer holds it; the location is dropped.
	ProblemLocationGone = "location_gone"
	// ProblemKeptWithoutRecord: a package of the snapshot without any
	// record whose record was still being written when the snapshot was
	// taken: kept (it may as well have been deleted since).
	ProblemKeptWithoutRecord = "kept_without_record"
)

// ErrNotEmpty: recover refuses to write over an existing database.
var ErrNotEmpty = errors.New("the database exists")

// RecoverOptions configures Recover.
type RecoverOptions struct {
	// From is the backend whose newest usable snapshot is restored.
	From string
	// Backends are every configured backend: records are read from all
	// that keep them, and all are listed to re-create locations.
	Backends map[string]backends.Backend
	// DBPath is where the database is created; it must not exist.
	DBPath string
	// Open opens (creating) the database at a path.
	Open   func(path string) (*store.Store, error)
	Logger *slog.Logger
	// Concurrency of record reads; 0 means 8.
	Concurrency int
}

// RecoverReport says what Recover restored and what it could not.
type RecoverReport struct {
	// Snapshot is the snapshot restored, nil when there was none usable.
	Snapshot *Snapshot `json:"snapshot,omitempty"`
	// FromSnapshot counts the packages the snapshot brought (after
	// DeletedSinceSnapshot were removed).
	FromSnapshot int `json:"from_snapshot"`
	// Recovered are the packages imported from manifest records.
	Recovered []string `json:"recovered"`
	// DeletedSinceSnapshot are the snapshot's packages of which no
	// backend holds a record any more: deleted after the snapshot.
	DeletedSinceSnapshot []string `json:"deleted_since_snapshot"`
	// LocationsCreated and LocationsDropped count the locations
	// reconciled with the backends' listings.
	LocationsCreated int `json:"locations_created"`
	LocationsDropped int `json:"locations_dropped"`
	// Problems are what could not be restored, or was restored with a
	// doubt, one entry each.
	Problems []store.Problem `json:"problems"`
	Took     time.Duration   `json:"took_ns"`
}

func (r *RecoverReport) add(kind, subject, format string, args ...any) {
	r.Problems = append(r.Problems, store.Problem{Kind: kind, Subject: subject, Detail: fmt.Sprintf(format, args...)})
}

// Recover builds a database at opts.DBPath from the backends alone: the
// newest usable snapshot in opts.From (if any), then every manifest record
// of a package the snapshot lacks (imported, with a v1.package.recovered
// event), less the snapshot's packages that no backend keeps a record of
// any more (deleted since; removed with a v1.package.deleted event); then
// the locations of every package's content are set from listings of
// every backend. Tampered or invalid records are reported and never
// imported. The caller makes sure no service runs on the data directory.
func Recover(ctx context.Context, opts RecoverOptions) (*RecoverReport, error) {
	start := time.Now()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if _, err := os.Stat(opts.DBPath); err == nil {
		return nil, fmt.Errorf("refusing to recover into %s: %w (recover builds a new database; move the old one away first)", opts.DBPath, ErrNotEmpty)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	from, ok := opts.Backends[opts.From]
	if !ok {
		return nil, fmt.Errorf("backend %q is not configured", opts.From)
	}
	fromRS, ok := backends.AsRecordStore(from)
	if !ok {
		return nil, fmt.Errorf("backend %s: %w", opts.From, ErrNoRecordStore)
	}
	dir := filepath.Dir(opts.DBPath)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	rep := &RecoverReport{Recovered: []string{}, DeletedSinceSnapshot: []string{}, Problems: []store.Problem{}}
	log := opts.Logger

	// 1. The newest snapshot that passes its checks.
	snaps, err := ListSnapshots(ctx, opts.From, fromRS)
	if err != nil {
		return nil, err
	}
	for _, s := range snaps {
		path, err := FetchSnapshot(ctx, fromRS, s, dir)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			rep.add(ProblemSnapshotUnusable, opts.From+":"+s.Name, "%v", err)
			continue
		}
		if err := durable.Rename(path, opts.DBPath); err != nil {
			os.Remove(path)
			return nil, err
		}
		s := s
		rep.Snapshot = &s
		log.Info("recover: snapshot restored", "backend", opts.From, "name", s.Name, "bytes", s.Size)
		break
	}
	st, err := opts.Open(opts.DBPath)
	if err != nil {
		return nil, err
	}
	defer st.Close()

	// 2. Every record of every backend that keeps records, the
	// --from-backend first.
	m := New(st, opts.Backends, Options{Logger: log, Concurrency: opts.Concurrency})
	ids := make([]string, 0, len(m.records))
	for id := range m.records {
		if id != opts.From {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	ids = append([]string{opts.From}, ids...)
	type found struct {
		rec     *Record
		backend string
	}
	records := map[string]found{}            // record name -> first valid record
	recordOn := map[string]map[string]bool{} // record name -> backends holding one (valid or not)
	for _, id := range ids {
		recs, err := m.readAll(ctx, id)
		if err != nil {
			return nil, err
		}
		for _, sr := range recs {
			if recordOn[sr.name] == nil {
				recordOn[sr.name] = map[string]bool{}
			}
			recordOn[sr.name][id] = true
			subject := id + ":" + sr.name
			switch {
			case errors.Is(sr.err, ErrTampered):
				rep.add(ProblemRecordTampered, subject, "not imported: %v", sr.err)
				continue
			case sr.err != nil:
				rep.add(ProblemRecordInvalid, subject, "not imported: %v", sr.err)
				continue
			}
			if f, ok := records[sr.name]; ok {
				if !f.rec.Same(sr.rec) {
					rep.add(ProblemRecordConflict, subject, "differs from the record in %s, which is used", f.backend)
				}
				continue
			}
			records[sr.name] = found{rec: sr.rec, backend: id}
		}
	}
	log.Info("recover: records read", "records", len(records), "backends", len(ids))

	// 3. Every backend's content, by listing.
	held := map[string]map[string]int64{} // backend -> digest -> size
	for id, b := range opts.Backends {
		held[id] = map[string]int64{}
		if err := b.Walk(ctx, func(i backends.Info) error {
			held[id][i.Digest.String()] = i.Size
			return nil
		}); err != nil {
			return nil, fmt.Errorf("backend %s: list content: %w", id, err)
		}
	}

	// 4. The snapshot's packages: kept if some backend keeps a record of
	// them, else deleted since the snapshot.
	inDB := map[string]bool{}
	var dels []store.PackageDeletion
	var after store.PackageKey
	for {
		page, err := st.PackagePage(ctx, after, 1000)
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			break
		}
		after = store.PackageKey{Name: page[len(page)-1].Name, Version: page[len(page)-1].Version}
		for _, p := range page {
			rn := RecordName(p.Name, p.Version)
			inDB[rn] = true
			if len(recordOn[rn]) == 0 {
				if pending, err := st.RecordsPending(ctx, p.Name, p.Version); err != nil {
					return nil, err
				} else if pending {
					rep.add(ProblemKeptWithoutRecord, p.Name+"@"+p.Version,
						"no backend keeps a record of it, but its record was still to be written when the snapshot was taken: kept (delete it if it was deleted since)")
					continue
				}
				dels = append(dels, store.PackageDeletion{PackageKey: store.PackageKey{Name: p.Name, Version: p.Version},
					Deletion: store.Deletion{Reason: "recover: no backend keeps a manifest record of it any more (deleted after the snapshot)", By: "recovery"}})
				continue
			}
			if f, ok := records[rn]; ok && !RecordOf(p).Same(f.rec) {
				rep.add(ProblemRecordDiffers, f.backend+":"+rn, "the snapshot's package is kept; the record differs: %s", diffOf(p, f.rec))
			}
		}
	}
	if len(dels) > 0 {
		gone, err := st.DeletePackages(ctx, dels)
		if err != nil {
			return nil, err
		}
		for _, p := range gone {
			rep.DeletedSinceSnapshot = append(rep.DeletedSinceSnapshot, p.Name+"@"+p.Version)
		}
	}

	// 5. Records of packages the database lacks, whose content some
	// backend holds.
	var imports []store.Recovered
	for rn, f := range records {
		if inDB[rn] {
			continue
		}
		p := f.rec.Package()
		var missing []string
		for _, file := range p.Files {
			ok := false
			for id := range opts.Backends {
				if size, has := held[id][file.Digest]; has && size == file.Size {
					ok = true
					break
				}
			}
			if !ok {
				missing = append(missing, file.Path)
			}
		}
		if len(missing) > 0 {
			rep.add(ProblemContentMissing, p.Name+"@"+p.Version, "not imported: no backend holds the content of %v", missing)
			continue
		}
		imports = append(imports, store.Recovered{Package: p, RecordBackend: f.backend})
	}
	sort.Slice(imports, func(i, j int) bool {
		a, b := imports[i].Package, imports[j].Package
		if a.Seq != b.Seq {
			return a.Seq < b.Seq
		}
		return a.CreatedAt.Before(b.CreatedAt)
	})
	if _, err := st.ImportRecovered(ctx, imports); err != nil {
		return nil, err
	}
	for _, r := range imports {
		rep.Recovered = append(rep.Recovered, r.Package.Name+"@"+r.Package.Version)
	}

	// 6. Locations from the listings, for the content of every package.
	now := time.Now().UTC()
	var add []store.Location
	var drop []store.Ref
	var marks []store.PackageKey
	seen := map[string]bool{}
	after = store.PackageKey{}
	for {
		page, err := st.PackagePage(ctx, after, 1000)
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			break
		}
		after = store.PackageKey{Name: page[len(page)-1].Name, Version: page[len(page)-1].Version}
		digests := make([]string, 0, len(page))
		for _, p := range page {
			for _, f := range p.Files {
				digests = append(digests, f.Digest)
			}
		}
		locs, err := st.LocationsOf(ctx, digests)
		if err != nil {
			return nil, err
		}
		for _, p := range page {
			rn := RecordName(p.Name, p.Version)
			holdsAll := map[string]bool{}
			for id := range m.records {
				holdsAll[id] = true
			}
			for _, f := range p.Files {
				has := map[string]bool{}
				for _, l := range locs[f.Digest] {
					has[l.Backend] = true
				}
				for id := range opts.Backends {
					size, present := held[id][f.Digest]
					present = present && size == f.Size
					if !present {
						delete(holdsAll, id)
					}
					key := f.Digest + "\x00" + id
					if seen[key] {
						continue
					}
					seen[key] = true
					switch {
					case present && !has[id]:
						add = append(add, store.Location{Digest: f.Digest, Backend: id, Size: f.Size, Status: store.StatusStored, StoredAt: now})
					case !present && has[id]:
						drop = append(drop, store.Ref{Backend: id, Digest: f.Digest})
						rep.add(ProblemLocationGone, f.Digest+" on "+id, "the snapshot locates it there, the backend's listing does not have it (with %d bytes)", f.Size)
					}
				}
			}
			for id := range holdsAll {
				if !recordOn[rn][id] {
					// A backend holding all of it without its record: the
					// service writes it at its next start.
					marks = append(marks, store.PackageKey{Name: p.Name, Version: p.Version})
					break
				}
			}
		}
	}
	if err := st.ReconcileLocations(ctx, add, drop); err != nil {
		return nil, err
	}
	rep.LocationsCreated, rep.LocationsDropped = len(add), len(drop)
	if len(marks) > 0 {
		if err := st.MarkRecords(ctx, marks); err != nil {
			return nil, err
		}
	}
	count, err := st.Counts(ctx)
	if err != nil {
		return nil, err
	}
	rep.FromSnapshot = count["packages"] - len(rep.Recovered)
	rep.Took = time.Since(start)
	return rep, nil
}

// diffOf names the first difference between a package and a record.
func diffOf(p *store.Package, r *Record) string {
	rp := r.Package()
	if d := store.PackageDiff(p, &rp); d != "" {
		return d
	}
	return fmt.Sprintf("created_at/seq: %s/%d vs %s/%d", p.CreatedAt.UTC().Format(time.RFC3339Nano), p.Seq, r.CreatedAt.Format(time.RFC3339Nano), r.Seq)
}
