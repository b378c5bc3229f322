package verify

import (
	"crypto/rand"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"artifactstore/store"
)

// Metrics are the verification metrics. A nil *Metrics records nothing.
type Metrics struct {
	runs        *prometheus.CounterVec
	objects     *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	lastSuccess *prometheus.GaugeVec
	lastRun     *prometheus.GaugeVec
	orphanCount *prometheus.GaugeVec
	runningG    *prometheus.GaugeVec
	overruns    *prometheus.CounterVec
	nextRun     *prometheus.GaugeVec
}

// NewMetrics registers the verification metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "artifactstore_verification_runs_total",
			Help: "Verification runs finished, by backend, mode (deep or quick) and result (ok or error).",
		}, []string{"backend", "mode", "result"}),
		objects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "artifactstore_verification_objects_total",
			Help: "Storage locations verified, by backend, mode and verdict (verified, mismatch, missing, unreadable).",
		}, []string{"backend", "mode", "verdict"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "artifactstore_verification_read_bytes_total",
			Help: "Bytes re-read by verification, by backend and mode.",
		}, []string{"backend", "mode"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "artifactstore_verification_run_duration_seconds",
			Help:    "Duration of verification runs, by backend and mode.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 12),
		}, []string{"backend", "mode"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "artifactstore_verification_last_success_timestamp_seconds",
			Help: "Unix time a verification run of this backend and mode last finished without error.",
		}, []string{"backend", "mode"}),
		lastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "artifactstore_verification_last_run_failed_locations",
			Help: "Failed verdicts (mismatch, missing, unreadable) in the last run of this backend and mode.",
		}, []string{"backend", "mode"}),
		orphanCount: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "artifactstore_verification_orphan_objects",
			Help: "Objects under the key layout that the registry does not reference, found by the last run.",
		}, []string{"backend"}),
		runningG: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "artifactstore_verification_running",
			Help: "1 while a verification run of this backend and mode is in progress.",
		}, []string{"backend", "mode"}),
		overruns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "artifactstore_verification_overruns_total",
			Help: "Scheduled runs that came due while the previous run of the same backend and mode was still going.",
		}, []string{"backend", "mode"}),
		nextRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "artifactstore_verification_next_run_timestamp_seconds",
			Help: "Unix time the scheduler plans the next run of this backend and mode.",
		}, []string{"backend", "mode"}),
	}
	reg.MustRegister(m.runs, m.objects, m.bytes, m.duration, m.lastSuccess, m.lastRun, m.orphanCount, m.runningG, m.overruns, m.nextRun)
	return m
}

func (m *Metrics) running(backend, mode string, on bool) {
	if m == nil {
		return
	}
	v := 0.0
	if on {
		v = 1
	}
	m.runningG.WithLabelValues(backend, mode).Set(v)
}

func (m *Metrics) verdict(v store.Verdict) {
	if m == nil {
		return
	}
	m.objects.WithLabelValues(v.Backend, v.Mode, v.Verdict).Inc()
	m.bytes.WithLabelValues(v.Backend, v.Mode).Add(float64(v.BytesRead))
}

func (m *Metrics) finished(run *store.RunSummary, d time.Duration) {
	if m == nil {
		return
	}
	result := "ok"
	if run.Error != "" {
		result = "error"
	} else {
		m.lastSuccess.WithLabelValues(run.Backend, run.Mode).Set(float64(time.Now().Unix()))
	}
	m.runs.WithLabelValues(run.Backend, run.Mode, result).Inc()
	m.duration.WithLabelValues(run.Backend, run.Mode).Observe(d.Seconds())
	failed := 0
	for verdict, n := range run.ByVerdict {
		if verdict != store.StatusVerified {
			failed += n
		}
	}
	m.lastRun.WithLabelValues(run.Backend, run.Mode).Set(float64(failed))
}

func (m *Metrics) orphans(backend string, n int) {
	if m == nil {
		return
	}
	m.orphanCount.WithLabelValues(backend).Set(float64(n))
}

func (m *Metrics) overrun(backend, mode string) {
	if m == nil {
		return
	}
	m.overruns.WithLabelValues(backend, mode).Inc()
}

func (m *Metrics) next(backend, mode string, at time.Time) {
	if m == nil {
		return
	}
	m.nextRun.WithLabelValues(backend, mode).Set(float64(at.Unix()))
}

func randRead(b []byte) { rand.Read(b) }
