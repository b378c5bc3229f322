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
			fill := float64(st.LeafInuse) / float64(st.LeafAlloc)
			t.Logf("%s: leaf pages %.0f%% full", name, 100*fill)
			if fill < 0.75 && string(name) == string(bucketPackages) {
				t.Errorf("%s: leaf pages %.0f%% full (%d of %d bytes), want at least 75%%", name, 100*fill, st.LeafInuse, st.LeafAlloc)
			}
		}
		return nil
	})
}

// TestPackagePagesArePacked: the packages bucket is keyed by name and
// version, and a name's new versions mostly sort after its old ones, so
// a page left behind by a split rarely gets another key. Split at bbolt's
// default 50%, its pages stayed about half empty (a store built by
// publishes: 717 B a package for 393 B of records; 45-54% here). With the
// binary values a one-file package takes ~120 B of records, 30 to a page:
// the pages must be at least 60% full (64-65% measured) and the bucket
// under 200 B a package (172-186 B measured; 560 B with JSON values).
func TestPackagePagesArePacked(t *testing.T) {
	for _, c := range []struct {
		version string
		min     float64
	}{
		{"1.%05d.0", 0.6}, // versions that sort in publish order
		{"1.%d.0", 0.6},   // 1.10.0 sorts before 1.9.0
		{"%x", 0.6},       // hex: spread over the name's range
	} {
		s, err := Open(filepath.Join(t.TempDir(), "f.db"), Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2500; i++ {
			err := s.batch(func(tx *bolt.Tx) error {
				p := &Package{Name: fmt.Sprintf("pkg-%d", (i*7919)%37), Version: fmt.Sprintf(c.version, i), Producer: "ci", RetentionClass: "release", Seq: uint64(i + 1),
					Files: []File{{Path: "a.bin", Size: 4096, Digest: fmt.Sprintf("sha256:%064x", i*7919), MediaType: "application/octet-stream", Backend: "local"}}}
				return putPackage(tx, p)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		s.db.View(func(tx *bolt.Tx) error {
			st := tx.Bucket(bucketPackages).Stats()
			fill := float64(st.LeafInuse) / float64(st.LeafAlloc)
			t.Logf("versions %q: packages pages %.0f%% full", c.version, 100*fill)
			if fill < c.min {
				t.Errorf("versions %q: packages pages %.0f%% full (%d of %d bytes), want at least %.0f%%", c.version, 100*fill, st.LeafInuse, st.LeafAlloc, 100*c.min)
			}
			if per := (st.LeafAlloc + st.BranchAlloc) / 2500; per >= 200 {
				t.Errorf("versions %q: packages take %d B a package, want under 200 B", c.version, per)
			}
			return nil
		})
		s.Close()
	}
}
