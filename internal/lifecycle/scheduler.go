package lifecycle

import (
	"context"
	"sync"
	"time"

	"artifactstore/store"
)

// Schedule says how often the service runs each lifecycle job; 0 disables
// a job.
type Schedule struct {
	Retention time.Duration
	GC        time.Duration
	Events    time.Duration
}

// RunScheduled runs retention (followed by gc), gc and event pruning on
// their intervals until ctx is done. It runs beside the verification
// scheduler. A job's next start is its last finish (persisted) plus the
// interval (one interval from start-up for a job never run); a run
// interrupted by shutdown is finished by the next one (delete intents).
func (m *Manager) RunScheduled(ctx context.Context, s Schedule) {
	var wg sync.WaitGroup
	jobs := []struct {
		kind  string
		every time.Duration
		run   func(context.Context) error
	}{
		{store.RunRetention, s.Retention, func(ctx context.Context) error { _, err := m.ApplyRetention(ctx, false); return err }},
		{store.RunGC, s.GC, func(ctx context.Context) error { _, err := m.GC(ctx, GCOptions{}); return err }},
		{store.RunEvents, s.Events, func(ctx context.Context) error { _, err := m.PruneEvents(ctx); return err }},
	}
	for _, j := range jobs {
		if j.every <= 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			due := m.firstDue(ctx, j.kind, j.every)
			for {
				t := time.NewTimer(time.Until(due))
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
				if err := j.run(ctx); err != nil && ctx.Err() == nil {
					m.log.Error("scheduled lifecycle run failed", "kind", j.kind, "err", err)
				}
				if ctx.Err() != nil {
					return
				}
				due = time.Now().Add(j.every)
			}
		}()
	}
	wg.Wait()
}

// firstDue is the last finish plus the interval (for a job never run,
// one interval from now).
func (m *Manager) firstDue(ctx context.Context, kind string, every time.Duration) time.Time {
	var last struct {
		FinishedAt time.Time `json:"finished_at"`
		At         time.Time `json:"at"`
	}
	if ok, err := m.store.LifecycleRun(ctx, kind, &last); err == nil && ok {
		at := last.FinishedAt
		if at.IsZero() {
			at = last.At
		}
		return at.Add(every)
	}
	return time.Now().Add(every)
}
