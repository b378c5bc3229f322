package store

import (
	"bytes"
	"context"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestCompactValuesOnAnOlderDatabase: on the checked-in schema-3
// database, migrated to this schema, blob and location values written
// before (with their digest and backend) read the same as before, values
// written now do not repeat their key, and both kinds read, count and
// check alike. The per-package saving is measured too.
func TestCompactValuesOnAnOlderDatabase(t *testing.T) {
	s := openTest(t, copyTestdata(t, "testdata/schema-v3.db"))
	ctx := context.Background()
	raw := func(bucket []byte, k []byte) []byte {
		var v []byte
		s.db.View(func(tx *bolt.Tx) error { v = append(v, tx.Bucket(bucket).Get(k)...); return nil })
		return v
	}
	old := digestN(1)
	if v := raw(bucketLocations, joinKey(old, "local")); !bytes.Contains(v, []byte(`"digest"`)) {
		t.Fatalf("checked-in location value %s: expected the old form with its digest", v)
	}
	locs, err := s.Locations(ctx, old)
	if err != nil || len(locs) == 0 {
		t.Fatalf("locations of %s: %v %v", old, err, locs)
	}
	for _, l := range locs {
		if l.Digest != old || (l.Backend != "local" && l.Backend != "s3") {
			t.Fatalf("old location read as %+v", l)
		}
	}
	if b, err := s.GetBlob(ctx, old); err != nil || b.Digest != old || b.Size == 0 {
		t.Fatalf("old blob read as %+v, %v", b, err)
	}

	// New records: a location and a blob written now.
	fresh := digestN(77)
	err = s.db.Update(func(tx *bolt.Tx) error {
		v, err := encodeBlob(Blob{Digest: fresh, Size: 123, CreatedAt: time.Now()})
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketBlobs).Put([]byte(fresh), v); err != nil {
			return err
		}
		return putLocation(tx, &Location{Digest: fresh, Backend: "local", Size: 123, Status: StatusStored, StoredAt: time.Now()})
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range [][]byte{raw(bucketLocations, joinKey(fresh, "local")), raw(bucketBlobs, []byte(fresh))} {
		if bytes.Contains(v, []byte(fresh)) || bytes.Contains(v, []byte(`"backend"`)) {
			t.Fatalf("new value repeats its key: %s", v)
		}
	}
	locs, err = s.Locations(ctx, fresh)
	if err != nil || len(locs) != 1 || locs[0].Digest != fresh || locs[0].Backend != "local" || locs[0].Size != 123 {
		t.Fatalf("new location read as %+v, %v", locs, err)
	}
	if b, err := s.GetBlob(ctx, fresh); err != nil || b.Digest != fresh || b.Size != 123 {
		t.Fatalf("new blob read as %+v, %v", b, err)
	}
	on, err := s.LocationsOn(ctx, "local")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range on {
		if l.Backend != "local" || len(l.Digest) != len(fresh) {
			t.Fatalf("LocationsOn(local) read %+v", l)
		}
	}
	// A verdict rewrites an old location in the new form.
	if err := s.RecordVerdict(ctx, Verdict{Digest: old, Backend: "local", Mode: ModeQuick, Verdict: StatusVerified, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if v := raw(bucketLocations, joinKey(old, "local")); bytes.Contains(v, []byte(`"digest"`)) {
		t.Fatalf("rewritten location value still repeats its key: %s", v)
	}
	got, err := s.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	scan, err := s.ScanUsage(ctx)
	if err != nil || !reflect.DeepEqual(got, scan) {
		t.Fatalf("counters %v disagree with a scan of old and new values %v (%v)", got, scan, err)
	}
	if problems, err := s.Check(ctx, []string{"local", "s3"}, 100); err != nil || len(problems) != 0 {
		t.Fatalf("db check: %v %v", err, problems)
	}
	oldForm, _ := encode(Location{Digest: fresh, Backend: "local", Size: 123, Status: StatusStored, StoredAt: time.Now()})
	newForm, _ := encodeLocation(&Location{Digest: fresh, Backend: "local", Size: 123, Status: StatusStored, StoredAt: time.Now()})
	oldBlob, _ := encode(Blob{Digest: fresh, Size: 123, CreatedAt: time.Now()})
	newBlob, _ := encodeBlob(Blob{Digest: fresh, Size: 123, CreatedAt: time.Now()})
	t.Logf("a location value %d -> %d B, a blob value %d -> %d B", len(oldForm), len(newForm), len(oldBlob), len(newBlob))
}
