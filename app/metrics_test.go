package app

import (
	"bytes"
	"regexp"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"artifactstore/internal/client"
	"artifactstore/internal/verify"
	"artifactstore/store"
)

// TestMetricsLintAndCounts: the metrics pass Prometheus's lint, and a scrape
// after a publish, a fetch and a verify shows each of them counted, with no
// unbounded label values.
func TestMetricsLintAndCounts(t *testing.T) {
	env := startService(t, localConfig+verifyTestConfig)
	files := map[string][]byte{"secret-package-file.bin": randBytes(77, 4096)}
	publish(t, env.c, manifestOf("metricpkg", "1.0", "ci", "release", files), files)
	get(t, env.c, client.FilePath("metricpkg", "1.0", "secret-package-file.bin"), nil)
	if _, err := env.svc.Verify.Run(ctxT(t), "local", store.ModeDeep, verify.Hooks{}); err != nil {
		t.Fatal(err)
	}

	problems, err := testutil.GatherAndLint(env.svc.Metrics)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric lint: %s: %s", p.Metric, p.Text)
	}

	_, body := get(t, env.c, "/metrics", nil)
	value := func(pattern string) float64 {
		t.Helper()
		m := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(pattern) + ` ([0-9.e+]+)$`).FindSubmatch(body)
		if m == nil {
			t.Fatalf("no sample %s in the scrape", pattern)
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}
	checks := []struct {
		sample string
		min    float64
	}{
		{`artifactstore_http_requests_total{code="201",method="POST",route="POST /v1/uploads"}`, 1},
		{`artifactstore_http_requests_total{code="201",method="PUT",route="PUT /v1/uploads/{id}/blobs/{digest}"}`, 1},
		{`artifactstore_http_requests_total{code="201",method="POST",route="POST /v1/uploads/{id}/commit"}`, 1},
		{`artifactstore_http_requests_total{code="200",method="GET",route="GET /v1/packages/{name}/{version}/files/{path...}"}`, 1},
		{`artifactstore_http_received_bytes_total{route="PUT /v1/uploads/{id}/blobs/{digest}"}`, 4096},
		{`artifactstore_http_sent_bytes_total{route="GET /v1/packages/{name}/{version}/files/{path...}"}`, 4096},
		{`artifactstore_backend_bytes_total{backend="local",direction="write"}`, 4096},
		{`artifactstore_backend_bytes_total{backend="local",direction="read"}`, 8192}, // fetch + verify
		{`artifactstore_backend_operation_duration_seconds_count{backend="local",operation="put"}`, 1},
		{`artifactstore_verification_runs_total{backend="local",mode="deep",result="ok"}`, 1},
		{`artifactstore_verification_objects_total{backend="local",mode="deep",verdict="verified"}`, 1},
		{`artifactstore_verification_read_bytes_total{backend="local",mode="deep"}`, 4096},
		{`artifactstore_storage_blobs{backend="local"}`, 1},
		{`artifactstore_storage_bytes{backend="local"}`, 4096},
		{`artifactstore_storage_locations{backend="local",status="verified"}`, 1},
		{`artifactstore_db_size_bytes`, 4096},
	}
	for _, c := range checks {
		if v := value(c.sample); v < c.min {
			t.Errorf("%s = %v, want at least %v", c.sample, v, c.min)
		}
	}
	if !bytes.Contains(body, []byte("artifactstore_build_info{")) || !bytes.Contains(body, []byte("artifactstore_verification_last_success_timestamp_seconds{")) {
		t.Error("build info or last success time missing")
	}
	for _, unbounded := range []string{"metricpkg", "secret-package-file", sha(files["secret-package-file.bin"])} {
		if bytes.Contains(body, []byte(unbounded)) {
			t.Errorf("a label carries %q", unbounded)
		}
	}
}
