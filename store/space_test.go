package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// TestSpaceAccountsForEveryPage: the file is at least the pages
// allocated, the pages allocated are the tables' pages, the free and
// pending pages and bbolt's own, and the records fit in the tables'
// pages; deleting packages frees pages rather than shrinking the
// high-water mark.
func TestSpaceAccountsForEveryPage(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	ctx := context.Background()
	for i := 0; i < 300; i++ {
		commitOne(t, s, fmt.Sprintf("pkg-%d", i%7), fmt.Sprint(i))
	}
	sp, err := s.Space(ctx)
	if err != nil {
		t.Fatal(err)
	}
	page := int64(s.db.Info().PageSize)
	hwm, _ := s.FileSize()
	t.Logf("%+v", sp)
	switch {
	case sp.Allocated != hwm || sp.Allocated%page != 0:
		t.Fatalf("allocated %d, want the high-water mark %d in whole pages", sp.Allocated, hwm)
	case sp.File < sp.Allocated:
		t.Fatalf("file %d smaller than its pages %d", sp.File, sp.Allocated)
	case sp.Tables+sp.Free+sp.Pending+sp.Own != sp.Allocated:
		t.Fatalf("tables %d + free %d + pending %d + own %d != allocated %d", sp.Tables, sp.Free, sp.Pending, sp.Own, sp.Allocated)
	case sp.Own < 3*page || sp.Own > sp.Allocated/4:
		// two meta pages, the freelist, the root of the tables
		t.Fatalf("bbolt's own pages %d B of %d", sp.Own, sp.Allocated)
	case sp.Records <= 0 || sp.Records > sp.Tables+sp.Own:
		t.Fatalf("records %d, tables %d", sp.Records, sp.Tables)
	}
	var pkgs TableSpace
	var sumPages, sumRecords int64
	for _, ts := range sp.PerTable {
		sumPages += ts.Pages
		sumRecords += ts.Records
		if ts.Name == string(bucketPackages) {
			pkgs = ts
		}
	}
	if sumPages != sp.Tables || sumRecords != sp.Records || pkgs.Keys != 300 || pkgs.Records < 300*100 {
		t.Fatalf("per table: pages %d records %d, packages %+v", sumPages, sumRecords, pkgs)
	}
	for i := 0; i < 300; i += 2 {
		if _, err := s.DeletePackage(ctx, fmt.Sprintf("pkg-%d", i%7), fmt.Sprint(i), Deletion{Reason: "space test"}); err != nil {
			t.Fatal(err)
		}
	}
	after, err := s.Space(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Allocated < sp.Allocated || after.Free+after.Pending == 0 || after.Records >= sp.Records {
		t.Fatalf("after deleting half: %+v", after)
	}
}
