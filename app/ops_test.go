package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"artifactstore/internal/client"
	"artifactstore/store"
)

func writeLocalConfig(t testing.TB, dir, objects, extra string) string {
	t.Helper()
	os.MkdirAll(dir, 0o750)
	cfg := filepath.Join(dir, "config.yaml")
	body := fmt.Sprintf("data_dir: %s/data\nbackends:\n  local:\n    type: local\n    path: %s\n    key_prefix: artifacts\nrouting:\n  default: local\n%s", dir, objects, extra)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestBackupWhileServingThenRestore: a backup taken while publishes go on
// restores to a database that passes db check and holds every package
// committed before the backup started.
func TestBackupWhileServingThenRestore(t *testing.T) {
	dir := t.TempDir()
	objects := filepath.Join(dir, "objects")
	cfg := writeLocalConfig(t, dir, objects, "")
	p := startProc(t, cfg)
	c := clientFor(p)

	var mu sync.Mutex
	var committed []string
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			f := map[string][]byte{"f": []byte(fmt.Sprintf("content %d", i))}
			m := manifestOf("busy", fmt.Sprint(i), "ci", "release", f)
			br, err := c.Begin(context.Background(), m)
			if err != nil {
				continue
			}
			for _, n := range br.Needed {
				c.Upload(context.Background(), br.UploadID, n.SHA256, n.Size, bytes.NewReader(f["f"]))
			}
			if _, _, err := c.Commit(context.Background(), br.UploadID); err == nil {
				mu.Lock()
				committed = append(committed, m.Version)
				mu.Unlock()
			}
		}
	}()
	for {
		mu.Lock()
		n := len(committed)
		mu.Unlock()
		if n >= 20 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	before := append([]string{}, committed...)
	mu.Unlock()
	backup := filepath.Join(dir, "backups", "registry.bak")
	code, out, errOut := runCLI(t, "backup", "--config", cfg, "--out", backup)
	if code != 0 || !strings.Contains(out, "through the running service") {
		t.Fatalf("backup while serving: exit %d\n%s\n%s", code, out, errOut)
	}
	time.Sleep(100 * time.Millisecond) // publishes continue after the backup
	close(stop)
	<-done

	// Restore refuses to overwrite the live database.
	code, _, errOut = runCLI(t, "restore", "--config", cfg, "--from", backup, "--force")
	if code == 0 || !strings.Contains(errOut, "running service") {
		t.Fatalf("restore over a live database: exit %d, %s", code, errOut)
	}
	p.stop(t)

	// Restore into a fresh data directory beside the same objects.
	dir2 := t.TempDir()
	cfg2 := writeLocalConfig(t, dir2, objects, "")
	code, out, errOut = runCLI(t, "restore", "--config", cfg2, "--from", backup)
	if code != 0 {
		t.Fatalf("restore: exit %d\n%s\n%s", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "restore", "--config", cfg2, "--from", backup)
	if code == 0 || !strings.Contains(errOut, "--force") {
		t.Fatalf("restore over an existing database without --force: exit %d, %s", code, errOut)
	}
	// The database itself is consistent. The service kept writing manifest
	// records after the backup, so db check names the packages committed
	// after it (recover would bring them back), and nothing else.
	code, out, errOut = runCLI(t, "db", "check", "--config", cfg2)
	if code != 0 || !strings.Contains(out, "consistent") {
		if code != 1 {
			t.Fatalf("db check of the restored database: exit %d\n%s\n%s", code, out, errOut)
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			v, ok := strings.CutPrefix(line, "PROBLEM record_without_package: local:packages/busy/")
			v, _, _ = strings.Cut(v, ".json")
			if !ok || slices.Contains(before, v) {
				t.Fatalf("db check of the restored database: %q is not a package committed after the backup\n%s\n%s", line, out, errOut)
			}
		}
	}
	env := startServiceFile(t, cfg2, nil)
	for _, v := range before {
		if _, err := env.c.GetPackage(ctxT(t), "busy", v); err != nil {
			t.Fatalf("busy@%s was committed before the backup but is not in it: %v", v, err)
		}
	}
	_, body := get(t, env.c, client.FilePath("busy", before[0], "f"), nil)
	if string(body) != "content "+before[0] {
		t.Fatalf("restored package content: %q", body)
	}
	t.Logf("%d packages committed before the backup, all restored", len(before))
}

// TestDBCheckFindsInjectedInconsistency: db check names what is wrong.
func TestDBCheckFindsInjectedInconsistency(t *testing.T) {
	dir := t.TempDir()
	cfg := writeLocalConfig(t, dir, filepath.Join(dir, "objects"), "")
	env := startServiceFile(t, cfg, nil)
	files := map[string][]byte{"a.txt": []byte("aaa"), "b.txt": []byte("bbb")}
	publish(t, env.c, manifestOf("dbc", "1", "ci", "release", files), files)
	env.stop()
	if code, out, _ := runCLI(t, "db", "check", "--config", cfg); code != 0 {
		t.Fatalf("clean database: exit %d\n%s", code, out)
	}
	st, err := store.Open(filepath.Join(dir, "data", "registry.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dA := "sha256:" + sha(files["a.txt"])
	dB := "sha256:" + sha(files["b.txt"])
	err = st.DB().Update(func(tx *bolt.Tx) error {
		locs := tx.Bucket([]byte("storage_locations"))
		v := locs.Get([]byte(dB + "\x00local"))
		if err := locs.Put([]byte(dB+"\x00gone"), bytes.Replace(v, []byte(`"local"`), []byte(`"gone"`), 1)); err != nil {
			return err
		}
		return locs.Delete([]byte(dA + "\x00local"))
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI(t, "db", "check", "--config", cfg)
	if code != 1 {
		t.Fatalf("db check of a damaged database: exit %d\n%s", code, out)
	}
	for _, want := range []string{"file_without_location: dbc@1 a.txt", "unknown_backend: " + dB + " on gone"} {
		if !strings.Contains(out, want) {
			t.Errorf("db check output lacks %q:\n%s", want, out)
		}
	}
}

// slowBody sends n bytes slowly and reports when half is sent.
type slowBody struct {
	left, sent int64
	half       chan struct{}
	once       sync.Once
}

func (s *slowBody) Read(p []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	if len(p) > 64<<10 {
		p = p[:64<<10]
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	for i := range p {
		p[i] = 'x'
	}
	s.left -= int64(len(p))
	s.sent += int64(len(p))
	if s.left < s.sent {
		s.once.Do(func() { close(s.half) })
		time.Sleep(20 * time.Millisecond)
	}
	return len(p), nil
}

// TestSIGTERMDuringUploadLeavesNothing: SIGTERM while a large upload is in
// flight: the server waits out the shutdown timeout, cancels the upload,
// exits cleanly, and leaves no object, temp file or open session.
func TestSIGTERMDuringUploadLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	objects := filepath.Join(dir, "objects")
	cfg := writeLocalConfig(t, dir, objects, "server:\n  shutdown_timeout: 1s\n")
	p := startProc(t, cfg)
	c := clientFor(p)
	const size = 64 << 20
	sum := strings.Repeat("0", 64) // the body never completes; its digest does not matter
	br, err := c.Begin(ctxT(t), client.Manifest{Name: "big", Version: "1", Producer: "ci", RetentionClass: "release",
		Files: []client.File{{Path: "big.bin", Size: size, SHA256: sum}}})
	if err != nil {
		t.Fatal(err)
	}
	body := &slowBody{left: size, half: make(chan struct{})}
	upErr := make(chan error, 1)
	go func() { upErr <- c.Upload(context.Background(), br.UploadID, sum, size, body) }()
	<-body.half
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.logs.String())
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("shutdown took %s with a 1s timeout", took)
	}
	if err := <-upErr; err == nil {
		t.Fatal("the interrupted upload reported success")
	}
	if n := countFiles(t, objects); n != 0 {
		t.Fatalf("%d files left in the backend after shutdown", n)
	}
	if !strings.Contains(p.logs.String(), "shutting down") {
		t.Fatalf("no shutdown log line:\n%s", p.logs.String())
	}
	// The next start is clean.
	env := startServiceFile(t, cfg, nil)
	counts, _ := env.svc.Store.Counts(ctxT(t))
	if counts["upload_sessions"] != 0 || counts["upload_refs"] != 0 || counts["packages"] != 0 {
		t.Fatalf("after restart: %v", counts)
	}
}

// TestSystemdNotify: under systemd (NOTIFY_SOCKET set) the service reports
// READY=1 once it serves and STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cfg := writeLocalConfig(t, dir, filepath.Join(dir, "objects"), "")
	p := startProc(t, cfg, "NOTIFY_SOCKET="+sock)
	read := func() string {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 256)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}
	if got := read(); got != "READY=1" {
		t.Fatalf("first notification %q", got)
	}
	p.stop(t)
	if got := read(); got != "STOPPING=1" {
		t.Fatalf("notification at shutdown %q", got)
	}
}

// TestSystemdUnits: the unit files under docs/systemd pass systemd-analyze
// verify (with ExecStart pointing at a real binary) and keep their hardening.
func TestSystemdUnits(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is needed to check the unit files")
		}
		t.Skip("systemd-analyze not installed")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	var units []string
	for _, name := range []string{"artifactstore.service", "artifactstore-verify.service", "artifactstore-verify.timer"} {
		b, err := os.ReadFile(filepath.Join("..", "docs", "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "artifactstore.service" {
			for _, want := range []string{"Type=notify", "User=artifactstore", "ProtectSystem=strict", "ReadWritePaths=/var/lib/artifactstore", "NoNewPrivileges=yes", "PrivateTmp=yes"} {
				if !bytes.Contains(b, []byte(want)) {
					t.Errorf("%s lacks %s", name, want)
				}
			}
		}
		b = bytes.ReplaceAll(b, []byte("/usr/local/bin/artifactstore"), []byte(bin))
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		units = append(units, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, units...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
