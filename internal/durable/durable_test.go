package durable

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRenameMovesTheFileAndReportsAMissingSource(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "sub")
	if err := os.Mkdir(other, 0o750); err != nil {
		t.Fatal(err)
	}
	src, dst := filepath.Join(other, "a.tmp"), filepath.Join(dir, "a")
	if err := os.WriteFile(src, []byte("bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Rename(src, dst); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(dst); err != nil || string(got) != "bytes" {
		t.Fatalf("after Rename: %q, %v", got, err)
	}
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Fatalf("the old name is still there: %v", err)
	}
	if err := Rename(src, dst); !os.IsNotExist(err) {
		t.Fatalf("Rename of a missing file: %v, want not-exist", err)
	}
	if err := SyncDir(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Fatalf("SyncDir of a missing directory: %v, want not-exist", err)
	}
}
