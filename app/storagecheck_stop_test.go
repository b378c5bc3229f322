package app

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStorageCheckStopsWhenBackendDown: against a refused port the check
// ends after the health step and says why, instead of running (and timing
// out through) every step.
func TestStorageCheckStopsWhenBackendDown(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(`data_dir: `+dir+`
backends:
  down:
    type: s3
    endpoint_url: http://`+freePort(t)+`
    bucket: nothing-here
    access_key_ref: env:DOWN_KEY
    secret_key_ref: env:DOWN_KEY
routing:
  default: down
`), 0o600)
	environ := []string{"DOWN_KEY=x"}
	t.Setenv("DOWN_KEY", "x")
	start := time.Now()
	code, out, errOut := runCLIEnv(t, environ, "storage", "check", "--config", cfg, "--backend", "down")
	took := time.Since(start)
	if code != 1 || strings.Count(out, "FAIL") != 1 || strings.Contains(out, "PASS") || !strings.Contains(out, "FAIL  health") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "stopped here: the backend is not reachable") || !strings.Contains(out, "skipped the remaining 11 of 12 steps") {
		t.Fatalf("no reason for stopping:\n%s", out)
	}
	if took > 4*time.Second {
		t.Fatalf("storage check of a refused port took %s", took)
	}
	_, out, _ = runCLIEnv(t, environ, "storage", "check", "--config", cfg, "--backend", "down", "--json")
	var rep struct {
		OK    bool        `json:"ok"`
		Steps []CheckStep `json:"steps"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.OK || len(rep.Steps) != 1 || rep.Steps[0].Stopped == "" {
		t.Fatalf("json report %s (%v)", out, err)
	}
}
