package recovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"artifactstore/backends"
	"artifactstore/internal/digest"
	"artifactstore/store"
)

// Options configures a Manager.
type Options struct {
	Logger *slog.Logger
	// RetryAfter is how long the outbox worker waits after a failed write
	// before it tries again. 0 means 5s.
	RetryAfter time.Duration
	// Concurrency is how many packages' records are written at once. 0
	// means 32: a record write is small and spends most of its time
	// waiting (for a flush shared with other writes on a local backend,
	// for a round trip on S3), so the worker needs about as many at once
	// as publishes arrive at once to keep up with them. With 8, a third
	// of the records of 3,000 publishes from 32 producers were still
	// pending at the last reply (docs/PERFORMANCE.md).
	Concurrency int
	// Step, if set, is called at the steps of record writing and
	// snapshots that crash tests kill the process at.
	Step func(point string)
	// Metrics, if set, counts record writes and snapshots.
	Metrics *Metrics
}

// Manager keeps the manifest records in the backends in step with the
// database. Safe for concurrent use.
type Manager struct {
	store *store.Store
	// all are every configured backend; records are those of them that
	// keep records (backends.RecordStore), by id.
	all     map[string]backends.Backend
	records map[string]backends.RecordStore
	opts    Options
	log     *slog.Logger
	drainMu sync.Mutex // one drain at a time
	snapMu  sync.Mutex // one snapshot at a time

	snapErrMu sync.Mutex
	snapErr   string // the last snapshot attempt's error, if it failed
	snapErrAt time.Time
}

// New builds a Manager over the store and the (instrumented) backends.
func New(st *store.Store, bs map[string]backends.Backend, opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = 5 * time.Second
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 32
	}
	m := &Manager{store: st, all: bs, records: map[string]backends.RecordStore{}, opts: opts, log: opts.Logger}
	for id, b := range bs {
		if rs, ok := backends.AsRecordStore(b); ok {
			m.records[id] = rs
		}
	}
	return m
}

func (m *Manager) step(point string) {
	if m.opts.Step != nil {
		m.opts.Step(point)
	}
}

// Run drains the record outbox now and after every commit or delete (the
// store's event notification), retrying failed writes every RetryAfter,
// until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	for {
		notify := m.store.EventNotify()
		_, err := m.Drain(ctx)
		if ctx.Err() != nil {
			return
		}
		var retry <-chan time.Time
		var timer *time.Timer
		if err != nil {
			m.log.Warn("writing manifest records failed; retrying", "err", err, "retry_after", m.opts.RetryAfter.String())
			timer = time.NewTimer(m.opts.RetryAfter)
			retry = timer.C
		}
		select {
		case <-ctx.Done():
		case <-notify:
		case <-retry:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// Drain writes or removes the records of every package in the outbox and
// returns how many entries it finished. Entries whose writes failed stay
// for the next pass; the error joins their causes.
func (m *Manager) Drain(ctx context.Context) (int, error) {
	m.drainMu.Lock()
	defer m.drainMu.Unlock()
	total := 0
	var errs []error
	var after store.PackageKey
	for {
		todo, err := m.store.PendingRecords(ctx, after, 512)
		if err != nil {
			return total, err
		}
		if len(todo) == 0 {
			return total, errors.Join(errs...)
		}
		after = todo[len(todo)-1].PackageKey
		done := make([]store.OutboxEntry, 0, len(todo))
		var mu sync.Mutex
		sem := make(chan struct{}, m.opts.Concurrency)
		var wg sync.WaitGroup
		for _, e := range todo {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				err := m.sync(ctx, e)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if len(errs) < 10 {
						errs = append(errs, fmt.Errorf("%s@%s: %w", e.Name, e.Version, err))
					}
					return
				}
				done = append(done, e)
			}()
		}
		wg.Wait()
		if err := ctx.Err(); err != nil {
			return total, err
		}
		m.step("records.written")
		if err := m.store.DoneRecords(ctx, done); err != nil {
			return total, err
		}
		total += len(done)
	}
}

// Flush drains until the outbox is empty or ctx ends.
func (m *Manager) Flush(ctx context.Context) error {
	for {
		n, err := m.Drain(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}

// Holders returns the ids of the record-keeping backends that hold all
// of p's content (have a location for every one of its files), sorted.
func (m *Manager) Holders(ctx context.Context, p *store.Package) ([]string, error) {
	digests := make([]string, 0, len(p.Files))
	for _, f := range p.Files {
		digests = append(digests, f.Digest)
	}
	locs, err := m.store.LocationsOf(ctx, digests)
	if err != nil {
		return nil, err
	}
	count := map[string]int{}
	seen := map[string]bool{}
	for _, f := range p.Files {
		if seen[f.Digest] {
			continue
		}
		seen[f.Digest] = true
		for _, l := range locs[f.Digest] {
			if _, ok := m.records[l.Backend]; ok {
				count[l.Backend]++
			}
		}
	}
	var out []string
	for id, n := range count {
		if n == len(seen) {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out, nil
}

// sync makes the records of one package match the database: written to
// every backend that holds its content, removed everywhere when it is
// gone, and removed from the other backends when it was deleted since
// (it may have been published again elsewhere).
func (m *Manager) sync(ctx context.Context, e store.OutboxEntry) error {
	name := RecordName(e.Name, e.Version)
	p, err := m.store.GetPackage(ctx, e.Name, e.Version)
	if errors.Is(err, store.ErrNotFound) {
		p = nil
	} else if err != nil {
		return err
	}
	holders := map[string]bool{}
	var errs []error
	if p != nil {
		ids, err := m.Holders(ctx, p)
		if err != nil {
			return err
		}
		body := RecordOf(p).Encode()
		d := digest.FromBytes(body)
		for _, id := range ids {
			holders[id] = true
			m.step("records.put")
			err := m.records[id].PutRecord(ctx, name, d, int64(len(body)), bytes.NewReader(body))
			m.opts.Metrics.recordWrite(id, err)
			if err != nil {
				errs = append(errs, fmt.Errorf("backend %s: %w", id, err))
			}
		}
	}
	if p == nil || e.Deleted {
		for id, rs := range m.records {
			if holders[id] {
				continue
			}
			err := rs.DeleteRecord(ctx, name)
			m.opts.Metrics.recordWrite(id, err)
			if err != nil {
				errs = append(errs, fmt.Errorf("backend %s: %w", id, err))
			}
		}
	}
	return errors.Join(errs...)
}
