package app

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"artifactstore/internal/recovery"
)

// TestKillBeforeRecordWriteLosesNothing: the process is killed (SIGKILL,
// from its own record writer) after a commit and before the package's
// manifest record reached the backend; the record outbox in the database
// still names the package, so the next start writes the record, and db
// check finds database and records in agreement.
func TestKillBeforeRecordWriteLosesNothing(t *testing.T) {
	dir := t.TempDir()
	objects := filepath.Join(dir, "objects")
	cfg := writeLocalConfig(t, dir, objects, "")
	p := startProc(t, cfg, recoveryKillAtEnv+"=records.put:1")
	files := map[string][]byte{"a.txt": []byte("recorded after a crash")}
	m := manifestOf("outboxed", "1", "ci", "release", files)
	c := clientFor(p)
	br, err := c.Begin(ctxT(t), m)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range br.Needed {
		if err := c.Upload(ctxT(t), br.UploadID, n.SHA256, n.Size, strings.NewReader(string(files["a.txt"]))); err != nil {
			t.Fatal(err)
		}
	}
	c.Commit(ctxT(t), br.UploadID) // the process may die before it answers
	err = p.cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the process was not killed at its first record write: %v\n%s", err, p.logs.String())
	}
	record := filepath.Join(objects, "artifacts", filepath.FromSlash(recovery.RecordName("outboxed", "1")))
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Fatalf("the record exists although the writer was killed before writing it: %v", err)
	}

	p = startProc(t, cfg)
	waitFor(t, 10*time.Second, "the record of the package committed before the kill", func() string {
		if _, err := os.Stat(record); err != nil {
			return err.Error()
		}
		return ""
	})
	if _, err := clientFor(p).GetPackage(ctxT(t), "outboxed", "1"); err != nil {
		t.Fatalf("the package committed before the kill: %v", err)
	}
	code, out, errOut := runCLI(t, "db", "check", "--config", cfg)
	if code != 0 {
		t.Fatalf("db check after the restart: exit %d\n%s\n%s", code, out, errOut)
	}
	p.stop(t)
}

// TestDBCheckComparesRecords: db check names a tampered record, a missing
// one and one of a package the database lacks; --repair rewrites the
// first two from the database and leaves the third (it may be all that
// is left of a package: recover imports it).
func TestDBCheckComparesRecords(t *testing.T) {
	dir := t.TempDir()
	objects := filepath.Join(dir, "objects")
	cfg := writeLocalConfig(t, dir, objects, "")
	env := startServiceFile(t, cfg, nil)
	for _, v := range []string{"1", "2", "3"} {
		files := map[string][]byte{"f": []byte("content of " + v)}
		publish(t, env.c, manifestOf("rec", v, "ci", "release", files), files)
	}
	if err := env.svc.Recovery.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	env.stop()
	path := func(v string) string {
		return filepath.Join(objects, "artifacts", filepath.FromSlash(recovery.RecordName("rec", v)))
	}
	raw, err := os.ReadFile(path("1"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `"team": "storage"`) {
		t.Fatalf("record lacks the package's labels:\n%s", raw)
	}
	tampered := strings.Replace(string(raw), `"team": "storage"`, `"team": "intruder"`, 1)
	if err := os.WriteFile(path("1"), []byte(tampered), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path("2")); err != nil {
		t.Fatal(err)
	}
	ghost := strings.ReplaceAll(string(raw), `"rec"`, `"ghost"`) // its digest no longer matches either
	os.MkdirAll(filepath.Dir(strings.Replace(path("1"), "rec", "ghost", 1)), 0o750)
	if err := os.WriteFile(strings.Replace(path("1"), "rec", "ghost", 1), []byte(ghost), 0o640); err != nil {
		t.Fatal(err)
	}

	code, out, _ := runCLI(t, "db", "check", "--config", cfg)
	if code != 1 {
		t.Fatalf("db check with damaged records: exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"PROBLEM record_tampered: local:packages/rec/1.json",
		"PROBLEM package_without_record: local:packages/rec/2.json",
		"PROBLEM record_tampered: local:packages/ghost/1.json",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("db check output lacks %q:\n%s", want, out)
		}
	}
	code, out, errOut := runCLI(t, "db", "check", "--repair", "--config", cfg)
	if code != 1 || !strings.Contains(out, "REPAIRED record_tampered: local:packages/rec/1.json") ||
		!strings.Contains(out, "REPAIRED package_without_record: local:packages/rec/2.json") ||
		!strings.Contains(out, "PROBLEM record_tampered: local:packages/ghost/1.json") {
		t.Fatalf("db check --repair: exit %d\n%s\n%s", code, out, errOut)
	}
	if got, _ := os.ReadFile(path("1")); string(got) != string(raw) {
		t.Fatalf("the tampered record was not rewritten from the database:\n%s", got)
	}
	if _, err := os.Stat(path("2")); err != nil {
		t.Fatalf("the missing record was not written: %v", err)
	}
}
