package app

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"artifactstore/store"
)

// TestDBCheckRepairRebuildsCounters: a wrong location counter shows in
// /metrics (they are read, not recomputed), db check reports it, and
// db check --repair rebuilds it from the locations.
func TestDBCheckRepairRebuildsCounters(t *testing.T) {
	dir := t.TempDir()
	cfg := writeLocalConfig(t, dir, filepath.Join(dir, "objects"), "")
	env := startServiceFile(t, cfg, nil)
	files := map[string][]byte{"a.txt": []byte("aaa"), "b.txt": []byte("bbbb")}
	publish(t, env.c, manifestOf("ctr", "1", "ci", "release", files), files)
	if m := scrape(t, env); !strings.Contains(m, `artifactstore_storage_blobs{backend="local"} 2`) || !strings.Contains(m, `artifactstore_storage_bytes{backend="local"} 7`) {
		t.Fatalf("metrics before damage:\n%s", grepLines(m, "artifactstore_storage_"))
	}
	env.stop()

	st, err := store.Open(filepath.Join(dir, "data", "registry.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = st.DB().Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("location_counts")).Put([]byte("local\x00stored"), append(make([]byte, 7), 9, 0, 0, 0, 0, 0, 0, 0, 1))
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI(t, "db", "check", "--config", cfg)
	if code != 1 || !strings.Contains(out, "counter_mismatch") {
		t.Fatalf("db check of a wrong counter: exit %d\n%s", code, out)
	}
	code, out, errOut := runCLI(t, "db", "check", "--repair", "--config", cfg)
	if code != 0 || !strings.Contains(out, "REPAIRED counter_mismatch") {
		t.Fatalf("db check --repair: exit %d\n%s\n%s", code, out, errOut)
	}
	env = startServiceFile(t, cfg, nil)
	defer env.stop()
	if m := scrape(t, env); !strings.Contains(m, `artifactstore_storage_blobs{backend="local"} 2`) || !strings.Contains(m, `artifactstore_storage_locations{backend="local",status="stored"} 2`) {
		t.Fatalf("metrics after repair:\n%s", grepLines(m, "artifactstore_storage_"))
	}
}

func scrape(t *testing.T, env *testEnv) string {
	t.Helper()
	resp, err := http.Get(env.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
