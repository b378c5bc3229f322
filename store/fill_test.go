package store

import (
	"fmt"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestAppendOnlyBucketsArePacked: events and packages_by_seq only ever
// grow at the end, one commit at a time; their pages must end up nearly
// full (bbolt's default split at 50% left them half empty for good: the
// events bucket took 2,072 B a package for 933 B of records).
func TestAppendOnlyBucketsArePacked(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "f.db"), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 3000; i++ {
		err := s.batch(func(tx *bolt.Tx) error {
			p := &Package{Name: fmt.Sprintf("pkg-%d", i%37), Version: fmt.Sprint(i), Producer: "ci", RetentionClass: "release", Seq: uint64(i + 1)}
			if err := putRecent(tx, p); err != nil {
				return err
			}
			return s.appendEvent(tx, EventPackageCreated, p.Name+"@"+p.Version, map[string]string{"name": p.Name, "version": p.Version})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	s.db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketEvents, bucketRecent} {
			st := tx.Bucket(name).Stats()
			if fill := float64(st.LeafInuse) / float64(st.LeafAlloc); fill < 0.75 {
				t.Errorf("%s: leaf pages %.0f%% full (%d of %d bytes), want at least 75%%", name, 100*fill, st.LeafInuse, st.LeafAlloc)
			}
		}
		return nil
	})
}
