package lifecycle

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"artifactstore/store"
)

// Doomed is a package a retention policy deletes, and why.
type Doomed struct {
	store.PackageKey
	RetentionClass string    `json:"retention_class"`
	CreatedAt      time.Time `json:"created_at"`
	Reason         string    `json:"reason"`
}

// RetentionReport is the result of one retention run.
type RetentionReport struct {
	RunID      string    `json:"run_id"`
	DryRun     bool      `json:"dry_run"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	// Deleted lists the packages deleted (a dry run: that would be).
	Deleted      []Doomed `json:"deleted"`
	DeletedCount int      `json:"deleted_count"`
	// Kept counts packages of classes with a policy that stay.
	Kept int `json:"kept"`
	// Freed is, per backend, what deleting them lets gc reclaim: content
	// another package still references is not counted.
	Freed map[string]store.Freed `json:"freed"`
	// GC is the garbage collection that followed (none in a dry run).
	GC    *GCReport `json:"gc,omitempty"`
	Error string    `json:"error,omitempty"`
}

// retentionBatch bounds the packages deleted per write transaction.
const retentionBatch = 100

// Plan returns the packages the policies delete now, oldest first within
// each name, and how many packages of policed classes stay.
func (m *Manager) Plan(ctx context.Context) ([]Doomed, int, error) {
	now := m.opts.Now()
	classes := make([]string, 0, len(m.opts.Policies))
	for c, p := range m.opts.Policies {
		if p.Active() {
			classes = append(classes, c)
		}
	}
	sort.Strings(classes)
	var doomed []Doomed
	kept := 0
	for _, class := range classes {
		pol := m.opts.Policies[class]
		byName := map[string][]*store.Package{}
		cursor := ""
		for {
			page, err := m.store.ListPackages(ctx, store.Filter{RetentionClass: class}, cursor, 1000)
			if err != nil {
				return nil, 0, err
			}
			for _, p := range page.Packages {
				byName[p.Name] = append(byName[p.Name], p)
			}
			if page.Next == "" {
				break
			}
			cursor = page.Next
		}
		names := make([]string, 0, len(byName))
		for n := range byName {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			ps := byName[n]
			sort.Slice(ps, func(i, j int) bool { return ps[i].Seq > ps[j].Seq }) // newest first
			for i, p := range ps {
				reason := verdict(pol, i, p, now)
				if reason == "" {
					kept++
					continue
				}
				doomed = append(doomed, Doomed{PackageKey: store.PackageKey{Name: p.Name, Version: p.Version},
					RetentionClass: class, CreatedAt: p.CreatedAt, Reason: "retention class " + class + ": " + reason})
			}
		}
	}
	return doomed, kept, nil
}

// verdict says why the policy deletes the package at rank i (0 = newest of
// its name in the class), or "" to keep it.
func verdict(pol Policy, i int, p *store.Package, now time.Time) string {
	if pol.NeverDelete || hasLabel(p.Labels, pol.KeepLabel) {
		return ""
	}
	if pol.KeepLast > 0 && i >= pol.KeepLast {
		return fmt.Sprintf("not among the newest %d versions", pol.KeepLast)
	}
	if pol.MaxAge > 0 && now.Sub(p.CreatedAt) > pol.MaxAge {
		return "older than " + pol.MaxAge.String()
	}
	return ""
}

func hasLabel(labels map[string]string, sel string) bool {
	if sel == "" {
		return false
	}
	k, v, withValue := strings.Cut(sel, "=")
	got, ok := labels[k]
	return ok && (!withValue || got == v)
}

// ApplyRetention deletes what the policies say (a dry run only reports it
// with the bytes each backend would free) and then runs garbage
// collection, so the content only deleted packages used is gone when it
// returns.
func (m *Manager) ApplyRetention(ctx context.Context, dryRun bool) (*RetentionReport, error) {
	m.run.Lock()
	defer m.run.Unlock()
	rep := &RetentionReport{RunID: newRunID(), DryRun: dryRun, StartedAt: time.Now().UTC(), Deleted: []Doomed{}}
	err := m.applyRetention(ctx, dryRun, rep)
	rep.FinishedAt = time.Now().UTC()
	rep.Error = errString(err)
	rep.DeletedCount = len(rep.Deleted)
	if dryRun {
		return rep, err
	}
	m.opts.Metrics.retentionRun(rep, err)
	if rerr := m.store.RecordLifecycleRun(context.WithoutCancel(ctx), store.RunRetention, EventRetentionCompleted, rep); rerr != nil && err == nil {
		err = rerr
	}
	m.log.Info("retention applied", "run_id", rep.RunID, "deleted", rep.DeletedCount, "kept", rep.Kept, "err", err)
	return rep, err
}

func (m *Manager) applyRetention(ctx context.Context, dryRun bool, rep *RetentionReport) error {
	doomed, kept, err := m.Plan(ctx)
	if err != nil {
		return err
	}
	rep.Kept = kept
	keys := make([]store.PackageKey, len(doomed))
	for i, d := range doomed {
		keys[i] = d.PackageKey
	}
	if rep.Freed, err = m.store.FreedBy(ctx, keys); err != nil {
		return err
	}
	if dryRun {
		rep.Deleted = doomed
		return nil
	}
	for i := 0; i < len(doomed); i += retentionBatch {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch := doomed[i:min(i+retentionBatch, len(doomed))]
		dels := make([]store.PackageDeletion, len(batch))
		for j, d := range batch {
			dels[j] = store.PackageDeletion{PackageKey: d.PackageKey, Deletion: store.Deletion{Reason: d.Reason, By: "retention"}}
		}
		if _, err := m.store.DeletePackages(ctx, dels); err != nil {
			return err
		}
		rep.Deleted = append(rep.Deleted, batch...)
		m.opts.Metrics.packagesDeleted("retention", len(batch))
		m.step("retention.deleted")
	}
	gc, err := m.gc(ctx, GCOptions{})
	rep.GC = gc
	return err
}
