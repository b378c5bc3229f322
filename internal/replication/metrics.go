package replication

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"artifactstore/internal/registry"
	"artifactstore/store"
)

// Metrics are the replication counters. A nil *Metrics records nothing.
type Metrics struct {
	copies   *prometheus.CounterVec
	repairs  *prometheus.CounterVec
	failures *prometheus.CounterVec
}

// NewMetrics registers the replication metrics with reg, including the
// gauge of copies the rules ask for that are not usable (underReplicated
// is called at scrape time; see UnderReplicated).
func NewMetrics(reg prometheus.Registerer, underReplicated func() (int, error)) *Metrics {
	m := &Metrics{
		copies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "artifactstore_copies_written_total",
			Help: "Copies written in the background (pending copies completed, repairs, migrations), by target backend and kind.",
		}, []string{"target", "kind"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "artifactstore_location_repairs_total",
			Help: "Failed locations rewritten from a good copy on another backend, by source and target backend.",
		}, []string{"source", "target"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "artifactstore_copy_failures_total",
			Help: "Background copies that failed (retried later), by target backend and kind.",
		}, []string{"target", "kind"}),
	}
	reg.MustRegister(m.copies, m.repairs, m.failures,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "artifactstore_under_replicated_copies",
			Help: "Copies the routing rules ask for that are not usable: pending copies plus failed locations.",
		}, func() float64 {
			n, err := underReplicated()
			if err != nil {
				return -1
			}
			return float64(n)
		}))
	return m
}

// UnderReplicated counts the copies the rules ask for that are not usable:
// pending copies and failed locations.
func UnderReplicated(ctx context.Context, st *store.Store) (int, error) {
	_, pending, err := st.PendingCopies(ctx, 0)
	if err != nil {
		return 0, err
	}
	_, failed, err := st.FailedLocations(ctx, 0)
	return pending + failed, err
}

func (m *Metrics) copied(res *registry.CopyResult, kind string) {
	if m == nil || res.Outcome == store.CopyUnchanged {
		return
	}
	m.copies.WithLabelValues(res.Target, kind).Inc()
	if res.Outcome == store.CopyRepaired {
		m.repairs.WithLabelValues(res.Source, res.Target).Inc()
	}
}

func (m *Metrics) failed(target, kind string) {
	if m == nil {
		return
	}
	m.failures.WithLabelValues(target, kind).Inc()
}
