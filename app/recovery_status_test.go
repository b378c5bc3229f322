package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRecoveryHealthAndMetrics: /v1/health and /metrics say how many
// records are pending, when the last snapshot was written and whether the
// last attempt failed.
func TestRecoveryHealthAndMetrics(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken")
	cfg := writeLocalConfig(t, dir, filepath.Join(dir, "objects"), "snapshots:\n  keep: 2\n")
	// A second local backend that will stop accepting writes.
	raw, _ := os.ReadFile(cfg)
	body := strings.Replace(string(raw), "routing:", "  broken:\n    type: local\n    path: "+broken+"\nrouting:", 1)
	os.WriteFile(cfg, []byte(body), 0o600)
	env := startServiceFile(t, cfg, nil)
	for _, v := range []string{"1", "2"} {
		files := map[string][]byte{"f": []byte("status " + v)}
		publish(t, env.c, manifestOf("st", v, "ci", "release", files), files)
	}
	if err := env.svc.Recovery.Flush(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	health := func() map[string]any {
		t.Helper()
		resp, b := get(t, env.c, "/v1/health", nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("health: %d", resp.StatusCode)
		}
		var doc struct {
			Status   string         `json:"status"`
			Recovery map[string]any `json:"recovery"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		doc.Recovery["status"] = doc.Status
		return doc.Recovery
	}
	if h := health(); h["records_pending"] != 0.0 || h["last_snapshot"] != nil || h["status"] != "ok" {
		t.Fatalf("health before any snapshot: %v", h)
	}
	if code, out, errOut := runCLI(t, "backup", "--config", cfg, "--to-backend", "local"); code != 0 {
		t.Fatalf("backup --to-backend local: exit %d\n%s\n%s", code, out, errOut)
	}
	h := health()
	last, _ := h["last_snapshot"].(map[string]any)
	if last == nil || last["backend"] != "local" || !strings.HasPrefix(fmt.Sprint(last["name"]), "snapshots/") {
		t.Fatalf("health after a snapshot: %v", h)
	}
	m := scrape(t, env)
	for _, want := range []string{
		"artifactstore_records_pending 0",
		`artifactstore_record_writes_total{backend="local",result="ok"} 2`,
		`artifactstore_snapshots_total{backend="local",result="ok"} 1`,
		`artifactstore_snapshot_last_success_timestamp_seconds{backend="local"} `,
		`artifactstore_snapshot_bytes{backend="local"} `,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, grepLines(m, "artifactstore_snap")+"\n"+grepLines(m, "artifactstore_record"))
		}
	}

	// A file where the broken backend's snapshots directory would be: the
	// backend is healthy, but no snapshot can be written into it.
	if err := os.WriteFile(filepath.Join(broken, "snapshots"), []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := runCLI(t, "backup", "--config", cfg, "--to-backend", "broken"); code != 1 {
		t.Fatalf("a snapshot into a broken backend: exit %d, want 1", code)
	}
	h = health()
	if h["last_snapshot_error"] == nil || h["status"] != "degraded" {
		t.Fatalf("health after a failed snapshot: %v", h)
	}
	if m := scrape(t, env); !strings.Contains(m, `artifactstore_snapshots_total{backend="broken",result="error"} 1`) {
		t.Fatalf("metrics after a failed snapshot:\n%s", grepLines(m, "artifactstore_snap"))
	}
	os.Remove(filepath.Join(broken, "snapshots"))
	if code, _, _ := runCLI(t, "backup", "--config", cfg, "--to-backend", "broken"); code != 0 {
		t.Fatal("the snapshot after the repair failed")
	}
	if h := health(); h["last_snapshot_error"] != nil || h["status"] != "ok" {
		t.Fatalf("health after a good snapshot following a failed one: %v", h)
	}
}
