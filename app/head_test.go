package app

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"artifactstore/internal/client"
	"artifactstore/store"
)

// TestHeadAnswersFromTheRegistry: HEAD of a file or a blob is answered
// from the registry without opening a backend. The object is removed
// behind the registry's back: HEAD still answers with the recorded size
// and digest (the old HEAD opened the backend and failed), GET fails, and
// once verification records the location as missing HEAD fails too.
func TestHeadAnswersFromTheRegistry(t *testing.T) {
	dir := t.TempDir()
	cfg := writeLocalConfig(t, dir, filepath.Join(dir, "objects"), "")
	env := startServiceFile(t, cfg, nil)
	defer env.stop()
	files := map[string][]byte{"a.txt": []byte("hello head")}
	publish(t, env.c, manifestOf("head", "1", "ci", "release", files), files)
	sum := sha(files["a.txt"])
	obj := filepath.Join(dir, "objects", "artifacts", "sha256", sum[:2], sum[2:4], sum)
	if err := os.Remove(obj); err != nil {
		t.Fatal(err)
	}
	do := func(method, path string) *http.Response {
		req, _ := http.NewRequest(method, env.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+env.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, path := range []string{client.FilePath("head", "1", "a.txt"), "/v1/blobs/sha256:" + sum} {
		resp := do(http.MethodHead, path)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != strconv.Itoa(len(files["a.txt"])) || resp.Header.Get("Repr-Digest") == "" {
			t.Fatalf("HEAD %s: %d %v", path, resp.StatusCode, resp.Header)
		}
		if resp := do(http.MethodGet, path); resp.StatusCode == 200 {
			t.Fatalf("GET %s of a removed object: 200", path)
		}
	}
	err := env.svc.Store.RecordVerdict(context.Background(), store.Verdict{Digest: "sha256:" + sum, Backend: "local", Mode: store.ModeQuick, Verdict: store.StatusMissing, At: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if resp := do(http.MethodHead, client.FilePath("head", "1", "a.txt")); resp.StatusCode == 200 {
		t.Fatal("HEAD of a file whose only location is missing: 200")
	}
}
