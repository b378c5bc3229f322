package app

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"artifactstore/internal/recovery"
)

// recoveryCollector reports the record outbox and the last snapshot, read
// at scrape time.
type recoveryCollector struct {
	m       *recovery.Manager
	pending *prometheus.Desc
	lastOK  *prometheus.Desc
	size    *prometheus.Desc
}

func newRecoveryCollector(m *recovery.Manager) *recoveryCollector {
	return &recoveryCollector{m: m,
		pending: prometheus.NewDesc("artifactstore_records_pending", "Packages whose manifest records in the backends are still to be written or removed (the record outbox).", nil, nil),
		lastOK:  prometheus.NewDesc("artifactstore_snapshot_last_success_timestamp_seconds", "When the last database snapshot was written into a backend and verified.", []string{"backend"}, nil),
		size:    prometheus.NewDesc("artifactstore_snapshot_bytes", "Size of the last database snapshot.", []string{"backend"}, nil),
	}
}

func (c *recoveryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.lastOK
	ch <- c.size
}

func (c *recoveryCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.m.Status(ctx)
	if err != nil {
		return // artifactstore_registry_scrape_error reports a database that cannot be read
	}
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(st.RecordsPending))
	if s := st.LastSnapshot; s != nil {
		ch <- prometheus.MustNewConstMetric(c.lastOK, prometheus.GaugeValue, float64(s.Time.UnixNano())/1e9, s.Backend)
		ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(s.Size), s.Backend)
	}
}
