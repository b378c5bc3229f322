package store

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTest(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path, Options{LockTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func commitOne(t *testing.T, s *Store, name, version string) *Package {
	t.Helper()
	ctx := context.Background()
	d := "sha256:" + "ab" + "00000000000000000000000000000000000000000000000000000000000000"
	draft := Package{Name: name, Version: version, Producer: "ci", RetentionClass: "release",
		Files: []File{{Path: "a", Size: 3, Digest: d, MediaType: "text/plain", Backend: "local"}}}
	sess, err := s.CreateSession(ctx, draft, []string{d}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Commit(ctx, sess.ID, []string{d})
	if err != nil {
		t.Fatal(err)
	}
	return res.Package
}

func TestFreshDatabaseHasCurrentSchema(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	s.db.View(func(tx *bolt.Tx) error {
		if v := readVersion(tx); v != SchemaVersion() {
			t.Fatalf("schema version %d, want %d", v, SchemaVersion())
		}
		for _, b := range allBuckets() {
			if tx.Bucket(b) == nil {
				t.Fatalf("bucket %s missing", b)
			}
		}
		return nil
	})
}

func TestNewerSchemaIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keySchemaVersion, u64(SchemaVersion()+1)) })
	s.Close()
	_, err = Open(path, Options{})
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("open of a newer schema: %v, want ErrSchemaTooNew", err)
	}
}

// testdata/schema-v1.db was written by schema version 1 with one package
// (demo@1.0); every later binary must open and migrate it.
func TestMigratesCheckedInDatabases(t *testing.T) {
	src, err := os.Open("testdata/schema-v1.db")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(t.TempDir(), "r.db")
	dst, _ := os.Create(path)
	io.Copy(dst, src)
	dst.Close()
	s := openTest(t, path)
	p, err := s.GetPackage(context.Background(), "demo", "1.0")
	if err != nil || p.Files[0].Path != "a" {
		t.Fatalf("package from the v1 database: %v %+v", err, p)
	}
	s.db.View(func(tx *bolt.Tx) error {
		if v := readVersion(tx); v != SchemaVersion() {
			t.Fatalf("migrated schema version %d, want %d", v, SchemaVersion())
		}
		if tx.Bucket(bucketVerifyState) == nil {
			t.Fatal("migration 2 did not add the verification state bucket")
		}
		if tx.Bucket(bucketWebhooks) == nil {
			t.Fatal("the webhook subscriptions migration did not add its bucket")
		}
		return nil
	})
}

func TestUnknownEncodingIsCorrupt(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPackages).Put(joinKey("x", "1"), []byte{9, '{', '}'})
	})
	if _, err := s.GetPackage(context.Background(), "x", "1"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v, want ErrCorrupt", err)
	}
}

func TestCommitWritesEventsInTheSameTransaction(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	commitOne(t, s, "demo", "1.0")
	evs, err := s.Events(context.Background(), 0, 10)
	if err != nil || len(evs) != 2 || evs[0].Type != EventLocationCreated || evs[1].Type != EventPackageCreated {
		t.Fatalf("events: %v %+v", err, evs)
	}
	counts, _ := s.Counts(context.Background())
	if counts["upload_sessions"] != 0 || counts["upload_refs"] != 0 {
		t.Fatalf("session not removed at commit: %v", counts)
	}
}
