package app

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"artifactstore/backends"
	"artifactstore/internal/client"
	"artifactstore/store"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// buildBinary builds the real artifactstore binary once per test run.
func buildBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "artifactstore-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "artifactstore")
		cmd := exec.Command("go", "build", "-o", binPath, "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// proc is a running `artifactstore serve`.
type proc struct {
	token string
	cmd   *exec.Cmd
	url   string
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startProc runs the binary's serve command with the given config file and
// extra environment, and waits until /healthz answers 200 (a config with a
// backend that is down never becomes ready).
func startProc(t testing.TB, cfgFile string, env ...string) *proc {
	t.Helper()
	p := startProcNoWait(t, cfgFile, env...)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.New(p.url).Get(context.Background(), "/healthz", nil)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("server did not become ready; log:\n%s", p.logs.String())
	return nil
}

// startProcNoWait starts serve with an admin token created beforehand.
func startProcNoWait(t testing.TB, cfgFile string, env ...string) *proc {
	t.Helper()
	token := adminTokenFor(t, cfgFile)
	addr := freePort(t)
	cmd := exec.Command(buildBinary(t), "serve", "--config", cfgFile, "--listen", addr)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{cmd: cmd, url: "http://" + addr, logs: &syncBuffer{}, token: token}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return p
}

func TestKillBetweenUploadAndCommitLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte(strings.ReplaceAll(localConfig, "@DIR@", dir)), 0o600)
	p := startProc(t, cfg)
	c := clientFor(p)
	files := map[string][]byte{"a.bin": randBytes(3, 2<<20), "b.txt": []byte("staged, never committed")}
	br, err := c.Begin(ctxT(t), manifestOf("crashy", "1", "ci", "release", files))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range br.Needed {
		for _, data := range files {
			if sha(data) == n.SHA256 {
				if err := c.Upload(ctxT(t), br.UploadID, n.SHA256, n.Size, bytes.NewReader(data)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// The staged objects are in the backend now.
	objects := filepath.Join(dir, "objects")
	if staged := countObjects(t, objects, "artifacts"); staged != 2 {
		t.Fatalf("%d objects staged before the kill, want 2", staged)
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()

	restarted := time.Now()
	p2 := startProc(t, cfg)
	c2 := clientFor(p2)
	if _, err := c2.GetPackage(ctxT(t), "crashy", "1"); client.Code(err) != "not_found" {
		t.Fatalf("package after crash: %v, want not_found", err)
	}
	if _, _, err := c2.Commit(ctxT(t), br.UploadID); client.Code(err) != "not_found" {
		t.Fatalf("commit of the dead session after restart: %v, want not_found", err)
	}
	if n := countObjects(t, objects, "artifacts"); n != 0 {
		t.Fatalf("%d staged objects survived the restart", n)
	}
	// Nothing else the killed process wrote is left either. Files written
	// since the restart are the new process's own (a manifest record in
	// flight, a storage check's probe) and are not counted.
	if s := strayFiles(objects, "artifacts", restarted); s != "" {
		t.Fatalf("files of the killed process survived the restart: %s", s)
	}
	// The store works normally afterwards.
	publish(t, c2, manifestOf("crashy", "1", "ci", "release", files), files)
	if n := countObjects(t, objects, "artifacts"); n != 2 {
		t.Fatalf("%d objects after a clean publish, want 2", n)
	}
}

// countObjects counts the content objects under a local backend's root
// (keys of the content layout under prefix): not its temporary files,
// which the service's background work (the record worker, the storage
// check) may be writing at any moment, nor its records.
func countObjects(t testing.TB, root, prefix string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(root, p)
			if _, ok := backends.ParseObjectKey(prefix, filepath.ToSlash(rel)); ok {
				n++
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return n
}

// countFiles counts the files under root: content objects and temporary
// files, not the manifest records and snapshots internal/recovery keeps
// beside the content.
func countFiles(t testing.TB, root string) int {
	t.Helper()
	n := 0
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && !isRecordFile(root, p) {
			n++
		}
		return nil
	})
	return n
}

// isRecordFile reports whether p (under a local backend's root) is a
// manifest record (<prefix>/packages/<name>/<version>.json) or a database
// snapshot (<prefix>/snapshots/<file>).
func isRecordFile(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return false
	}
	segs := strings.Split(filepath.ToSlash(rel), "/")
	for i := 0; i < len(segs) && i <= 1; i++ {
		switch {
		case segs[i] == "packages" && len(segs) == i+3 && strings.HasSuffix(segs[i+2], ".json"):
			return true
		case segs[i] == "snapshots" && len(segs) == i+2:
			return true
		}
	}
	return false
}

func TestSecondProcessFailsOnDatabaseLock(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte(strings.ReplaceAll(localConfig, "@DIR@", dir)+"database:\n  lock_timeout: 1s\n"), 0o600)
	startProc(t, cfg)
	start := time.Now()
	cmd := exec.Command(buildBinary(t), "serve", "--config", cfg, "--listen", freePort(t))
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err == nil {
		t.Fatal("second process started on a locked database")
	}
	if took > 10*time.Second {
		t.Fatalf("second process took %s to fail; the lock timeout is 1s", took)
	}
	msg := string(out)
	dbPath := filepath.Join(dir, "data", "registry.db")
	if !strings.Contains(msg, "locked by another process") || !strings.Contains(msg, dbPath) || !strings.Contains(msg, "file lock") {
		t.Fatalf("error does not name the lock and the file:\n%s", msg)
	}
}

// TestReadmeWalkthrough runs the README's curl block, as written, against a
// server started from config.example.yaml (the config `make run` uses).
func TestReadmeWalkthrough(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed for the README walkthrough test: apt-get install curl")
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- walkthrough:start -->\\s*```bash\\n(.*?)```\\s*<!-- walkthrough:end -->").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README.md has no walkthrough block")
	}
	script := string(m[1])
	dir := t.TempDir()
	example, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "config.example.yaml"), example, 0o600)
	dataEnv := "ARTIFACTSTORE_DATA_DIR=" + filepath.Join(dir, "data")
	t.Setenv("ARTIFACTSTORE_DATA_DIR", filepath.Join(dir, "data"))
	p := startProc(t, filepath.Join(dir, "config.example.yaml"), dataEnv)
	run := func() string {
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "ARTIFACTSTORE_URL="+p.url, "AS="+buildBinary(t), dataEnv)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("walkthrough failed: %v\n%s\nserver log:\n%s", err, out, p.logs.String())
		}
		return string(out)
	}
	s := run()
	// A reader runs it again: everything is published already, and every
	// step must still pass (step 5 answers "exists").
	if again := run(); !strings.Contains(again, `"status": "exists"`) {
		t.Errorf("second walkthrough run did not find the package published:\n%s", again)
	}
	for _, want := range []string{`"name": "hello"`, "hello", `"needed"`, `"version": "1.1.0"`, "v1.package.created", "Repr-Digest"} {
		if !strings.Contains(s, want) {
			t.Errorf("walkthrough output lacks %q", want)
		}
	}
	// Step 5 uploaded only NOTES: the begin answer asked for one file.
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"skipped_bytes"`) && strings.Contains(sc.Text(), `: 0`) {
			t.Errorf("staged publish skipped nothing: %s", sc.Text())
		}
	}
	c := clientFor(p)
	pkg, err := c.GetPackage(ctxT(t), "hello", "1.1.0")
	if err != nil || len(pkg.Files) != 2 {
		t.Fatalf("hello@1.1.0 after the walkthrough: %v %+v", err, pkg)
	}
}

func clientFor(p *proc) *client.Client {
	c := client.New(p.url)
	c.Token = p.token
	return c
}

// adminTokenFor creates an admin token in the config's database before a
// process opens it (afterwards the process holds the lock).
func adminTokenFor(t testing.TB, cfgFile string) string {
	t.Helper()
	cfg, err := LoadConfig(LoadOptions{File: cfgFile, Environ: os.Environ()})
	if err != nil {
		t.Fatalf("load %s: %v", cfgFile, err)
	}
	st, err := store.Open(cfg.Database.Path, store.Options{LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tok, _, err := st.CreateToken(context.Background(), "test", "admin", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("server exit after SIGTERM: %v\n%s", err, p.logs.String())
	}
}
