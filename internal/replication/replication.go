// Package replication keeps the copies the routing rules ask for: it
// writes pending copies (a publish that committed with fewer than all of
// its rule's backends, min_copies), and repairs a copy that verification
// or a verified read found failed (mismatch, missing, unreadable) from a
// verified copy on another backend (one whose last deep check matched). Every copy goes through
// registry.CopyContent: read through the digest-checking reader, written
// with the backend's Replace, read back and hashed, recorded under leases
// that keep garbage collection away. Copies share the byte-rate budget of
// deep verification.
package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"artifactstore/internal/digest"
	"artifactstore/internal/registry"
	"artifactstore/store"
)

// Options configures a Manager.
type Options struct {
	Logger  *slog.Logger
	Metrics *Metrics
	// Limiter is the byte-rate budget copies are read under (the one deep
	// verification uses); nil means no cap.
	Limiter *rate.Limiter
	// RetryInterval is the longest wait before a copy that failed is
	// tried again (the wait doubles from one second up to it). 0 means a
	// minute.
	RetryInterval time.Duration
	// MaxPerPass bounds the pending copies and failed locations one pass
	// looks at. 0 means 10,000.
	MaxPerPass int
	// MigrationPage is how many packages a migration takes at a time
	// (its cursor is saved after each). 0 means 500.
	MigrationPage int
}

// Manager runs passes over pending copies and failed locations. Safe for
// concurrent use; passes are serialised.
type Manager struct {
	reg   *registry.Registry
	store *store.Store
	opts  Options
	log   *slog.Logger

	pass      sync.Mutex // one pass at a time
	migrating sync.Mutex // one migration at a time
	mu        sync.Mutex
	wait      map[string]retry // digest \x00 backend -> when to try again
}

type retry struct {
	at    time.Time
	delay time.Duration
}

// New builds a Manager over the registry (which owns the backends) and its
// store.
func New(reg *registry.Registry, opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = time.Minute
	}
	if opts.MaxPerPass <= 0 {
		opts.MaxPerPass = 10000
	}
	if opts.MigrationPage <= 0 {
		opts.MigrationPage = defaultMigrationPage
	}
	return &Manager{reg: reg, store: reg.Store(), opts: opts, log: opts.Logger, wait: map[string]retry{}}
}

// Item is one copy a pass tried.
type Item struct {
	Digest string `json:"digest"`
	Target string `json:"target"`
	Source string `json:"source,omitempty"`
	// Kind is "pending" (a copy the rule asks for) or "repair" (a failed
	// location rewritten from a good copy).
	Kind string `json:"kind"`
	// Result: "created", "repaired", "unchanged", "no_source" (no copy
	// elsewhere to copy from: a repair needs a verified one), "not_referenced" (the content is being deleted),
	// "failed".
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
	Bytes  int64  `json:"bytes,omitempty"`
}

// Report is the outcome of one pass.
type Report struct {
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	// Completed pending copies, Repaired failed locations, Failed copies
	// (tried, not done), Unrepairable items without a source (a failed
	// location needs a verified copy elsewhere, a pending copy a usable
	// one), Deferred items waiting for their retry time.
	Completed    int    `json:"completed"`
	Repaired     int    `json:"repaired"`
	Failed       int    `json:"failed"`
	Unrepairable int    `json:"unrepairable"`
	Deferred     int    `json:"deferred"`
	Items        []Item `json:"items"`
}

// Run makes passes until ctx ends: at once, whenever events are appended
// (a failed verdict is one), and every second while retries are due.
func (m *Manager) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		notify := m.store.EventNotify()
		if _, err := m.Pass(ctx, false); err != nil && ctx.Err() == nil {
			m.log.Warn("replication pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-notify:
			// Let a burst of events (a verification run) settle.
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		case <-tick.C:
			if !m.due() {
				continue
			}
		}
	}
}

// due reports whether some deferred item's retry time has come. Items
// never tried are found by the next pass anyway (an event announces
// each).
func (m *Manager) due() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	for _, r := range m.wait {
		if !now.Before(r.at) {
			return true
		}
	}
	return false
}

// Pass tries every pending copy and every failed location once (force:
// even those waiting for a retry) and returns what it did. The error is
// only for a pass that could not run (the database, a cancelled ctx).
func (m *Manager) Pass(ctx context.Context, force bool) (*Report, error) {
	m.pass.Lock()
	defer m.pass.Unlock()
	rep := &Report{StartedAt: time.Now().UTC(), Items: []Item{}}
	defer func() { rep.FinishedAt = time.Now().UTC() }()
	pending, _, err := m.store.PendingCopies(ctx, m.opts.MaxPerPass)
	if err != nil {
		return rep, err
	}
	for _, p := range pending {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if _, ok := m.reg.Backend(p.Backend); !ok {
			continue // a backend no longer configured
		}
		m.try(ctx, rep, force, "pending", p.Digest, p.Backend)
	}
	failed, _, err := m.store.FailedLocations(ctx, m.opts.MaxPerPass)
	if err != nil {
		return rep, err
	}
	for _, l := range failed {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if _, ok := m.reg.Backend(l.Backend); !ok {
			continue
		}
		m.try(ctx, rep, force, "repair", l.Digest, l.Backend)
	}
	return rep, ctx.Err()
}

func (m *Manager) try(ctx context.Context, rep *Report, force bool, kind, ds, target string) {
	key := ds + "\x00" + target
	m.mu.Lock()
	r, waiting := m.wait[key]
	m.mu.Unlock()
	if waiting && !force && time.Now().Before(r.at) {
		rep.Deferred++
		return
	}
	d, err := digest.Parse(ds)
	if err != nil {
		return
	}
	// A repair copies only from a copy whose last deep check matched; a
	// pending copy from any usable one (the bytes are checked either way).
	res, err := m.reg.CopyContent(ctx, d, target, registry.CopyOptions{Reason: kind, Limiter: m.opts.Limiter, Verify: true, VerifiedSource: kind == "repair"})
	it := Item{Digest: ds, Target: target, Kind: kind, Source: res.Source, Bytes: res.Bytes}
	switch {
	case ctx.Err() != nil:
		return
	case errors.Is(err, store.ErrNotReferenced):
		// No package needs the content: gc removes it; nothing to copy.
		it.Result = "not_referenced"
		if kind == "pending" {
			if err := m.store.DropPendingCopy(ctx, ds, target); err != nil {
				m.log.Warn("dropping a pending copy failed", "digest", ds, "backend", target, "err", err)
			}
		}
		m.forget(key)
	case errors.Is(err, registry.ErrNoSource):
		// Not deferred: finding out costs one read, and the next
		// verification that passes elsewhere (an event) makes it possible.
		it.Result, it.Error = "no_source", err.Error()
		rep.Unrepairable++
	case err != nil:
		it.Result, it.Error = "failed", err.Error()
		rep.Failed++
		m.opts.Metrics.failed(target, kind)
		m.log.Warn("copy failed; it will be retried", "kind", kind, "digest", ds, "target", target, "err", err)
		m.later(key)
	default:
		m.forget(key)
		switch res.Outcome {
		case store.CopyCreated:
			it.Result = "created"
			rep.Completed++
		case store.CopyRepaired:
			it.Result = "repaired"
			rep.Repaired++
			m.log.Info("failed location repaired from another copy", "digest", ds, "source", res.Source, "target", target)
		default:
			it.Result = "unchanged"
		}
		m.opts.Metrics.copied(res, kind)
	}
	rep.Items = append(rep.Items, it)
}

// later schedules the next try of key: one second after the first
// failure, doubling up to RetryInterval.
func (m *Manager) later(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.wait[key]
	r.delay = min(max(2*r.delay, time.Second), m.opts.RetryInterval)
	r.at = time.Now().Add(r.delay)
	m.wait[key] = r
}

func (m *Manager) forget(key string) {
	m.mu.Lock()
	delete(m.wait, key)
	m.mu.Unlock()
}

// String summarises a report for people.
func (r *Report) String() string {
	return fmt.Sprintf("%d pending copies completed, %d failed locations repaired, %d failed, %d without a usable copy elsewhere, %d waiting for a retry",
		r.Completed, r.Repaired, r.Failed, r.Unrepairable, r.Deferred)
}
