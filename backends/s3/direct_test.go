package s3_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"artifactstore/backends"
	"artifactstore/backends/s3/s3test"
	"artifactstore/internal/digest"
)

// TestDirectURL: a presigned URL reads the object with a plain GET (and a
// range of it), stops working once its lifetime is over, and lifetimes
// outside SigV4's 1 s .. 7 days are refused.
func TestDirectURL(t *testing.T) {
	for _, srv := range s3test.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			b := newBackend(t, srv.NewBucket(t), "direct")
			var p backends.DirectURLProvider = b
			if got, ok := backends.AsDirectURLProvider(backends.Instrument(b, backends.NewMetrics(prometheus.NewRegistry()))); !ok || got != p {
				t.Fatal("AsDirectURLProvider does not see through the instrumenting wrapper")
			}
			body := []byte("served straight from " + srv.Name)
			d := digest.FromBytes(body)
			ctx := context.Background()
			if err := b.Put(ctx, d, int64(len(body)), bytes.NewReader(body)); err != nil {
				t.Fatal(err)
			}
			get := func(u string, hdr http.Header) (int, []byte) {
				req, _ := http.NewRequest(http.MethodGet, u, nil)
				req.Header = hdr
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				got, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, got
			}
			u, err := p.DirectURL(ctx, d, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if code, got := get(u, http.Header{}); code != 200 || !bytes.Equal(got, body) {
				t.Fatalf("GET %s: %d %q", u, code, got)
			}
			if code, got := get(u, http.Header{"Range": {"bytes=2-5"}}); code != 206 || !bytes.Equal(got, body[2:6]) {
				t.Fatalf("ranged GET: %d %q", code, got)
			}
			short, err := p.DirectURL(ctx, d, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(2500 * time.Millisecond)
			if code, _ := get(short, http.Header{}); code != http.StatusForbidden {
				t.Fatalf("GET of an expired URL: %d, want 403", code)
			}
			for _, ttl := range []time.Duration{0, 500 * time.Millisecond, 8 * 24 * time.Hour} {
				if _, err := p.DirectURL(ctx, d, ttl); err == nil {
					t.Fatalf("lifetime %v accepted", ttl)
				}
			}
		})
	}
}
