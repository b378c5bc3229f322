package replication

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"artifactstore/internal/digest"
	"artifactstore/internal/registry"
	"artifactstore/store"
)

// MigrateOptions selects what a storage migration moves.
type MigrateOptions struct {
	// From and To: copy the content of matching packages that has a
	// location on From to To.
	From, To string
	// ByRules instead: give the content of matching packages a copy on
	// every backend its package's routing rule names now.
	ByRules bool
	// Producer and RetentionClass select packages (path.Match globs;
	// empty matches any).
	Producer, RetentionClass string
	// DeleteSource removes, once the copy is verified and recorded, the
	// copy on From (ByRules: every copy on a backend that no rule of a
	// package holding the content names).
	DeleteSource bool
	// DryRun counts what would be copied and deleted, changing nothing.
	DryRun bool
	// Concurrency is how many contents move at once (default 4).
	Concurrency int
}

// ErrMigrationRunning: a migration is already running in this process.
var ErrMigrationRunning = errors.New("a storage migration is already running")

// ErrBadMigration is a migration request that cannot run.
var ErrBadMigration = errors.New("invalid migration")

func (o MigrateOptions) validate(m *Manager) error {
	if o.ByRules == (o.From != "" || o.To != "") {
		return fmt.Errorf("%w: give --from and --to, or --by-rules", ErrBadMigration)
	}
	if !o.ByRules {
		if o.From == "" || o.To == "" {
			return fmt.Errorf("%w: --from and --to go together", ErrBadMigration)
		}
		if o.From == o.To {
			return fmt.Errorf("%w: --from and --to name the same backend %q", ErrBadMigration, o.From)
		}
		for _, id := range []string{o.From, o.To} {
			if _, ok := m.reg.Backend(id); !ok {
				return fmt.Errorf("%w: no backend %q (configured: %s)", ErrBadMigration, id, strings.Join(m.reg.BackendIDs(), ", "))
			}
		}
	}
	for _, g := range []struct{ name, v string }{{"producer", o.Producer}, {"retention class", o.RetentionClass}} {
		if _, err := path.Match(g.v, ""); err != nil {
			return fmt.Errorf("%w: bad %s glob %q: %v", ErrBadMigration, g.name, g.v, err)
		}
	}
	if o.Concurrency < 0 || o.Concurrency > 64 {
		return fmt.Errorf("%w: concurrency %d is not within 1..64", ErrBadMigration, o.Concurrency)
	}
	return nil
}

// key names the selection: a run with the same selection resumes it.
func (o MigrateOptions) key() string {
	mode := "from-to"
	if o.ByRules {
		mode = "by-rules"
	}
	return strings.Join([]string{mode, o.From, o.To, o.Producer, o.RetentionClass, fmt.Sprint(o.DeleteSource)}, "\x00")
}

func globMatch(pattern, v string) bool {
	if pattern == "" {
		return true
	}
	ok, _ := path.Match(pattern, v)
	return ok
}

// defaultMigrationPage is how many packages a migration takes at a time
// (Options.MigrationPage); the cursor is saved after each page (a resumed
// run redoes at most one page, finding what it copied in place).
const defaultMigrationPage = 500

// Migrate moves content between backends while publishes and reads go
// on: for each matching package (in key order, resuming an interrupted
// run of the same selection after its last saved page), each content to
// move is copied with registry.CopyContent (digest-checked, written, read
// back, recorded under gc leases, under the deep-verification byte
// budget), and only then, with DeleteSource, the source copy is removed
// with registry.DropCopy (never the last usable copy, never one an upload
// counts on). Running it again is harmless: what is in place already is
// counted as present. progress, if set, receives the run after every
// page. A dry run changes nothing and reports what would move.
func (m *Manager) Migrate(ctx context.Context, o MigrateOptions, progress func(store.MigrationRun)) (*store.MigrationRun, error) {
	if err := o.validate(m); err != nil {
		return nil, err
	}
	if o.Concurrency == 0 {
		o.Concurrency = 4
	}
	if !m.migrating.TryLock() {
		return nil, ErrMigrationRunning
	}
	defer m.migrating.Unlock()
	key := o.key()
	run := &store.MigrationRun{From: o.From, To: o.To, ByRules: o.ByRules, Producer: o.Producer,
		RetentionClass: o.RetentionClass, DeleteSource: o.DeleteSource, StartedAt: time.Now().UTC()}
	var state store.MigrationState
	if !o.DryRun {
		var err error
		if state, err = m.store.GetMigration(ctx, key); err != nil {
			return nil, err
		}
		if state.Current != nil {
			run = state.Current
			run.Resumed = true
			m.log.Info("resuming storage migration", "id", run.ID, "packages", run.Packages, "copied", run.Copied)
			// Deletes a crash left half done.
			if err := m.reg.FinishIntents(ctx, run.ID); err != nil {
				return run, err
			}
		} else {
			run.ID = newRunID()
		}
		state.Current = run
		if err := m.store.PutMigration(ctx, key, state); err != nil {
			return nil, err
		}
	}
	err := m.migrate(ctx, o, run, func() error {
		if !o.DryRun {
			if err := m.store.PutMigration(context.WithoutCancel(ctx), key, state); err != nil {
				return err
			}
		}
		if progress != nil {
			progress(*run)
		}
		return nil
	})
	if o.DryRun {
		return run, err
	}
	if err != nil {
		// Interrupted: the state stays current and the next run resumes.
		run.Error = err.Error()
		if perr := m.store.PutMigration(context.WithoutCancel(ctx), key, state); perr != nil {
			return run, errors.Join(err, perr)
		}
		return run, err
	}
	now := time.Now().UTC()
	run.FinishedAt, run.Error = &now, ""
	state.Current, state.Last = nil, run
	m.log.Info("storage migration finished", "id", run.ID, "packages", run.Packages, "copied", run.Copied,
		"bytes", run.CopiedBytes, "deleted", run.Deleted, "failed", run.Failed)
	return run, m.store.PutMigration(context.WithoutCancel(ctx), key, state)
}

// move is one content to move: copy to each of targets, then drop each
// of drops (keeping a copy on keep, when set).
type move struct {
	d       digest.Digest
	size    int64
	targets []string
	drops   []string
	keep    string
}

func (m *Manager) migrate(ctx context.Context, o MigrateOptions, run *store.MigrationRun, save func() error) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		pkgs, last, err := m.store.PackagesFrom(ctx, run.Cursor, m.opts.MigrationPage)
		if err != nil {
			return err
		}
		if len(pkgs) == 0 {
			return nil
		}
		moves, err := m.plan(ctx, o, pkgs)
		if err != nil {
			return err
		}
		run.Contents += len(moves)
		m.movePage(ctx, o, run, moves)
		if err := ctx.Err(); err != nil {
			return err // the page is done again on resume; what moved is present
		}
		run.Cursor = last
		run.Packages += len(pkgs)
		if err := save(); err != nil {
			return err
		}
	}
}

// plan lists the moves of one page of packages.
func (m *Manager) plan(ctx context.Context, o MigrateOptions, pkgs []*store.Package) ([]move, error) {
	var out []move
	seen := map[string]bool{}
	var all []string
	for _, p := range pkgs {
		for _, f := range p.Files {
			all = append(all, f.Digest)
		}
	}
	locsOf, err := m.store.LocationsOf(ctx, all)
	if err != nil {
		return nil, err
	}
	for _, p := range pkgs {
		if !globMatch(o.Producer, p.Producer) || !globMatch(o.RetentionClass, p.RetentionClass) {
			continue
		}
		for _, f := range p.Files {
			if seen[f.Digest] {
				continue
			}
			seen[f.Digest] = true
			d, err := digest.Parse(f.Digest)
			if err != nil {
				continue
			}
			locs := locsOf[f.Digest]
			has := func(backend string) bool {
				return slices.ContainsFunc(locs, func(l store.Location) bool { return l.Backend == backend })
			}
			mv := move{d: d, size: f.Size}
			if !o.ByRules {
				if !has(o.From) {
					continue
				}
				mv.targets, mv.keep = []string{o.To}, o.To
				if o.DeleteSource {
					mv.drops = []string{o.From}
				}
				out = append(out, mv)
				continue
			}
			mv.targets = m.reg.RouteOf(p.Producer, p.RetentionClass).Backends
			if o.DeleteSource {
				// A copy stays where any package holding the content wants it.
				wanted := map[string]bool{}
				holders, err := m.store.ReferencingPackages(ctx, f.Digest)
				if err != nil {
					return nil, err
				}
				for _, h := range holders {
					for _, b := range m.reg.RouteOf(h.Producer, h.RetentionClass).Backends {
						wanted[b] = true
					}
				}
				for _, l := range locs {
					if !wanted[l.Backend] {
						mv.drops = append(mv.drops, l.Backend)
					}
				}
			}
			needs := len(mv.drops) > 0
			for _, t := range mv.targets {
				if !has(t) {
					needs = true
				}
			}
			if needs {
				out = append(out, mv)
			}
		}
	}
	return out, nil
}

// movePage copies the page's contents (CopyMany: batched leases and
// records), then removes the source copies of the contents whose copies
// all succeeded (DropMany), and counts.
func (m *Manager) movePage(ctx context.Context, o MigrateOptions, run *store.MigrationRun, moves []move) {
	var items []registry.CopyItem
	var owner []int
	for i, mv := range moves {
		for _, t := range mv.targets {
			items = append(items, registry.CopyItem{Digest: mv.d, Target: t})
			owner = append(owner, i)
		}
	}
	ok := make([]bool, len(moves))
	for i := range ok {
		ok[i] = true
	}
	if o.DryRun {
		locs, err := m.store.LocationsOf(ctx, digestsOf(moves))
		if err != nil {
			run.Failed += len(moves)
			return
		}
		for j, it := range items {
			if slices.ContainsFunc(locs[it.Digest.String()], func(l store.Location) bool { return l.Backend == it.Target && !l.Failed() }) {
				run.Present++
			} else {
				run.Copied++
				run.CopiedBytes += moves[owner[j]].size
			}
		}
		for _, mv := range moves {
			run.Deleted += len(mv.drops)
			run.DeletedBytes += int64(len(mv.drops)) * mv.size
		}
		return
	}
	res := m.reg.CopyMany(ctx, items, registry.CopyOptions{Reason: "migration", Limiter: m.opts.Limiter, Verify: true}, o.Concurrency)
	for j, r := range res {
		switch {
		case ctx.Err() != nil:
			ok[owner[j]] = false
		case errors.Is(r.Err, store.ErrNotReferenced):
			ok[owner[j]] = false // deleted meanwhile: gc takes it
		case r.Err != nil:
			ok[owner[j]] = false
			run.Failed++
			m.log.Warn("migration copy failed; run the migration again to retry", "digest", r.Digest, "target", r.Target, "err", r.Err)
		case r.Outcome == store.CopyUnchanged:
			run.Present++
		default:
			m.opts.Metrics.copied(&r.CopyResult, "migration")
			run.Copied++
			run.CopiedBytes += r.Bytes
		}
	}
	if ctx.Err() != nil {
		return
	}
	// Drops, grouped by what must be kept (one DropMany each).
	byKeep := map[string][]store.Ref{}
	for i, mv := range moves {
		if !ok[i] {
			continue
		}
		for _, b := range mv.drops {
			byKeep[mv.keep] = append(byKeep[mv.keep], store.Ref{Backend: b, Digest: mv.d.String()})
		}
	}
	for keep, refs := range byKeep {
		for i, r := range m.reg.DropMany(ctx, refs, keep, run.ID, o.Concurrency) {
			switch {
			case ctx.Err() != nil:
				return
			case errors.Is(r.Err, store.ErrLastCopy), errors.Is(r.Err, store.ErrCopyInUse):
				run.Kept++
			case r.Err != nil:
				run.Failed++
				m.log.Warn("migration could not remove a source copy; run the migration again to retry", "digest", refs[i].Digest, "backend", refs[i].Backend, "err", r.Err)
			case r.Bytes > 0:
				run.Deleted++
				run.DeletedBytes += r.Bytes
			}
		}
	}
}

func digestsOf(moves []move) []string {
	out := make([]string, len(moves))
	for i, mv := range moves {
		out[i] = mv.d.String()
	}
	return out
}

func newRunID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
