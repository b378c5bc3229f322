package web

import (
	"strconv"
	"sync"
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

	// series caches the four series of a (route, method, code), so a
	// request does not hash its labels four times (a HEAD costs a few
	// microseconds in all). It holds one entry per series the vectors
	// hold anyway: routes are patterns, methods are bounded by
	// methodLabel and codes are the server's.
	series sync.Map // seriesKey -> *routeSeries
}

type seriesKey struct {
	route, method string
	code          int
}

type routeSeries struct {
	requests, received, sent prometheus.Counter
	duration                 prometheus.Observer
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "artifactstore_http_requests_total",
			Help: "HTTP requests by route pattern, method (the standard methods; any other is \"other\") and status code.",
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
	method = methodLabel(method)
	k := seriesKey{route, method, code}
	var rs *routeSeries
	if v, ok := m.series.Load(k); ok {
		rs = v.(*routeSeries)
	} else {
		rs = &routeSeries{
			requests: m.requests.WithLabelValues(route, method, strconv.Itoa(code)),
			duration: m.duration.WithLabelValues(route, method),
			received: m.received.WithLabelValues(route),
			sent:     m.sent.WithLabelValues(route),
		}
		m.series.Store(k, rs)
	}
	rs.requests.Inc()
	rs.duration.Observe(d.Seconds())
	rs.received.Add(float64(in))
	rs.sent.Add(float64(out))
}

// methodLabel is the method label of a request: the standard methods as
// they are, anything else a client invents as "other", so a client
// cannot grow the label space (and the service's memory) without bound.
func methodLabel(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE":
		return m
	}
	return "other"
}
