package lifecycle

import (
	"context"
	"time"

	"artifactstore/store"
)

// PruneReport is the result of one event pruning pass.
type PruneReport struct {
	store.PruneResult
	At time.Time `json:"at"`
	// Floor is the sequence a consumer still needed (nothing at or after
	// it was pruned); 0 when no consumer set one.
	Floor uint64 `json:"floor,omitempty"`
	Error string `json:"error,omitempty"`
}

// Retention returns the event retention the policy gives at now.
func (p EventPolicy) Retention(now time.Time, floor uint64) store.EventRetention {
	return store.EventRetention{
		Now:    now,
		MaxAge: p.MaxAge,
		Ages: map[string]time.Duration{
			store.EventLocationVerified: p.VerificationMaxAge,
			EventGCCompleted:            p.SummaryMaxAge,
			EventRetentionCompleted:     p.SummaryMaxAge,
			EventEventsPruned:           p.SummaryMaxAge,
		},
		KeepFrom: floor,
	}
}

// PruneEvents removes events older than their retention age, never one a
// consumer still needs (Options.EventFloor), and records the pass.
func (m *Manager) PruneEvents(ctx context.Context) (*PruneReport, error) {
	rep := &PruneReport{At: m.opts.Now().UTC()}
	var err error
	if m.opts.EventFloor != nil {
		rep.Floor, err = m.opts.EventFloor(ctx)
	}
	if err == nil {
		rep.PruneResult, err = m.store.PruneEvents(ctx, m.opts.Events.Retention(rep.At, rep.Floor))
	}
	rep.Error = errString(err)
	m.opts.Metrics.eventsPruned(rep, err)
	// The pass is recorded (not as an event when nothing was removed, so
	// an idle store's log does not grow by itself).
	typ := EventEventsPruned
	if rep.Deleted == 0 {
		typ = ""
	}
	if rerr := m.store.RecordLifecycleRun(context.WithoutCancel(ctx), store.RunEvents, typ, rep); rerr != nil && err == nil {
		err = rerr
	}
	if rep.Deleted > 0 {
		m.log.Info("events pruned", "deleted", rep.Deleted, "bytes", rep.Bytes, "horizon", rep.Horizon)
	}
	return rep, err
}
