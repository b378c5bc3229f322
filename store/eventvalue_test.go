package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestCompactEventsOnAnOlderDatabase: on the checked-in schema-3
// database, migrated to this schema, events written before (every field
// stored) read exactly as their stored JSON says; events written now
// store neither the constant fields nor the data fields their subject
// holds, and read the same as the old form of the same event would; the
// event readers and db check take both kinds.
func TestCompactEventsOnAnOlderDatabase(t *testing.T) {
	s := openTest(t, copyTestdata(t, "testdata/schema-v3.db"))
	ctx := context.Background()
	raws := map[uint64][]byte{}
	s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
			if len(k) == 8 {
				raws[binary.BigEndian.Uint64(k)] = append([]byte(nil), v...)
			}
			return nil
		})
	})
	if len(raws) == 0 {
		t.Fatal("the checked-in database holds no events")
	}
	old, err := s.Events(ctx, 0, 1000)
	if err != nil || len(old) != len(raws) {
		t.Fatalf("old events: %d of %d, %v", len(old), len(raws), err)
	}
	for _, e := range old {
		var want Event
		if err := decode(raws[e.Seq], &want); err != nil {
			t.Fatal(err)
		}
		if want.SpecVersion == "" || want.Source == "" {
			t.Fatalf("checked-in event %d is not of the old form: %s", e.Seq, raws[e.Seq])
		}
		if !reflect.DeepEqual(e, want) {
			t.Fatalf("old event %d read as\n%+v\nstored\n%+v", e.Seq, e, want)
		}
	}

	// New events: a publish appends a location and a package event.
	last := old[len(old)-1].Seq
	p := commitOne(t, s, "compact", "1.0")
	fresh, err := s.Events(ctx, last, 10)
	if err != nil || len(fresh) != 2 {
		t.Fatalf("new events %+v, %v", fresh, err)
	}
	for _, e := range fresh {
		var v []byte
		s.db.View(func(tx *bolt.Tx) error { v = append(v, tx.Bucket(bucketEvents).Get(u64(e.Seq))...); return nil })
		for _, field := range []string{`"seq"`, `"specversion"`, `"source"`, `"datacontenttype"`, `"digest"`, `"name"`, `"version"`} {
			if bytes.Contains(v, []byte(field)) {
				t.Fatalf("new event %d stores %s: %s", e.Seq, field, v)
			}
		}
		// The old form of the same event reads the same.
		oldForm, err := encode(e)
		if err != nil {
			t.Fatal(err)
		}
		var o Event
		if err := decode(oldForm, &o); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(e, o) || e.SpecVersion != "1.0" || e.Source != "/artifactstore" || e.DataContentType != "application/json" {
			t.Fatalf("new event reads as %+v, its old form as %+v", e, o)
		}
		t.Logf("%s: %d B stored, %d B in the old form", e.Type, len(v), len(oldForm))
	}
	var loc map[string]any
	if err := json.Unmarshal(fresh[0].Data, &loc); err != nil || loc["digest"] != p.Files[0].Digest || loc["backend"] != "local" {
		t.Fatalf("location event data %s (%v)", fresh[0].Data, err)
	}
	var pe packageEvent
	if err := json.Unmarshal(fresh[1].Data, &pe); err != nil || pe.Name != "compact" || pe.Version != "1.0" || pe.Producer != "ci" {
		t.Fatalf("package event data %s (%v)", fresh[1].Data, err)
	}
	// Every reader takes both forms.
	byType, _, err := s.EventsOfTypes(ctx, 0, 1000, []string{EventPackageCreated})
	if err != nil || len(byType) == 0 || !reflect.DeepEqual(byType[len(byType)-1], fresh[1]) {
		t.Fatalf("EventsOfTypes: %v, last %+v", err, byType)
	}
	before, _, err := s.EventsBefore(ctx, EventQuery{Limit: 3, MaxScan: 100})
	if err != nil || len(before) != 3 || !reflect.DeepEqual(before[0], fresh[1]) || !reflect.DeepEqual(before[2], old[len(old)-1]) {
		t.Fatalf("EventsBefore: %v, %+v", err, before)
	}
	if problems, err := s.Check(ctx, []string{"local", "s3"}, 100); err != nil || len(problems) != 0 {
		t.Fatalf("db check: %v %v", err, problems)
	}
}

// A data value that does not start with its subject's fields is stored
// whole, and a stored cut that no longer fits its subject is an error,
// not a wrong event.
func TestEventDataCutOnlyWhenItFits(t *testing.T) {
	e := Event{ID: "x", Type: "t", Time: time.Unix(1, 0).UTC(), Subject: "sha256:aa",
		Data: json.RawMessage(`{"backend":"local","digest":"sha256:aa"}`)}
	v, err := encodeEvent(e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeEventKV(u64(7), v, "/src")
	if err != nil || string(got.Data) != string(e.Data) || got.Seq != 7 || got.Source != "/src" {
		t.Fatalf("whole data: %+v %v (stored %s)", got, err, v)
	}
	e.Data = json.RawMessage(`{"digest":"sha256:aa","backend":"local"}`)
	v, _ = encodeEvent(e)
	if bytes.Contains(v, []byte("digest")) {
		t.Fatalf("leading subject field stored: %s", v)
	}
	var ev eventValue
	decode(v, &ev)
	ev.Subject = "no-version"
	ev.Cut = cutNameVersion
	bad, _ := encode(ev)
	if _, err := decodeEventKV(u64(7), bad, ""); err == nil {
		t.Fatal("a cut that does not fit its subject decoded")
	}
}
