// Package verify re-reads stored objects and records a verdict for every
// storage location: verified, mismatch, missing or unreadable. A deep run
// re-hashes every byte under a byte-rate budget; a quick run checks
// existence and size only. Runs persist their progress, so a restarted
// process resumes a run instead of starting over, and a scheduler runs
// both kinds periodically.
package verify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"artifactstore/backends"
	"artifactstore/internal/digest"
	"artifactstore/store"
)

// Options configures an Engine.
type Options struct {
	// Concurrency is how many locations a run verifies at once.
	Concurrency int
	// BytesPerSecond caps deep-verification reads across all runs; 0 means
	// no cap.
	BytesPerSecond int64
	// Limiter, if set, is the budget itself (shared with other readers
	// such as replication) and BytesPerSecond is ignored.
	Limiter *rate.Limiter
	Logger  *slog.Logger
	Metrics *Metrics
	// MaxListed bounds the failures and orphans a report lists by digest.
	MaxListed int
}

// Engine runs verifications. Safe for concurrent use; runs of the same
// backend and mode are serialised.
type Engine struct {
	store    *store.Store
	backends map[string]backends.Backend
	opts     Options
	log      *slog.Logger
	limiter  *rate.Limiter
	mu       sync.Mutex
	locks    map[string]*sync.Mutex
}

// chunk is the read size of a deep check and the rate limiter's burst.
const chunk = 1 << 20

// New builds an Engine.
func New(st *store.Store, bs map[string]backends.Backend, opts Options) *Engine {
	if opts.Concurrency < 1 {
		opts.Concurrency = 1
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxListed <= 0 {
		opts.MaxListed = 1000
	}
	e := &Engine{store: st, backends: bs, opts: opts, log: opts.Logger, locks: map[string]*sync.Mutex{}}
	if opts.Limiter != nil {
		e.limiter = opts.Limiter
	} else if opts.BytesPerSecond > 0 {
		e.limiter = NewLimiter(opts.BytesPerSecond)
	}
	return e
}

// NewLimiter returns a byte-rate budget of bytesPerSecond (nil for 0: no
// cap) with the burst deep checks read in.
func NewLimiter(bytesPerSecond int64) *rate.Limiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(bytesPerSecond), chunk)
}

func (e *Engine) lock(backend, mode string) *sync.Mutex {
	e.mu.Lock()
	defer e.mu.Unlock()
	k := backend + "\x00" + mode
	if e.locks[k] == nil {
		e.locks[k] = &sync.Mutex{}
	}
	return e.locks[k]
}

// Report is the outcome of one run.
type Report struct {
	store.RunSummary
	Failures      []store.Verdict `json:"failures"`
	OrphanDigests []string        `json:"orphan_digests"`
	// StillFailed lists the backend's locations whose status is failed
	// when the run ends, whatever this run's verdicts were (a quick pass
	// does not clear a mismatch), with what to do; FailedTotal counts them.
	StillFailed []FailedLocation `json:"still_failed"`
	FailedTotal int              `json:"failed_total"`
	// IncompleteWrites are writes the backend holds that a killed process
	// started and never finished (backends.IncompleteWriter); the
	// service's cleanup aborts them once they are old enough.
	IncompleteWrites []backends.IncompleteWrite `json:"incomplete_writes,omitempty"`
}

// Hooks observe a run; either may be nil.
type Hooks struct {
	// Start receives the number of locations the run will check, from
	// the backend's counters less what a resumed run already checked
	// (locations added or removed during the run make it approximate).
	Start func(total int)
	// Verdict receives every verdict as it is recorded.
	Verdict func(store.Verdict)
}

// Run verifies every location on backend in the given mode, resuming an
// unfinished run of the same backend and mode. It walks the backend's
// locations a page at a time in digest order, going round from where the
// previous run stopped (see run), and records verdicts in batches; the
// hook and the report count only recorded verdicts.
// It returns an error only when the run could not complete (cancelled, the
// database failed, the backend could not be listed); failed verdicts are
// in the report, not the error.
func (e *Engine) Run(ctx context.Context, backendID, mode string, hooks Hooks) (*Report, error) {
	b, ok := e.backends[backendID]
	if !ok {
		return nil, fmt.Errorf("verify: unknown backend %q", backendID)
	}
	if mode != store.ModeDeep && mode != store.ModeQuick {
		return nil, fmt.Errorf("verify: unknown mode %q (deep or quick)", mode)
	}
	l := e.lock(backendID, mode)
	l.Lock()
	defer l.Unlock()
	e.opts.Metrics.running(backendID, mode, true)
	defer e.opts.Metrics.running(backendID, mode, false)

	state, err := e.store.GetVerifyState(ctx, backendID, mode)
	if err != nil {
		return nil, err
	}
	var run store.RunSummary
	if state.Current != nil {
		run = *state.Current
		run.Resumed = true
		e.log.Info("resuming verification run", "backend", backendID, "mode", mode, "run_id", run.ID, "checked", run.Checked)
	} else {
		run = store.RunSummary{ID: newRunID(), Backend: backendID, Mode: mode, StartedAt: time.Now().UTC()}
		if state.Last != nil {
			run.Position = state.Last.Position // go on where the last run stopped
		}
	}
	if run.ByVerdict == nil {
		run.ByVerdict = map[string]int{}
	}
	if err := e.saveCurrent(ctx, &run); err != nil {
		return nil, err
	}
	start := time.Now()
	rep := &Report{Failures: []store.Verdict{}, OrphanDigests: []string{}, StillFailed: []FailedLocation{}}
	err = e.run(ctx, b, &run, rep, hooks)
	rep.RunSummary = run
	if err != nil {
		if ctx.Err() != nil {
			// Leave Current in place: the next start resumes it.
			e.log.Info("verification run interrupted; it will resume", "backend", backendID, "mode", mode, "run_id", run.ID, "checked", run.Checked)
			return rep, err
		}
		run.Error = err.Error()
	}
	if err == nil {
		rep.StillFailed, rep.FailedTotal, err = FailedOn(ctx, e.store, backendID, e.opts.MaxListed)
		if err != nil && ctx.Err() != nil {
			return rep, err
		}
		if err != nil {
			run.Error = err.Error()
		}
	}
	now := time.Now().UTC()
	run.FinishedAt = &now
	rep.RunSummary = run
	serr := e.store.UpdateVerifyState(context.WithoutCancel(ctx), backendID, mode, func(st *store.VerifyState) {
		st.Current = nil
		last := run
		st.Last = &last
		if run.Error == "" {
			st.LastSuccessAt = &now
		}
	})
	e.opts.Metrics.finished(&run, time.Since(start))
	if serr == nil {
		serr = e.store.VerificationFinished(context.WithoutCancel(ctx), run)
	}
	if serr != nil {
		return rep, serr
	}
	if err != nil {
		return rep, err
	}
	e.log.Info("verification run finished", "backend", backendID, "mode", mode, "run_id", run.ID,
		"checked", run.Checked, "by_verdict", run.ByVerdict, "bytes_read", run.BytesRead, "orphans", run.Orphans,
		"duration", time.Since(start).Round(time.Millisecond).String())
	return rep, nil
}

func (e *Engine) saveCurrent(ctx context.Context, run *store.RunSummary) error {
	snap := *run
	snap.ByVerdict = make(map[string]int, len(run.ByVerdict))
	for k, v := range run.ByVerdict {
		snap.ByVerdict[k] = v
	}
	return e.store.UpdateVerifyState(context.WithoutCancel(ctx), run.Backend, run.Mode, func(st *store.VerifyState) {
		st.Current = &snap
	})
}

// Paging and batching of a run. A run holds one page of locations at a
// time, never every location of the backend, and records its verdicts in
// batches: one durable commit per batch instead of one per object.
const (
	// pageSize is how many locations a run reads from the database at
	// once.
	pageSize = 10000
	// recordBatch is how many verdicts one commit records at most.
	recordBatch = 256
	// recordDelay is how long a verdict waits at most for others to
	// share its commit.
	recordDelay = 200 * time.Millisecond
	// orphanBatch is how many listed objects one registry lookup covers.
	orphanBatch = 1000
)

// run checks every location of the backend not yet checked since the run
// started. The walk goes round the backend's locations in digest order
// starting after run.Position, where the previous run (or this run, when
// resumed) stopped, and wraps around to it: after complete runs the
// locations whose check is oldest come first, and after a run that ended
// early with an error the next run begins where it stopped, so the
// locations it did not reach come first (a run interrupted by a restart
// is resumed: Current keeps its Position).
func (e *Engine) run(ctx context.Context, b backends.Backend, run *store.RunSummary, rep *Report, hooks Hooks) error {
	last := func(l *store.Location) *time.Time {
		if run.Mode == store.ModeDeep {
			return l.LastVerifiedAt
		}
		return l.LastCheckedAt
	}
	need := func(l *store.Location) bool {
		t := last(l)
		return t == nil || t.Before(run.StartedAt)
	}
	if hooks.Start != nil {
		// From the counters: the backend's locations less those this
		// run already checked before it was interrupted.
		total := 0
		if u, err := e.store.Usage(ctx); err == nil && u[b.ID()] != nil {
			total = int(u[b.ID()].Blobs) - run.Checked
		}
		hooks.Start(max(total, 0))
	}

	var mu sync.Mutex // guards run and rep
	var firstErr error
	var failed atomic.Bool // a batch could not be recorded: stop feeding
	lastSave := time.Now()
	jobs := make(chan store.Location)
	results := make(chan store.Verdict, recordBatch)

	// The recorder commits verdicts in batches and only then counts
	// them: a verdict that was not recorded is not in the run's figures,
	// its hook or its metrics. It flushes what it holds when the run
	// ends or is cancelled (the checks finished before the cancel are
	// recorded), so a crash loses at most the verdicts of one unflushed
	// batch: those locations are checked again by the resumed run.
	recDone := make(chan struct{})
	go func() {
		defer close(recDone)
		var pending []store.Verdict
		timer := time.NewTimer(recordDelay)
		timer.Stop()
		defer timer.Stop()
		flush := func() {
			if len(pending) == 0 {
				return
			}
			batch := pending
			pending = nil
			err := e.store.RecordVerdicts(context.WithoutCancel(ctx), batch)
			mu.Lock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				failed.Store(true)
				mu.Unlock()
				return
			}
			for _, v := range batch {
				run.Checked++
				run.ByVerdict[v.Verdict]++
				run.BytesRead += v.BytesRead
				if v.Failed() && len(rep.Failures) < e.opts.MaxListed {
					rep.Failures = append(rep.Failures, v)
				}
			}
			if time.Since(lastSave) > time.Second {
				lastSave = time.Now()
				if err := e.saveCurrent(ctx, run); err != nil && firstErr == nil {
					firstErr = err
				}
			}
			mu.Unlock()
			for _, v := range batch {
				e.opts.Metrics.verdict(v)
				if hooks.Verdict != nil {
					hooks.Verdict(v)
				}
			}
		}
		for {
			select {
			case v, ok := <-results:
				if !ok {
					flush()
					return
				}
				if failed.Load() {
					continue // not recorded, not counted
				}
				pending = append(pending, v)
				if len(pending) == 1 {
					timer.Reset(recordDelay)
				}
				if len(pending) >= recordBatch {
					timer.Stop()
					flush()
				}
			case <-timer.C:
				flush()
			}
		}
	}()

	var wg sync.WaitGroup
	for i := 0; i < e.opts.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, chunk)
			for l := range jobs {
				v := e.check(ctx, b, l, run, buf)
				if ctx.Err() != nil {
					return // an interrupted check is no verdict
				}
				results <- v
			}
		}()
	}
	feedErr := e.feed(ctx, b.ID(), run, &mu, need, jobs, &failed)
	close(jobs)
	wg.Wait()
	close(results)
	<-recDone
	if err := ctx.Err(); err != nil {
		e.saveCurrent(ctx, run)
		return err
	}
	if firstErr != nil {
		return firstErr
	}
	if feedErr != nil {
		return feedErr
	}
	if err := e.saveCurrent(ctx, run); err != nil {
		return err
	}
	return e.orphans(ctx, b, run, rep)
}

// feed sends every location that needs a check to jobs, a page at a
// time, going round from run.Position and advancing it.
func (e *Engine) feed(ctx context.Context, backend string, run *store.RunSummary, mu *sync.Mutex, need func(*store.Location) bool, jobs chan<- store.Location, failed *atomic.Bool) error {
	mu.Lock()
	start := run.Position
	mu.Unlock()
	// Two legs: after start to the end, then from the first digest up to
	// start (none when start is "").
	legs := []struct{ after, until string }{{start, ""}}
	if start != "" {
		legs = append(legs, struct{ after, until string }{"", start})
	}
	for _, leg := range legs {
		after := leg.after
		for {
			p, err := e.store.LocationsPage(ctx, backend, after, leg.until, pageSize, need)
			if err != nil {
				return err
			}
			for _, l := range p.Locations {
				if failed.Load() {
					return nil
				}
				select {
				case jobs <- l:
				case <-ctx.Done():
					return ctx.Err()
				}
				mu.Lock()
				run.Position = l.Digest
				mu.Unlock()
			}
			if p.Done {
				break
			}
			after = p.Last
		}
	}
	return nil
}

// orphans lists objects under our key layout that no location records and
// no open upload stages. They are reported, never deleted. Listed objects
// are looked up in the registry in batches, so the walk holds one batch,
// not every location of the backend.
func (e *Engine) orphans(ctx context.Context, b backends.Backend, run *store.RunSummary, rep *Report) error {
	staged, err := e.store.StagedOn(ctx, b.ID())
	if err != nil {
		return err
	}
	run.Orphans = 0
	var batch []string
	var lookupErr error
	check := func() error {
		known, err := e.store.LocationsExist(ctx, b.ID(), batch)
		if err != nil {
			lookupErr = err
			return err
		}
		for _, d := range batch {
			if known[d] || staged[d] {
				continue
			}
			run.Orphans++
			if len(rep.OrphanDigests) < e.opts.MaxListed {
				rep.OrphanDigests = append(rep.OrphanDigests, d)
			}
		}
		batch = batch[:0]
		return nil
	}
	err = b.Walk(ctx, func(i backends.Info) error {
		batch = append(batch, i.Digest.String())
		if len(batch) >= orphanBatch {
			return check()
		}
		return nil
	})
	if err == nil {
		err = check()
	}
	if lookupErr != nil {
		return lookupErr
	}
	if err != nil {
		return fmt.Errorf("list backend %s for orphans: %w", b.ID(), err)
	}
	e.opts.Metrics.orphans(b.ID(), run.Orphans)
	if run.Orphans > 0 {
		e.log.Warn("objects not referenced by the registry (orphans; left in place)", "backend", b.ID(), "count", run.Orphans)
	}
	if iw, ok := backends.AsIncompleteWriter(b); ok {
		ws, err := iw.IncompleteWrites(ctx)
		if err != nil {
			return fmt.Errorf("list incomplete writes of backend %s: %w", b.ID(), err)
		}
		if len(ws) > e.opts.MaxListed {
			ws = ws[:e.opts.MaxListed]
		}
		rep.IncompleteWrites = ws
		if len(ws) > 0 {
			e.log.Warn("incomplete writes left by interrupted uploads", "backend", b.ID(), "count", len(ws), "oldest", ws[0].Started)
		}
	}
	return nil
}

// check verifies one location.
func (e *Engine) check(ctx context.Context, b backends.Backend, l store.Location, run *store.RunSummary, buf []byte) (v store.Verdict) {
	start := time.Now()
	v = store.Verdict{Digest: l.Digest, Backend: l.Backend, Mode: run.Mode, RunID: run.ID, Generation: l.Repairs}
	defer func() {
		v.At = time.Now().UTC()
		v.Duration = time.Since(start)
	}()
	d, err := digest.Parse(l.Digest)
	if err != nil {
		v.Verdict, v.Error = store.StatusUnreadable, err.Error()
		return v
	}
	if run.Mode == store.ModeQuick {
		info, err := b.Stat(ctx, d)
		switch {
		case errors.Is(err, backends.ErrNotFound):
			v.Verdict, v.Error = store.StatusMissing, "object not found"
		case err != nil:
			v.Verdict, v.Error = store.StatusUnreadable, err.Error()
		case info.Size != l.Size:
			v.Verdict, v.Error = store.StatusMismatch, fmt.Sprintf("size %d, want %d", info.Size, l.Size)
		default:
			v.Verdict = store.StatusVerified
		}
		return v
	}
	rc, err := b.Open(ctx, d, 0, -1)
	switch {
	case errors.Is(err, backends.ErrNotFound):
		v.Verdict, v.Error = store.StatusMissing, "object not found"
		return v
	case err != nil:
		v.Verdict, v.Error = store.StatusUnreadable, err.Error()
		return v
	}
	defer rc.Close()
	h := sha256.New()
	for {
		n, rerr := rc.Read(buf)
		if n > 0 {
			h.Write(buf[:n])
			v.BytesRead += int64(n)
			if e.limiter != nil {
				if err := e.limiter.WaitN(ctx, n); err != nil {
					v.Verdict, v.Error = store.StatusUnreadable, err.Error()
					return v
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			v.Verdict, v.Error = store.StatusUnreadable, rerr.Error()
			return v
		}
	}
	got := hex.EncodeToString(h.Sum(nil))
	switch {
	case v.BytesRead != l.Size:
		v.Verdict, v.Error = store.StatusMismatch, fmt.Sprintf("read %d bytes, want %d", v.BytesRead, l.Size)
	case got != d.Hex:
		v.Verdict, v.Error = store.StatusMismatch, fmt.Sprintf("content hashes to sha256:%s", got)
	default:
		v.Verdict = store.StatusVerified
	}
	return v
}

func newRunID() string {
	var b [8]byte
	randRead(b[:])
	return hex.EncodeToString(b[:])
}
