package lifecycle

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"artifactstore/backends"
	"artifactstore/internal/digest"
	"artifactstore/store"
)

// GCOptions selects what a garbage collection run does.
type GCOptions struct {
	// DryRun reports what would be deleted and changes nothing.
	DryRun bool
	// Orphans also deletes objects the registry does not know, once gc
	// has seen them for the orphan grace period.
	Orphans bool
}

// GCBackend is one backend's part of a gc run.
type GCBackend struct {
	// Objects and Bytes deleted (a dry run: would be deleted) because no
	// package needs their content.
	Objects int64 `json:"objects"`
	Bytes   int64 `json:"bytes"`
	// Failed deletes stay recorded as intents for the next run.
	Failed int `json:"failed"`
	// Orphans found, deleted, and still within the grace period.
	OrphansFound   int   `json:"orphans_found,omitempty"`
	OrphansDeleted int   `json:"orphans_deleted,omitempty"`
	OrphanBytes    int64 `json:"orphan_bytes_deleted,omitempty"`
	OrphansWaiting int   `json:"orphans_waiting,omitempty"`
	// Reclaimable is what no package needs but the run left (content an
	// open upload session still counts on, failed deletes): bytes gc can
	// still free. In a dry run it equals Bytes.
	Reclaimable int64 `json:"reclaimable_bytes"`
}

// GCReport is the result of one gc run.
type GCReport struct {
	RunID      string                `json:"run_id"`
	DryRun     bool                  `json:"dry_run"`
	Orphans    bool                  `json:"orphans"`
	StartedAt  time.Time             `json:"started_at"`
	FinishedAt time.Time             `json:"finished_at"`
	Backends   map[string]*GCBackend `json:"backends"`
	// Resumed counts delete intents left by an earlier, interrupted run
	// that this run finished.
	Resumed int `json:"resumed"`
	// Cancelled counts decided deletes that were called off because the
	// content was published again before its object was deleted.
	Cancelled int    `json:"cancelled"`
	Error     string `json:"error,omitempty"`
}

func (r *GCReport) backend(id string) *GCBackend {
	b := r.Backends[id]
	if b == nil {
		b = &GCBackend{}
		r.Backends[id] = b
	}
	return b
}

func (r *GCReport) deletedOrphans() bool {
	for _, b := range r.Backends {
		if b.OrphansDeleted > 0 || b.Failed > 0 {
			return true
		}
	}
	return false
}

// Totals returns the objects and bytes deleted over all backends.
func (r *GCReport) Totals() (objects, bytes int64) {
	for _, b := range r.Backends {
		objects += b.Objects
		bytes += b.Bytes
	}
	return
}

// condemnBatch bounds the locations removed per write transaction.
const condemnBatch = 500

// GC runs garbage collection once: it finishes delete intents an earlier
// run left, then removes every location whose content no package, open
// upload session or lease needs and deletes its object, and (with
// Orphans) deletes orphans past their grace period. Publishes go on
// meanwhile. A dry run only reports, per backend, what would be freed.
func (m *Manager) GC(ctx context.Context, o GCOptions) (*GCReport, error) {
	m.run.Lock()
	defer m.run.Unlock()
	return m.gc(ctx, o)
}

func (m *Manager) gc(ctx context.Context, o GCOptions) (*GCReport, error) {
	rep := &GCReport{RunID: newRunID(), DryRun: o.DryRun, Orphans: o.Orphans, StartedAt: time.Now().UTC(), Backends: map[string]*GCBackend{}}
	for id := range m.backends {
		rep.backend(id)
	}
	err := m.collect(ctx, o, rep)
	if err == nil && o.Orphans {
		err = m.orphans(ctx, o, rep)
	}
	if err == nil {
		err = m.measureReclaimable(ctx, rep)
	}
	rep.FinishedAt = time.Now().UTC()
	rep.Error = errString(err)
	if o.DryRun {
		m.opts.Metrics.Reclaimable(rep)
		return rep, err
	}
	m.opts.Metrics.gcRun(rep, err)
	// A run that changed nothing is recorded without an event, so a gc
	// run often on an idle store does not grow the event log by itself.
	typ := EventGCCompleted
	if objs, _ := rep.Totals(); objs == 0 && rep.Cancelled == 0 && rep.Resumed == 0 && !rep.deletedOrphans() && err == nil {
		typ = ""
	}
	if rerr := m.store.RecordLifecycleRun(context.WithoutCancel(ctx), store.RunGC, typ, rep); rerr != nil && err == nil {
		err = rerr
	}
	objs, bytes := rep.Totals()
	m.log.Info("garbage collection finished", "run_id", rep.RunID, "objects", objs, "bytes", bytes,
		"resumed", rep.Resumed, "cancelled", rep.Cancelled, "err", err)
	return rep, err
}

func (m *Manager) collect(ctx context.Context, o GCOptions, rep *GCReport) error {
	pending, err := m.store.PendingIntents(ctx)
	if err != nil {
		return err
	}
	if o.DryRun {
		for _, in := range pending {
			b := rep.backend(in.Backend)
			b.Objects++
			b.Bytes += in.Size
		}
	} else if len(pending) > 0 {
		rep.Resumed = len(pending)
		if err := m.deleteIntents(ctx, pending, rep); err != nil {
			return err
		}
	}
	cands, err := m.store.Collectable(ctx)
	if err != nil {
		return err
	}
	if o.DryRun {
		for _, l := range cands {
			b := rep.backend(l.Backend)
			b.Objects++
			b.Bytes += l.Size
		}
		return nil
	}
	var refs []store.Ref
	for _, l := range cands {
		if _, ok := m.backends[l.Backend]; !ok {
			continue // a backend no longer configured: nothing can delete it
		}
		refs = append(refs, store.Ref{Backend: l.Backend, Digest: l.Digest})
	}
	for len(refs) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(len(refs), condemnBatch)
		intents, err := m.store.Condemn(ctx, refs[:n], rep.RunID)
		if err != nil {
			return err
		}
		refs = refs[n:]
		m.step("gc.condemned")
		if err := m.deleteIntents(ctx, intents, rep); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// deleteIntents deletes the objects of intents, a few at a time, then
// drops the intents of the confirmed and called-off deletes in one
// transaction (a crash before that only makes the next run repeat
// deletes, which are idempotent).
func (m *Manager) deleteIntents(ctx context.Context, intents []store.GCIntent, rep *GCReport) error {
	var mu sync.Mutex
	var done []store.Ref
	work := make(chan store.GCIntent)
	var wg sync.WaitGroup
	for range m.opts.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for in := range work {
				deleted, err := m.deleteIntent(ctx, in)
				mu.Lock()
				b := rep.backend(in.Backend)
				switch {
				case err != nil:
					b.Failed++
					m.log.Warn("gc could not delete an object; its intent stays for the next run", "backend", in.Backend, "digest", in.Digest, "err", err)
				case deleted:
					b.Objects++
					b.Bytes += in.Size
				default:
					rep.Cancelled++
				}
				if err == nil {
					done = append(done, in.Ref())
				}
				mu.Unlock()
			}
		}()
	}
	for _, in := range intents {
		if ctx.Err() != nil {
			break
		}
		work <- in
	}
	close(work)
	wg.Wait()
	if len(done) == 0 {
		return nil
	}
	if err := m.store.DropIntents(context.WithoutCancel(ctx), done); err != nil {
		return err
	}
	m.step("gc.intents_dropped")
	return nil
}

// deleteIntent deletes one condemned object unless it is referenced
// again. deleted is false when the delete was called off (the content was
// published again meanwhile).
func (m *Manager) deleteIntent(ctx context.Context, in store.GCIntent) (deleted bool, err error) {
	b, ok := m.backends[in.Backend]
	if !ok {
		return false, wrapBackend(in.Backend, errors.New("not configured"))
	}
	d, err := digest.Parse(in.Digest)
	if err != nil {
		return false, err
	}
	unlock := m.locker.LockKeys(in.Backend, []string{in.Digest})
	defer unlock()
	wanted, err := m.store.IntentWanted(ctx, in.Ref())
	if err != nil || !wanted {
		return false, err
	}
	m.step("gc.deleting")
	if err := b.Delete(ctx, d); err != nil {
		return false, wrapBackend(in.Backend, err)
	}
	m.step("gc.deleted")
	return true, nil
}

// orphans walks every backend for objects the registry does not know,
// records when each was first seen, and deletes those seen longer ago
// than the grace period (never in a dry run).
func (m *Manager) orphans(ctx context.Context, o GCOptions, rep *GCReport) error {
	ids := make([]string, 0, len(m.backends))
	for id := range m.backends {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	now := m.opts.Now().UTC()
	for _, id := range ids {
		b := m.backends[id]
		found := map[string]int64{}
		if err := b.Walk(ctx, func(i backends.Info) error {
			found[i.Digest.String()] = i.Size
			return nil
		}); err != nil {
			return wrapBackend(id, err)
		}
		br := rep.backend(id)
		if o.DryRun {
			for d := range found {
				unknown, err := m.store.OrphanStillUnknown(ctx, id, d)
				if err != nil {
					return err
				}
				if unknown {
					br.OrphansFound++
					br.OrphansWaiting++
				}
			}
			continue
		}
		recs, err := m.store.NoteOrphans(ctx, id, found, now)
		if err != nil {
			return err
		}
		br.OrphansFound = len(recs)
		for _, rec := range recs {
			if now.Sub(rec.FirstSeen) < m.opts.OrphanGrace {
				br.OrphansWaiting++
				continue
			}
			d, err := digest.Parse(rec.Digest)
			if err != nil {
				continue
			}
			unlock := m.locker.LockKeys(id, []string{rec.Digest})
			unknown, err := m.store.OrphanStillUnknown(ctx, id, rec.Digest)
			if err == nil && unknown {
				err = b.Delete(ctx, d)
			}
			unlock()
			if err != nil {
				br.Failed++
				m.log.Warn("gc could not delete an orphan", "backend", id, "digest", rec.Digest, "err", err)
				continue
			}
			if unknown {
				br.OrphansDeleted++
				br.OrphanBytes += rec.Size
			}
			if err := m.store.ForgetOrphan(ctx, id, rec.Digest); err != nil {
				return err
			}
		}
	}
	return nil
}

// measureReclaimable fills each backend's Reclaimable: what is still
// collectable (after a real run), plus pending intents.
func (m *Manager) measureReclaimable(ctx context.Context, rep *GCReport) error {
	if rep.DryRun {
		for _, b := range rep.Backends {
			b.Reclaimable = b.Bytes
		}
		return nil
	}
	cands, err := m.store.Collectable(ctx)
	if err != nil {
		return err
	}
	pending, err := m.store.PendingIntents(ctx)
	if err != nil {
		return err
	}
	for _, l := range cands {
		rep.backend(l.Backend).Reclaimable += l.Size
	}
	for _, in := range pending {
		rep.backend(in.Backend).Reclaimable += in.Size
	}
	return nil
}
