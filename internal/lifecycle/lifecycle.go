// Package lifecycle removes what the store no longer needs: packages
// (deleted by an operator, a producer or a retention policy), the content
// no package references any more (garbage collection, online and crash
// safe), objects the registry never knew (orphans, after a grace period)
// and old events.
//
// The safety argument of garbage collection is in docs/ARCHITECTURE.md
// ("Lifecycle"); in short: a location is removed in a write transaction
// that re-checks every reference (package index, upload refs and leases,
// open sessions' drafts) and records a delete intent in the same
// transaction; the backend object is deleted later under the object's key
// lock, after checking again that nothing references it; the intent is
// dropped only after the backend confirmed. A crash anywhere leaves either
// the location (nothing decided) or the intent (finished by the next run).
package lifecycle

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"artifactstore/backends"
	"artifactstore/store"
)

// Locker serialises deletes of an object with new references to it. The
// registry implements it with the key locks its upload sessions take
// while recording their refs.
type Locker interface {
	// LockKeys locks the objects and returns the function that unlocks
	// them. Locks are taken in a fixed order, so callers never deadlock.
	LockKeys(backend string, digests []string) func()
}

// Policy is the retention policy of one retention class. The zero Policy
// keeps everything.
type Policy struct {
	// KeepLast keeps the newest KeepLast versions of each package name in
	// the class (by publish order); older ones are deleted. 0: no limit.
	KeepLast int
	// MaxAge deletes versions published longer ago than this. 0: no limit.
	MaxAge time.Duration
	// KeepLabel protects versions carrying this label: "key=value", or
	// "key" for any value.
	KeepLabel string
	// NeverDelete keeps every version of the class, whatever else is set.
	NeverDelete bool
}

// Active reports whether the policy can delete anything.
func (p Policy) Active() bool { return !p.NeverDelete && (p.KeepLast > 0 || p.MaxAge > 0) }

// EventPolicy says how long events are kept.
type EventPolicy struct {
	// MaxAge applies to every event without an age of its own.
	MaxAge time.Duration
	// VerificationMaxAge applies to v1.storage.location_verified (the
	// bulk of the log); 0 means MaxAge.
	VerificationMaxAge time.Duration
	// SummaryMaxAge applies to run summaries (gc, retention and event
	// pruning runs); 0 means MaxAge.
	SummaryMaxAge time.Duration
}

// Summary event types: one per finished lifecycle run.
const (
	EventGCCompleted        = "v1.lifecycle.gc_completed"
	EventRetentionCompleted = "v1.lifecycle.retention_completed"
	EventEventsPruned       = "v1.lifecycle.events_pruned"
)

// Options configures a Manager.
type Options struct {
	Logger  *slog.Logger
	Metrics *Metrics
	// Now is the clock of retention ages and event pruning (tests).
	Now func() time.Time
	// Policies by retention class; a class without one is kept.
	Policies map[string]Policy
	// OrphanGrace is how long an object unknown to the registry must have
	// been seen by gc before `gc --orphans` deletes it. 0 means 7 days.
	OrphanGrace time.Duration
	Events      EventPolicy
	// EventFloor, if set, returns the lowest event sequence a consumer
	// still needs (a webhook subscription's position); pruning never
	// removes it or anything after it. 0 means no floor.
	EventFloor func(ctx context.Context) (uint64, error)
	// Concurrency is how many backend deletes run at once; 0 means 4.
	Concurrency int
	// Step, if set, is called at every step of gc and retention that
	// changes state ("gc.condemned", "gc.deleted", "gc.intent_dropped",
	// "retention.deleted", ...). Crash tests kill the process there.
	Step func(point string)
}

// Manager runs deletes, retention, garbage collection and event pruning.
// Safe for concurrent use; gc and retention runs are serialised.
type Manager struct {
	store    *store.Store
	backends map[string]backends.Backend
	locker   Locker
	opts     Options
	log      *slog.Logger
	run      sync.Mutex // one gc or retention run at a time
}

// New builds a Manager over the store, the (instrumented) backends and the
// registry's key locks.
func New(st *store.Store, bs map[string]backends.Backend, locker Locker, opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.OrphanGrace <= 0 {
		opts.OrphanGrace = 7 * 24 * time.Hour
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.Events.MaxAge <= 0 {
		opts.Events.MaxAge = 30 * 24 * time.Hour
	}
	if opts.Events.VerificationMaxAge <= 0 {
		opts.Events.VerificationMaxAge = opts.Events.MaxAge
	}
	if opts.Events.SummaryMaxAge <= 0 {
		opts.Events.SummaryMaxAge = opts.Events.MaxAge
	}
	return &Manager{store: st, backends: bs, locker: locker, opts: opts, log: opts.Logger}
}

func (m *Manager) step(point string) {
	if m.opts.Step != nil {
		m.opts.Step(point)
	}
}

func newRunID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// DeletePackage deletes name@version now (record, version index, content
// references, and a v1.package.deleted event in one transaction). Its
// content is left to garbage collection, which removes what no other
// package needs. A missing package is store.ErrNotFound.
func (m *Manager) DeletePackage(ctx context.Context, name, version string, d store.Deletion) (*store.Package, error) {
	p, err := m.store.DeletePackage(ctx, name, version, d)
	if err != nil {
		return nil, err
	}
	m.opts.Metrics.packagesDeleted("api", 1)
	m.log.Info("package deleted", "package", name+"@"+version, "by", d.By, "reason", d.Reason)
	return p, nil
}

// Status is the lifecycle part of the health document.
type Status struct {
	LastGC         *GCReport        `json:"last_gc,omitempty"`
	LastRetention  *RetentionReport `json:"last_retention,omitempty"`
	LastEventPrune *PruneReport     `json:"last_event_prune,omitempty"`
	PendingDeletes int              `json:"pending_deletes"`
}

// Status returns the last runs and the number of pending delete intents.
func (m *Manager) Status(ctx context.Context) (*Status, error) {
	st := &Status{}
	var gc GCReport
	if ok, err := m.store.LifecycleRun(ctx, store.RunGC, &gc); err != nil {
		return nil, err
	} else if ok {
		st.LastGC = &gc
	}
	var rr RetentionReport
	if ok, err := m.store.LifecycleRun(ctx, store.RunRetention, &rr); err != nil {
		return nil, err
	} else if ok {
		rr.Deleted = nil // the health document carries counts, not lists
		st.LastRetention = &rr
	}
	var pr PruneReport
	if ok, err := m.store.LifecycleRun(ctx, store.RunEvents, &pr); err != nil {
		return nil, err
	} else if ok {
		st.LastEventPrune = &pr
	}
	in, err := m.store.PendingIntents(ctx)
	if err != nil {
		return nil, err
	}
	st.PendingDeletes = len(in)
	return st, nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func wrapBackend(id string, err error) error { return fmt.Errorf("backend %s: %w", id, err) }
