package web

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"artifactstore/internal/digest"
)

func TestReprDigest(t *testing.T) {
	for _, body := range []string{"", "a", "artifactstore"} {
		d := digest.FromBytes([]byte(body))
		sum := sha256.Sum256([]byte(body))
		want := "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
		got, ok := reprDigest(d)
		if !ok || got != want {
			t.Errorf("reprDigest(%s) = %q, %v; want %q", d, got, ok, want)
		}
	}
	for _, hx := range []string{"", "abc", "zz" + digest.FromBytes(nil).Hex[2:]} {
		if got, ok := reprDigest(digest.Digest{Algorithm: digest.SHA256, Hex: hx}); ok {
			t.Errorf("reprDigest of hex %q = %q, want no value", hx, got)
		}
	}
}

// The series cache must count every request, including those of another
// code on the same route and of methods a client invents, and hold one
// entry per series the vectors hold.
func TestHTTPMetricsSeriesCache(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newHTTPMetrics(reg)
	for i := 0; i < 3; i++ {
		m.observe("HEAD /v1/blobs/{digest}", "HEAD", 200, 0, 0, time.Millisecond)
	}
	m.observe("HEAD /v1/blobs/{digest}", "HEAD", 404, 0, 0, time.Millisecond)
	m.observe("", "GET", 200, 10, 20, time.Millisecond)
	const invented = 1034
	for i := 0; i < invented; i++ {
		m.observe("GET /x", fmt.Sprintf("M%d", i), 200, 1, 2, time.Millisecond)
	}
	for i := 0; i < invented; i += 100 {
		m.observe("GET /x", fmt.Sprintf("M%d", i), 200, 1, 2, time.Millisecond)
	}
	for _, c := range []struct {
		route, method, code string
		want                float64
	}{
		{"HEAD /v1/blobs/{digest}", "HEAD", "200", 3},
		{"HEAD /v1/blobs/{digest}", "HEAD", "404", 1},
		{"unmatched", "GET", "200", 1},
		{"GET /x", "other", "200", float64(invented + 11)},
	} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues(c.route, c.method, c.code)); got != c.want {
			t.Errorf("requests %s %s %s = %v, want %v", c.route, c.method, c.code, got, c.want)
		}
	}
	if got := testutil.ToFloat64(m.sent.WithLabelValues("unmatched")); got != 20 {
		t.Errorf("sent bytes of unmatched = %v, want 20", got)
	}
	if got := testutil.ToFloat64(m.received.WithLabelValues("GET /x")); got != float64(invented+11) {
		t.Errorf("received bytes of GET /x = %v, want %d", got, invented+11)
	}
	cached := 0
	m.series.Range(func(any, any) bool { cached++; return true })
	if series := testutil.CollectAndCount(m.requests); cached != 4 || series != 4 {
		t.Errorf("%d series cached for %d request series, want 4 and 4 (methods a client invents share one label)", cached, series)
	}
}

// A client inventing methods must not create a series per method.
func TestHTTPMetricsMethodLabelIsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newHTTPMetrics(reg)
	for i := 0; i < 500; i++ {
		m.observe("", fmt.Sprintf("X%d", i), 405, 0, 0, time.Millisecond)
	}
	m.observe("", "GET", 404, 0, 0, time.Millisecond)
	if n := testutil.CollectAndCount(m.requests); n != 2 {
		t.Fatalf("%d request series after 500 invented methods and one GET, want 2", n)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("unmatched", "other", "405")); got != 500 {
		t.Fatalf("requests of invented methods = %v, want 500", got)
	}
}
