package local

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"artifactstore/backends"
	"artifactstore/backends/backendtest"
	"artifactstore/internal/digest"
)

func newTest(t *testing.T, root string) *Backend {
	t.Helper()
	b, err := New("local", Config{Root: root, KeyPrefix: "objects"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backends.Backend {
		return newTest(t, t.TempDir())
	}, backendtest.Options{Overwrite: func(t *testing.T, b backends.Backend, d digest.Digest, raw []byte) {
		if err := os.WriteFile(b.(*Backend).Path(d), raw, 0o640); err != nil {
			t.Fatal(err)
		}
	}})
}

func TestLayout(t *testing.T) {
	root := t.TempDir()
	b := newTest(t, root)
	data := []byte("hello")
	d := digest.FromBytes(data)
	if err := b.Put(context.Background(), d, 5, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(root, "objects", "sha256", d.Hex[:2], d.Hex[2:4], d.Hex)
	got, err := os.ReadFile(want)
	if err != nil || string(got) != "hello" {
		t.Fatalf("object not at %s: %v", want, err)
	}
}

// Start-up empties <root>/.tmp and does not walk the object tree: a file
// inside the tree is not even looked at (a tree walk would have removed
// this one, which is named like the temp files of earlier versions).
func TestStartRemovesLeftoverTempFilesWithoutWalkingTheTree(t *testing.T) {
	root := t.TempDir()
	b := newTest(t, root)
	data := []byte("kept")
	d := digest.FromBytes(data)
	if err := b.Put(context.Background(), d, 4, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(root, TempDir, "put-123")
	if err := os.WriteFile(leftover, []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	inTree := filepath.Join(filepath.Dir(b.Path(d)), ".tmp-123")
	if err := os.WriteFile(inTree, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	b = newTest(t, root)
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Fatalf("leftover temp file survived a restart: %v", err)
	}
	if _, err := os.Stat(inTree); err != nil {
		t.Fatalf("start-up walked the object tree (it touched %s): %v", inTree, err)
	}
	if _, err := b.Stat(context.Background(), d); err != nil {
		t.Fatalf("real object lost at restart: %v", err)
	}
	n := 0
	b.Walk(context.Background(), func(backends.Info) error { n++; return nil })
	if n != 1 {
		t.Fatalf("walk sees %d objects, want 1 (temp files are not objects)", n)
	}
}

// A failed put must not leave its temp file either.
func TestFailedPutRemovesTempFile(t *testing.T) {
	root := t.TempDir()
	b := newTest(t, root)
	data := []byte("some bytes")
	d := digest.FromBytes([]byte("other"))
	err := b.Put(context.Background(), d, int64(len(data)), bytes.NewReader(data))
	if err == nil {
		t.Fatal("put with wrong digest succeeded")
	}
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			t.Errorf("file left behind: %s", p)
		}
		return nil
	})
}

// The per-file durability mode keeps the whole contract too.
func TestConformanceSyncFile(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backends.Backend {
		b, err := New("local", Config{Root: t.TempDir(), KeyPrefix: "objects", Sync: SyncFile}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if b.group != nil {
			t.Fatal("sync: file shares flushes")
		}
		return b
	}, backendtest.Options{Overwrite: func(t *testing.T, b backends.Backend, d digest.Digest, raw []byte) {
		if err := os.WriteFile(b.(*Backend).Path(d), raw, 0o640); err != nil {
			t.Fatal(err)
		}
	}})
}

func TestNewRejectsAnUnknownSyncMode(t *testing.T) {
	if _, err := New("local", Config{Root: t.TempDir(), Sync: "sometimes"}, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("accepted sync: sometimes")
	}
}
