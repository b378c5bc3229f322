package verify

import (
	"context"
	"fmt"

	"artifactstore/store"
)

// RestoreMetrics sets the verification metrics of every backend and mode
// from the database, so they exist from start-up: alert rules on
// artifactstore_verification_overruns_total or the last-success gauge
// see a value after a restart (0 where nothing happened yet) instead of
// an absent series until the next run.
func (e *Engine) RestoreMetrics(ctx context.Context) error {
	for id := range e.backends {
		for _, mode := range []string{store.ModeDeep, store.ModeQuick} {
			st, err := e.store.GetVerifyState(ctx, id, mode)
			if err != nil {
				return fmt.Errorf("verification state of %s (%s): %w", id, mode, err)
			}
			e.opts.Metrics.restore(id, mode, st)
		}
	}
	return nil
}

func (m *Metrics) restore(backend, mode string, st store.VerifyState) {
	if m == nil {
		return
	}
	m.overruns.WithLabelValues(backend, mode).Add(float64(st.Overruns))
	last := 0.0
	if st.LastSuccessAt != nil {
		last = float64(st.LastSuccessAt.Unix())
	}
	m.lastSuccess.WithLabelValues(backend, mode).Set(last)
	m.runningG.WithLabelValues(backend, mode).Set(0)
	if st.Last != nil {
		failed := 0
		for verdict, n := range st.Last.ByVerdict {
			if verdict != store.StatusVerified {
				failed += n
			}
		}
		m.lastRun.WithLabelValues(backend, mode).Set(float64(failed))
	}
	if st.NextAt != nil {
		m.nextRun.WithLabelValues(backend, mode).Set(float64(st.NextAt.Unix()))
	}
}
