package lifecycle

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the lifecycle metrics. A nil *Metrics records nothing.
type Metrics struct {
	runs           *prometheus.CounterVec
	lastRun        *prometheus.GaugeVec
	deletedObjects *prometheus.CounterVec
	deletedBytes   *prometheus.CounterVec
	reclaimable    *prometheus.GaugeVec
	packages       *prometheus.CounterVec
	eventsDeleted  prometheus.Counter
	eventsBytes    prometheus.Counter
	pendingIntents prometheus.Gauge
}

// NewMetrics registers the lifecycle metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "artifactstore_lifecycle_runs_total",
			Help: "Lifecycle runs finished, by kind (gc, retention, events) and result (ok or error).",
		}, []string{"kind", "result"}),
		lastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "artifactstore_lifecycle_last_run_timestamp_seconds",
			Help: "Unix time the last lifecycle run of this kind finished.",
		}, []string{"kind"}),
		deletedObjects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "artifactstore_gc_deleted_objects_total",
			Help: "Objects garbage collection deleted from each backend (content no package needs, and orphans).",
		}, []string{"backend"}),
		deletedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "artifactstore_gc_deleted_bytes_total",
			Help: "Bytes garbage collection freed on each backend.",
		}, []string{"backend"}),
		reclaimable: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "artifactstore_gc_reclaimable_bytes",
			Help: "Bytes on each backend that no package needs, as of the end of the last gc run or dry run.",
		}, []string{"backend"}),
		packages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "artifactstore_packages_deleted_total",
			Help: "Packages deleted, by how (api or retention).",
		}, []string{"by"}),
		eventsDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "artifactstore_events_pruned_total",
			Help: "Events removed by event retention.",
		}),
		eventsBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "artifactstore_events_pruned_bytes_total",
			Help: "Database bytes of the events removed by event retention.",
		}),
		pendingIntents: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "artifactstore_gc_pending_deletes",
			Help: "Objects gc decided to delete whose backend delete is not confirmed yet (after the last run).",
		}),
	}
	reg.MustRegister(m.runs, m.lastRun, m.deletedObjects, m.deletedBytes, m.reclaimable, m.packages, m.eventsDeleted, m.eventsBytes, m.pendingIntents)
	return m
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

func (m *Metrics) gcRun(r *GCReport, err error) {
	if m == nil {
		return
	}
	m.runs.WithLabelValues("gc", result(err)).Inc()
	m.lastRun.WithLabelValues("gc").Set(float64(r.FinishedAt.Unix()))
	failed := 0
	for id, b := range r.Backends {
		m.deletedObjects.WithLabelValues(id).Add(float64(b.Objects + int64(b.OrphansDeleted)))
		m.deletedBytes.WithLabelValues(id).Add(float64(b.Bytes + b.OrphanBytes))
		m.reclaimable.WithLabelValues(id).Set(float64(b.Reclaimable))
		failed += b.Failed
	}
	m.pendingIntents.Set(float64(failed))
}

// Reclaimable sets the reclaimable bytes gauge from a dry run.
func (m *Metrics) Reclaimable(r *GCReport) {
	if m == nil {
		return
	}
	for id, b := range r.Backends {
		m.reclaimable.WithLabelValues(id).Set(float64(b.Reclaimable))
	}
}

func (m *Metrics) retentionRun(r *RetentionReport, err error) {
	if m == nil {
		return
	}
	m.runs.WithLabelValues("retention", result(err)).Inc()
	m.lastRun.WithLabelValues("retention").Set(float64(r.FinishedAt.Unix()))
}

func (m *Metrics) packagesDeleted(by string, n int) {
	if m == nil {
		return
	}
	m.packages.WithLabelValues(by).Add(float64(n))
}

func (m *Metrics) eventsPruned(r *PruneReport, err error) {
	if m == nil {
		return
	}
	m.runs.WithLabelValues("events", result(err)).Inc()
	m.lastRun.WithLabelValues("events").Set(float64(r.At.Unix()))
	m.eventsDeleted.Add(float64(r.Deleted))
	m.eventsBytes.Add(float64(r.Bytes))
}
