package store

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Every value of the binary form reads back as the record it was made
// from, and as the JSON forms of the same record (the full one of the
// first schemas and the one without the key's fields of schemas 10-12)
// read: a store that holds all three reads them alike. The binary form is
// what the store writes now, and it is much smaller.
func TestBinaryLocationAndBlobValues(t *testing.T) {
	d := digestN(42)
	at := time.Date(2026, 11, 27, 15, 47, 42, 197835884, time.UTC)
	later := at.Add(90 * time.Minute)
	berlin := time.FixedZone("CET", 3600)
	laterBerlin := later.In(berlin)
	locs := []Location{
		{Size: 4096, Status: StatusStored, StoredAt: at},
		{Size: 0, Status: StatusVerified, StoredAt: at, LastVerifiedAt: &later, LastCheckedAt: &later},
		{Size: 1 << 40, Status: StatusMismatch, StoredAt: at, LastCheckedAt: &later, LastError: "sha256 \x00 mismatch: é", Repairs: 3},
		{Size: 7, Status: "some-future-status", StoredAt: time.Time{}},
		{Size: 7, Status: StatusUnreadable, StoredAt: time.Unix(-86400*365*30, 5).UTC()},
		{Size: 7, Status: StatusStored, StoredAt: at.In(berlin)}, // not UTC: stays JSON
		{Size: 9, Status: StatusMismatch, StoredAt: at, LastVerifiedAt: &at, LastFailedAt: &later, LastError: "read: mismatch"},
		{Size: 9, Status: StatusVerified, StoredAt: at, LastCheckedAt: &at, LastFailedAt: &at, Repairs: 1},
		{Size: 9, Status: StatusMissing, StoredAt: at, LastFailedAt: &laterBerlin}, // not UTC: stays JSON
	}
	for i, l := range locs {
		l.Digest, l.Backend = d, "local"
		k := joinKey(d, "local")
		v, err := encodeLocation(&l)
		if err != nil {
			t.Fatal(err)
		}
		utc := l.StoredAt.Location() == time.UTC && (l.LastFailedAt == nil || l.LastFailedAt.Location() == time.UTC)
		if (v[0] == encodingBinary) != utc {
			t.Fatalf("location %d: encoding %d, times in UTC %v", i, v[0], utc)
		}
		var got Location
		if err := decodeLocationKV(k, v, &got); err != nil || (utc && !reflect.DeepEqual(got, l)) {
			t.Fatalf("location %d: read back as\n%+v (%v), wrote\n%+v", i, got, err, l)
		}
		full, _ := encode(l)
		short, _ := encode(locationValue{Location: l})
		for _, old := range [][]byte{full, short} {
			var o Location
			if err := decodeLocationKV(k, old, &o); err != nil || !reflect.DeepEqual(o, got) {
				t.Fatalf("location %d: JSON form %s reads as\n%+v (%v), binary as\n%+v", i, old, o, err, got)
			}
		}
		if utc {
			t.Logf("location %d: %d B, JSON %d B", i, len(v), len(short))
			if i == 0 && len(v) > 16 {
				t.Fatalf("a stored location takes %d B: %q", len(v), v)
			}
			assertTruncationsCorrupt(t, v, func(b []byte) error { var l Location; return decodeLocationKV(k, b, &l) })
		}
	}
	for i, b := range []Blob{{Size: 4096, CreatedAt: at}, {Size: 0, CreatedAt: time.Time{}}, {Size: 1 << 50, CreatedAt: at.In(berlin)}} {
		b.Digest = d
		v, err := encodeBlob(b)
		if err != nil {
			t.Fatal(err)
		}
		var got Blob
		if err := decodeBlobKV([]byte(d), v, &got); err != nil || (b.CreatedAt.Location() == time.UTC && !reflect.DeepEqual(got, b)) {
			t.Fatalf("blob %d: read back as %+v (%v), wrote %+v", i, got, err, b)
		}
		full, _ := encode(b)
		short, _ := encode(blobValue{Blob: b})
		for _, old := range [][]byte{full, short} {
			var o Blob
			if err := decodeBlobKV([]byte(d), old, &o); err != nil || !reflect.DeepEqual(o, got) {
				t.Fatalf("blob %d: JSON form %s reads as %+v (%v)", i, old, o, err)
			}
		}
		if b.CreatedAt.Location() == time.UTC {
			t.Logf("blob %d: %d B, JSON %d B", i, len(v), len(short))
			if v[0] != encodingBinary || (i == 0 && len(v) > 12) {
				t.Fatalf("blob %d stored as %q", i, v)
			}
			assertTruncationsCorrupt(t, v, func(v []byte) error { var b Blob; return decodeBlobKV([]byte(d), v, &b) })
		} else if v[0] != encodingV1 {
			t.Fatalf("blob %d with a zone stored as %q", i, v)
		}
	}
}

// Every binary event reads as its JSON form (as schema 1-11 stored it)
// reads, whatever its id, type and subject look like.
func TestBinaryEventValues(t *testing.T) {
	at := time.Date(2026, 11, 27, 15, 47, 42, 198146451, time.UTC)
	d := digestN(7)
	evs := []Event{
		{ID: "cbdec23985c090e365d3373d4b3c7d50", Type: EventLocationCreated, Time: at, Subject: d,
			Data: json.RawMessage(`{"digest":"` + d + `","backend":"local","size":4096,"status":"stored","stored_at":"2026-11-27T15:47:42.197835884Z"}`)},
		{ID: "4ca82d036e3c72bec6062202c364e8c0", Type: EventPackageCreated, Time: at, Subject: "small@1.0",
			Data: json.RawMessage(`{"name":"small","version":"1.0","producer":"bench","retention_class":"bench","files":1,"bytes":4096}`)},
		{ID: "4CA82D036E3C72BEC6062202C364E8C0", Type: "v9.someday.new_type", Time: time.Time{}, Subject: "sha256:ABC",
			Data: json.RawMessage(`{"x":[1,2]}`)},
		{ID: "not-hex", Type: EventVerificationRunCompleted, Time: time.Unix(-5, 999999999).UTC(), Subject: "",
			Data: json.RawMessage(`null`)},
		{ID: "", Type: EventLocationFailed, Time: at, Subject: "sha256:" + d[7:39], Data: json.RawMessage(`{"digest":"x"}`)},
	}
	for i, e := range evs {
		e.Seq = uint64(100 + i)
		v, err := encodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		if v[0] != encodingEvent {
			t.Fatalf("event %d stored as %q", i, v)
		}
		got, err := decodeEventKV(u64(e.Seq), v, "/artifactstore")
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		e.SpecVersion, e.Source, e.DataContentType = eventSpecVersion, "/artifactstore", eventContentType
		old, _ := encode(e)
		want, err := decodeEventKV(u64(e.Seq), old, "/elsewhere")
		if err != nil || !reflect.DeepEqual(got, want) || !reflect.DeepEqual(got, e) {
			t.Fatalf("event %d: binary reads as\n%+v, JSON as\n%+v (%v), wrote\n%+v", i, got, want, err, e)
		}
		if typ, ok := eventType(v); !ok || typ != e.Type {
			t.Fatalf("event %d: eventType %q %v", i, typ, ok)
		}
		t.Logf("event %d (%s): %d B, %d B in the old form", i, e.Type, len(v), len(old))
		if i < 2 && 2*len(v) > len(old)-30 {
			t.Fatalf("event %d: %d B stored, %d B in the old form: want less than half", i, len(v), len(old))
		}
		var stored Event
		if _, err := decodeEventBinary(v, &stored); err != nil {
			t.Fatal(err)
		}
		assertTruncationsCorrupt(t, v[:len(v)-len(stored.Data)], func(b []byte) error { _, err := decodeEventKV(u64(e.Seq), b, ""); return err })
	}
	if _, err := decodeEventKV(u64(1), []byte{encodingEvent, 0, byte(len(eventTypes) + 1)}, ""); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("unknown type code: %v", err)
	}
}

// assertTruncationsCorrupt: every proper prefix of v (from the encoding
// byte on) fails to decode with ErrCorrupt, and never panics.
func assertTruncationsCorrupt(t *testing.T, v []byte, dec func([]byte) error) {
	t.Helper()
	for n := 1; n < len(v); n++ {
		if err := dec(v[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%d of %d bytes (%q): %v, want ErrCorrupt", n, len(v), v[:n], err)
		}
	}
}

// TestOldValuesReadTheSameInBinary: on the checked-in schema-3 database,
// migrated, every blob, location and event (all in the old JSON form)
// reads as it did, and rewritten in the binary form reads back
// identically; db check passes with both forms side by side, and event
// pruning still takes the events of both forms by age.
func TestOldValuesReadTheSameInBinary(t *testing.T) {
	s := openTest(t, copyTestdata(t, "testdata/schema-v3.db"))
	ctx := context.Background()
	var nb, nl, ne int
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, bucket := range [][]byte{bucketBlobs, bucketLocations, bucketEvents} {
			c := tx.Bucket(bucket).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if v[0] != encodingV1 {
					t.Fatalf("%s/%q: checked-in value not in the JSON form: %q", bucket, k, v)
				}
				var nv []byte
				var err error
				switch string(bucket) {
				case string(bucketBlobs):
					var b, b2 Blob
					if err := decodeBlobKV(k, v, &b); err != nil {
						return err
					}
					nv, _ = encodeBlob(b)
					if err := decodeBlobKV(k, nv, &b2); err != nil || !reflect.DeepEqual(b, b2) {
						t.Fatalf("blob %s: %+v in JSON, %+v in binary (%v)", k, b, b2, err)
					}
					nb++
				case string(bucketLocations):
					var l, l2 Location
					if err := decodeLocationKV(k, v, &l); err != nil {
						return err
					}
					nv, _ = encodeLocation(&l)
					if err := decodeLocationKV(k, nv, &l2); err != nil || !reflect.DeepEqual(l, l2) {
						t.Fatalf("location %q: %+v in JSON, %+v in binary (%v)", k, l, l2, err)
					}
					nl++
				default:
					e, err := decodeEventKV(k, v, s.source)
					if err != nil {
						return err
					}
					nv, _ = encodeEvent(e)
					e2, err := decodeEventKV(k, nv, s.source)
					if err != nil || !reflect.DeepEqual(e, e2) {
						t.Fatalf("event %d: %+v in JSON, %+v in binary (%v)", e.Seq, e, e2, err)
					}
					ne++
				}
				if nv[0] != encodingBinary || err != nil {
					t.Fatalf("%s/%q rewritten as %q (%v)", bucket, k, nv, err)
				}
				// Every other record goes over to the binary form.
				if (nb+nl+ne)%2 == 0 {
					if err := tx.Bucket(bucket).Put(append([]byte(nil), k...), nv); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	if err != nil || nb == 0 || nl == 0 || ne < 4 {
		t.Fatalf("%d blobs, %d locations, %d events: %v", nb, nl, ne, err)
	}
	if problems, err := s.Check(ctx, []string{"local", "s3"}, 100); err != nil || len(problems) != 0 {
		t.Fatalf("db check: %v %v", err, problems)
	}
	if got, err := s.Usage(ctx); err != nil {
		t.Fatal(err)
	} else if scan, err := s.ScanUsage(ctx); err != nil || !reflect.DeepEqual(got, scan) {
		t.Fatalf("counters %v, scan of both forms %v (%v)", got, scan, err)
	}
	res, err := s.PruneEvents(ctx, EventRetention{Now: time.Now().Add(1000 * time.Hour), MaxAge: time.Hour, Batch: 1000})
	if err != nil || res.Deleted != ne {
		t.Fatalf("pruning %d old events of both forms: %+v %v", ne, res, err)
	}
	var left int
	s.db.View(func(tx *bolt.Tx) error { left = tx.Bucket(bucketEvents).Stats().KeyN; return nil })
	if left != 0 {
		t.Fatalf("%d events left after pruning", left)
	}
}

// Every package of the binary form reads back as written and as its JSON
// form reads; the binary form of a one-file package is under half of its
// JSON; truncated values are corrupt, not wrong packages.
func TestBinaryPackageValues(t *testing.T) {
	at := time.Date(2026, 11, 27, 15, 47, 42, 302789336, time.UTC)
	pkgs := []Package{
		{Name: "small", Version: "1795794461734419837-0-1", Producer: "bench", RetentionClass: "bench", CreatedAt: at, Seq: 10,
			Files: []File{{Path: "f.bin", Size: 4096, Digest: digestN(9), MediaType: "application/octet-stream", Backend: "local"}}},
		{Name: "app", Version: "1.0", Producer: "ci", RetentionClass: "release", Labels: map[string]string{"team": "red", "os": "linux", "": ""},
			CreatedAt: time.Time{}, Seq: 1 << 40, Files: []File{
				{Path: "a/b.tar", Size: 0, Digest: "sha256:ABCDEF", MediaType: "application/x-custom", Backend: "s3"},
				{Path: "é", Size: 1 << 50, Digest: digestN(1), MediaType: "text/plain", Backend: ""}}},
		{Name: "nofiles", Version: "0", CreatedAt: at, Files: []File{}},
		{Name: "nilfiles", Version: "0", CreatedAt: at.Add(-60 * 365 * 24 * time.Hour)},
		{Name: "zone", Version: "1", CreatedAt: at.In(time.FixedZone("CET", 3600)), Files: []File{{Path: "x"}}},
	}
	for i, p := range pkgs {
		v, err := encodePackage(&p)
		if err != nil {
			t.Fatal(err)
		}
		utc := p.CreatedAt.Location() == time.UTC
		if (v[0] == encodingBinary) != utc {
			t.Fatalf("package %d: encoding %d, time in UTC %v", i, v[0], utc)
		}
		var got, fromJSON Package
		if err := decodePackage(v, &got); err != nil || (utc && !reflect.DeepEqual(got, p)) {
			t.Fatalf("package %d: read back as\n%+v (%v), wrote\n%+v", i, got, err, p)
		}
		old, _ := encode(&p)
		if err := decodePackage(old, &fromJSON); err != nil || !reflect.DeepEqual(got, fromJSON) {
			t.Fatalf("package %d: binary reads as\n%+v, JSON as\n%+v (%v)", i, got, fromJSON, err)
		}
		if !utc {
			continue
		}
		t.Logf("package %d: %d B, JSON %d B", i, len(v), len(old))
		if i == 0 && 2*len(v) > len(old) {
			t.Fatalf("a one-file package takes %d B, %d B in JSON: want less than half", len(v), len(old))
		}
		assertTruncationsCorrupt(t, v, func(b []byte) error { var p Package; return decodePackage(b, &p) })
		if err := decodePackage(append(v, 0), new(Package)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("package %d with a trailing byte: %v", i, err)
		}
	}
}

// TestOldPackagesReadTheSame: the packages of the checked-in schema-1
// and schema-3 databases (JSON) read as their JSON says after the
// migrations, and a package committed now, stored in the binary form,
// reads, lists and checks beside them.
func TestOldPackagesReadTheSame(t *testing.T) {
	for _, db := range []string{"testdata/schema-v1.db", "testdata/schema-v3.db"} {
		s := openTest(t, copyTestdata(t, db))
		ctx := context.Background()
		n := 0
		s.db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketPackages).ForEach(func(k, v []byte) error {
				var want Package
				if v[0] != encodingV1 || decode(v, &want) != nil {
					t.Fatalf("%s: checked-in package %q is not JSON: %q", db, k, v)
				}
				n++
				got, err := getPackage(tx, want.Name, want.Version)
				if err != nil || !reflect.DeepEqual(*got, want) {
					t.Fatalf("%s: package %q reads as %+v (%v), stored %+v", db, k, got, err, want)
				}
				return nil
			})
		})
		if n == 0 {
			t.Fatalf("%s holds no packages", db)
		}
		p := commitOne(t, s, "binary", "1.0")
		var raw []byte
		s.db.View(func(tx *bolt.Tx) error {
			raw = append(raw, tx.Bucket(bucketPackages).Get(joinKey("binary", "1.0"))...)
			return nil
		})
		got, err := s.GetPackage(ctx, "binary", "1.0")
		if raw[0] != encodingBinary || err != nil || !reflect.DeepEqual(got, p) {
			t.Fatalf("%s: new package stored as %q, reads as %+v (%v), committed %+v", db, raw, got, err, p)
		}
		if problems, err := s.Check(ctx, []string{"local", "s3"}, 100); err != nil || len(problems) != 0 {
			t.Fatalf("%s: db check: %v %v", db, err, problems)
		}
	}
}

// TestLocationFailureTimeFlag: the binary location value of schema 13
// (no last_failed_at, flag bit 2 clear) reads as it did and is written
// byte for byte the same today; a value with a failure time sets bit 2
// and reads back; a flag this binary does not know is ErrCorrupt, not a
// misread of the bytes behind it.
func TestLocationFailureTimeFlag(t *testing.T) {
	at := time.Date(2026, 11, 27, 15, 47, 42, 197835884, time.UTC)
	later := at.Add(90 * time.Minute)
	d := digestN(42)
	k := joinKey(d, "local")
	// Written by the binary before last_failed_at (schema 14).
	old, _ := hex.DecodeString("0203038040bc98cdb00decf8aa5eececcdb00decf8aa5eececcdb00decf8aa5e0e726561643a206d69736d6174636804")
	want := Location{Digest: d, Backend: "local", Size: 4096, Status: StatusMismatch, StoredAt: at, LastVerifiedAt: &later, LastCheckedAt: &later,
		LastError: "read: mismatch", Repairs: 2}
	var got Location
	if err := decodeLocationKV(k, old, &got); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("old value reads as\n%+v (%v), want\n%+v", got, err, want)
	}
	if v, err := encodeLocation(&want); err != nil || !bytes.Equal(v, old) {
		t.Fatalf("without a failure time the value is written as %x (%v), want %x", v, err, old)
	}

	failed := later.Add(time.Minute)
	want.LastFailedAt = &failed
	v, err := encodeLocation(&want)
	if err != nil || v[1] != locVerified|locChecked|locFailed || len(v) <= len(old) {
		t.Fatalf("with a failure time: %x (%v)", v, err)
	}
	if err := decodeLocationKV(k, v, &got); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("value with a failure time reads as\n%+v (%v), want\n%+v", got, err, want)
	}
	assertTruncationsCorrupt(t, v, func(b []byte) error { var l Location; return decodeLocationKV(k, b, &l) })

	unknown := bytes.Clone(old)
	unknown[1] |= 1 << 3
	if err := decodeLocationKV(k, unknown, &got); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a value with an unknown flag: %v, want ErrCorrupt", err)
	}
}
