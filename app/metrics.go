package app

import (
	"context"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"artifactstore/store"
)

// registryCollector reports what the registry holds, read at scrape time.
type registryCollector struct {
	st        *store.Store
	locations *prometheus.Desc
	blobs     *prometheus.Desc
	bytes     *prometheus.Desc
	dbSize    *prometheus.Desc
	txRead    *prometheus.Desc
	txOpen    *prometheus.Desc
	pages     *prometheus.Desc
	pageBytes *prometheus.Desc
	freePages *prometheus.Desc
	scrapeErr *prometheus.Desc
}

func newRegistryCollector(st *store.Store) *registryCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &registryCollector{
		st:        st,
		locations: d("artifactstore_storage_locations", "Storage locations by backend and status (stored, verified, mismatch, missing, unreadable).", "backend", "status"),
		blobs:     d("artifactstore_storage_blobs", "Blobs the registry places on each backend.", "backend"),
		bytes:     d("artifactstore_storage_bytes", "Bytes of the blobs the registry places on each backend.", "backend"),
		dbSize:    d("artifactstore_db_size_bytes", "Bytes of the pages the bbolt database has allocated (its high-water mark; the file on disk runs up to 16 MiB ahead of it)."),
		txRead:    d("artifactstore_db_read_transactions_total", "Read transactions started on the database."),
		txOpen:    d("artifactstore_db_open_read_transactions", "Read transactions open now."),
		pages:     d("artifactstore_db_pages_allocated_total", "Pages allocated by write transactions."),
		pageBytes: d("artifactstore_db_page_allocated_bytes_total", "Bytes allocated for pages by write transactions."),
		freePages: d("artifactstore_db_free_pages", "Free pages in the database."),
		scrapeErr: d("artifactstore_registry_scrape_error", "1 if reading registry metrics failed during this scrape."),
	}
}

func (c *registryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.locations, c.blobs, c.bytes, c.dbSize, c.txRead, c.txOpen, c.pages, c.pageBytes, c.freePages, c.scrapeErr} {
		ch <- d
	}
}

func (c *registryCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	failed := 0.0
	usage, err := c.st.Usage(ctx)
	if err != nil {
		failed = 1
	}
	for id, u := range usage {
		for _, status := range []string{store.StatusStored, store.StatusVerified, store.StatusMismatch, store.StatusMissing, store.StatusUnreadable} {
			ch <- prometheus.MustNewConstMetric(c.locations, prometheus.GaugeValue, float64(u.ByStatus[status]), id, status)
		}
		ch <- prometheus.MustNewConstMetric(c.blobs, prometheus.GaugeValue, float64(u.Blobs), id)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(u.Bytes), id)
	}
	db := c.st.DB()
	stats := db.Stats()
	ch <- prometheus.MustNewConstMetric(c.txRead, prometheus.CounterValue, float64(stats.TxN))
	ch <- prometheus.MustNewConstMetric(c.txOpen, prometheus.GaugeValue, float64(stats.OpenTxN))
	ch <- prometheus.MustNewConstMetric(c.pages, prometheus.CounterValue, float64(stats.TxStats.GetPageCount()))
	ch <- prometheus.MustNewConstMetric(c.pageBytes, prometheus.CounterValue, float64(stats.TxStats.GetPageAlloc()))
	ch <- prometheus.MustNewConstMetric(c.freePages, prometheus.GaugeValue, float64(stats.FreePageN))
	if size, err := c.st.FileSize(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.dbSize, prometheus.GaugeValue, float64(size))
	} else {
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(c.scrapeErr, prometheus.GaugeValue, failed)
}

// registerProcessMetrics adds build info and the Go and process collectors.
func registerProcessMetrics(reg *prometheus.Registry) {
	bi := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "artifactstore_build_info",
		Help: "Build information; the value is always 1.",
	}, []string{"version", "commit", "goversion"})
	bi.WithLabelValues(Version, commit(), runtime.Version()).Set(1)
	reg.MustRegister(bi, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}
