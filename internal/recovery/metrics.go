package recovery

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the record writer's and the snapshots' metrics.
type Metrics struct {
	recordWrites *prometheus.CounterVec
	snapshots    *prometheus.CounterVec
}

// NewMetrics registers the recovery metrics with reg; m is read at scrape
// time for the gauges (pending records, the last snapshot).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	mt := &Metrics{
		recordWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "artifactstore_record_writes_total",
			Help: "Manifest record writes and removals in the backends, by backend and result (ok, error).",
		}, []string{"backend", "result"}),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "artifactstore_snapshots_total",
			Help: "Database snapshots written into a backend, by backend and result (ok, error).",
		}, []string{"backend", "result"}),
	}
	reg.MustRegister(mt.recordWrites, mt.snapshots)
	return mt
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

func (mt *Metrics) recordWrite(backend string, err error) {
	if mt != nil {
		mt.recordWrites.WithLabelValues(backend, result(err)).Inc()
	}
}

func (mt *Metrics) snapshot(backend string, err error) {
	if mt != nil {
		mt.snapshots.WithLabelValues(backend, result(err)).Inc()
	}
}

// Status is the recovery part of the health document.
type Status struct {
	// RecordsPending counts packages whose manifest records are still to
	// be written or removed.
	RecordsPending int `json:"records_pending"`
	// LastSnapshot is the last snapshot this database wrote.
	LastSnapshot *SnapshotResult `json:"last_snapshot,omitempty"`
	// LastSnapshotError is the error of the last snapshot attempt, if it
	// failed (cleared by the next success).
	LastSnapshotError string     `json:"last_snapshot_error,omitempty"`
	LastSnapshotErrAt *time.Time `json:"last_snapshot_error_at,omitempty"`
}

// Status returns the pending records and the last snapshot.
func (m *Manager) Status(ctx context.Context) (*Status, error) {
	n, err := m.store.RecordsPendingCount(ctx)
	if err != nil {
		return nil, err
	}
	st := &Status{RecordsPending: n}
	if st.LastSnapshot, err = m.LastSnapshot(ctx); err != nil {
		return nil, err
	}
	m.snapErrMu.Lock()
	if m.snapErr != "" && (st.LastSnapshot == nil || m.snapErrAt.After(st.LastSnapshot.Time)) {
		at := m.snapErrAt
		st.LastSnapshotError, st.LastSnapshotErrAt = m.snapErr, &at
	}
	m.snapErrMu.Unlock()
	return st, nil
}
