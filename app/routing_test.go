package app

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"artifactstore/internal/client"
)

// TestBackendDown: publishes routed to a backend that is down fail fast with
// 503 naming it; the other backend keeps serving; /readyz names it.
func TestBackendDown(t *testing.T) {
	t.Setenv("DOWN_KEY", "k")
	t.Setenv("DOWN_SECRET", "s3cr3t-value-for-down-test")
	env := startService(t, `
data_dir: @DIR@/data
backends:
  local:
    type: local
    path: @DIR@/objects
  offline:
    type: s3
    endpoint_url: http://127.0.0.1:1
    bucket: artifacts
    access_key_ref: env:DOWN_KEY
    secret_key_ref: env:DOWN_SECRET
    max_retries: 1
routing:
  default: local
  rules:
    - producer: "remote-*"
      backend: offline
`)
	files := map[string][]byte{"f": []byte("kept locally")}
	publish(t, env.c, manifestOf("up", "1", "local-ci", "release", files), files)

	start := time.Now()
	_, err := env.c.Begin(ctxT(t), manifestOf("down", "1", "remote-ci", "release", files))
	var ae *client.Error
	if !errorsAs(err, &ae) || ae.Status != 503 || ae.Code != "backend_unavailable" || ae.Backend != "offline" || !strings.Contains(ae.Message, "offline") {
		t.Fatalf("publish to a down backend: %v (%+v)", err, ae)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("failing took %s; want fast", took)
	}
	resp, body := get(t, env.c, client.FilePath("up", "1", "f"), nil)
	if resp.StatusCode != 200 || string(body) != "kept locally" {
		t.Fatalf("read from the healthy backend: %d %q", resp.StatusCode, body)
	}
	resp, body = get(t, env.c, "/readyz", nil)
	var ready struct {
		Status string            `json:"status"`
		Down   map[string]string `json:"backends_down"`
	}
	json.Unmarshal(body, &ready)
	if resp.StatusCode != http.StatusServiceUnavailable || ready.Down["offline"] == "" || ready.Down["local"] != "" {
		t.Fatalf("/readyz = %d %s", resp.StatusCode, body)
	}
	if bytes.Contains(body, []byte("s3cr3t-value-for-down-test")) {
		t.Fatal("/readyz reveals the secret")
	}
}
