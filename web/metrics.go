package web

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics are labelled by the matched route pattern, never by the raw
// path, so package names and digests cannot explode the label space.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	received *prometheus.CounterVec
	sent     *prometheus.CounterVec
	inFlight prometheus.Gauge
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "artifactstore_http_requests_total",
			Help: "HTTP requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "artifactstore_http_request_duration_seconds",
			Help:    "HTTP request durations by route pattern and method.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 11),
		}, []string{"route", "method"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "artifactstore_http_received_bytes_total",
			Help: "Request body bytes received, by route pattern.",
		}, []string{"route"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "artifactstore_http_sent_bytes_total",
			Help: "Response body bytes sent, by route pattern.",
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "artifactstore_http_requests_in_flight",
			Help: "HTTP requests being served now.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.received, m.sent, m.inFlight)
	}
	return m
}

func (m *httpMetrics) observe(route, method string, code int, in, out int64, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route, method).Observe(d.Seconds())
	m.received.WithLabelValues(route).Add(float64(in))
	m.sent.WithLabelValues(route).Add(float64(out))
}
