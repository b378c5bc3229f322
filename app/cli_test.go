package app

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"artifactstore/backends/s3/s3test"
)

// runCLI runs the command line in-process and returns exit code and output.
func runCLI(t testing.TB, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), append([]string{"artifactstore"}, args...), Env{Stdout: &out, Stderr: &errb, Environ: os.Environ()})
	return code, out.String(), errb.String()
}

func TestStorageCheckLocal(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(strings.ReplaceAll(localConfig, "@DIR@", dir)), 0o600)
	code, out, errOut := runCLI(t, "storage", "check", "--config", cfg, "--backend", "local")
	if code != 0 || strings.Contains(out, "FAIL") || strings.Count(out, "PASS") < 12 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if n := countFiles(t, filepath.Join(dir, "objects")); n != 0 {
		t.Fatalf("storage check left %d files behind", n)
	}
	code, _, errOut = runCLI(t, "storage", "check", "--config", cfg, "--backend", "nope")
	if code != 2 || !strings.Contains(errOut, "nope") {
		t.Fatalf("unknown backend: exit %d, %s", code, errOut)
	}
}

// TestStorageCheckS3 runs the operator self-test against every real server;
// docs/OPERATOR.md records its output.
func TestStorageCheckS3(t *testing.T) {
	for _, srv := range s3test.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "c.yaml")
			bucket := srv.NewBucket(t)
			os.WriteFile(cfg, []byte("data_dir: "+dir+"\nbackends:\n"+s3BackendYAML(srv.Name, bucket)+"routing:\n  default: "+srv.Name+"\n"), 0o600)
			code, out, errOut := runCLI(t, "storage", "check", "--config", cfg, "--backend", srv.Name)
			t.Logf("%s", out)
			if code != 0 || strings.Contains(out, "FAIL") {
				t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
			}
			c := srv.Client(t)
			if left := s3test.IncompleteUploads(t, c, bucket.Bucket, ""); len(left) > 0 {
				t.Fatalf("incomplete uploads left: %v", left)
			}
			n := 0
			for o := range c.Client.ListObjects(t.Context(), bucket.Bucket, listAll) {
				if o.Err == nil {
					n++
				}
			}
			if n != 0 {
				t.Fatalf("storage check left %d objects", n)
			}
		})
	}
}

// TestStorageLsOnlineAndOffline: the same report whether the CLI reaches a
// running service over the admin socket or opens the database itself.
func TestStorageLsOnlineAndOffline(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(strings.ReplaceAll(localConfig, "@DIR@", dir)), 0o600)
	p := startProc(t, cfg)
	files := map[string][]byte{"a": []byte("aaa"), "b": []byte("bbbb")}
	publish(t, clientFor(p), manifestOf("ls", "1", "ci", "release", files), files)

	code, online, errOut := runCLI(t, "storage", "ls", "--config", cfg, "--json")
	if code != 0 {
		t.Fatalf("online: exit %d: %s", code, errOut)
	}
	p.stop(t)
	code, offline, errOut := runCLI(t, "storage", "ls", "--config", cfg, "--json")
	if code != 0 {
		t.Fatalf("offline: exit %d: %s", code, errOut)
	}
	var rep storageReport
	if err := json.Unmarshal([]byte(offline), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Backends) != 1 || rep.Backends[0].Blobs != 2 || rep.Backends[0].Bytes != 7 || rep.Routing.Default != "local" {
		t.Fatalf("report = %+v", rep)
	}
	if online != offline {
		t.Fatalf("online and offline reports differ:\n%s\n%s", online, offline)
	}
	code, text, _ := runCLI(t, "storage", "ls", "--config", cfg)
	if code != 0 || !strings.Contains(text, "default -> local") || !strings.Contains(text, "BLOBS") {
		t.Fatalf("text report: %s", text)
	}
}

var listAll = minio.ListObjectsOptions{Recursive: true}
