package verify

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"artifactstore/store"
)

// Schedule is a periodic run of one mode on every backend.
type Schedule struct {
	Mode string
	// Interval between the starts of two runs; 0 disables the schedule.
	Interval time.Duration
	// Jitter is a random delay up to this much added to each start, so
	// backends and instances do not all run at once.
	Jitter time.Duration
}

// RunScheduled runs the schedules on every backend until ctx is done. An
// unfinished run from before a restart resumes at once. A run that comes
// due while the previous one of the same backend and mode still runs is
// counted as an overrun (log, metric, health document) and starts as soon
// as the previous one ends; it is never dropped.
func (e *Engine) RunScheduled(ctx context.Context, schedules []Schedule) {
	var wg sync.WaitGroup
	for id := range e.backends {
		for _, s := range schedules {
			if s.Interval <= 0 {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.loop(ctx, id, s)
			}()
		}
	}
	wg.Wait()
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)))
}

func (e *Engine) loop(ctx context.Context, backend string, s Schedule) {
	st, err := e.store.GetVerifyState(ctx, backend, s.Mode)
	if err != nil {
		e.log.Error("verification scheduler cannot read its state", "backend", backend, "mode", s.Mode, "err", err)
		return
	}
	var due time.Time
	switch {
	case st.Current != nil:
		due = time.Now() // resume an interrupted run now
	case st.NextAt != nil:
		due = *st.NextAt
	case st.Last != nil:
		due = st.Last.StartedAt.Add(s.Interval + jitter(s.Jitter))
	default:
		due = time.Now().Add(jitter(s.Jitter))
	}
	e.setNext(ctx, backend, s.Mode, due)
	for {
		if wait := time.Until(due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return
		}
		started := time.Now()
		next := started.Add(s.Interval + jitter(s.Jitter))
		e.setNext(ctx, backend, s.Mode, next)
		_, err := e.Run(ctx, backend, s.Mode, Hooks{})
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			e.log.Error("scheduled verification run failed", "backend", backend, "mode", s.Mode, "err", err)
		}
		if now := time.Now(); now.After(next) {
			// The next run came due while this one ran: report it and
			// start it right away.
			e.log.Warn("verification overrun: the next run was due before this one finished",
				"backend", backend, "mode", s.Mode, "due", next.Format(time.RFC3339), "late_by", now.Sub(next).Round(time.Second).String())
			e.opts.Metrics.overrun(backend, s.Mode)
			e.store.UpdateVerifyState(context.WithoutCancel(ctx), backend, s.Mode, func(st *store.VerifyState) {
				st.Overruns++
				t := now.UTC()
				st.LastOverrunAt = &t
			})
			next = now
			e.setNext(ctx, backend, s.Mode, next)
		}
		due = next
	}
}

func (e *Engine) setNext(ctx context.Context, backend, mode string, at time.Time) {
	at = at.UTC()
	e.opts.Metrics.next(backend, mode, at)
	if err := e.store.UpdateVerifyState(context.WithoutCancel(ctx), backend, mode, func(st *store.VerifyState) {
		st.NextAt = &at
	}); err != nil {
		e.log.Warn("cannot persist the next verification time", "backend", backend, "mode", mode, "err", err)
	}
}
