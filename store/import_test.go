package store

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A bulk import split over many transactions writes exactly what one
// transaction writes: every record of every bucket (counters and indexes
// included), and db check finds nothing wrong.
func TestImportInManyTransactionsEqualsOne(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	r := rand.New(rand.NewPCG(15, 3))
	var pkgs []Package
	for i := 0; i < 300; i++ {
		p := Package{Name: fmt.Sprintf("n%02d", r.IntN(40)), Version: fmt.Sprintf("v%d", i), Producer: fmt.Sprintf("p%d", r.IntN(5)),
			RetentionClass: []string{"release", "nightly"}[i%2], CreatedAt: at,
			Labels: map[string]string{"team": fmt.Sprintf("t%d", r.IntN(4))},
			// Some blobs shared: a digest already imported gets no second location.
			Files: nil}
		d := 1 + r.IntN(200)
		p.Files = []File{{Path: "a", Size: int64(d), Digest: digestN(d), MediaType: "x/y"}}
		pkgs = append(pkgs, p)
	}
	load := func(name string, perTx int) *Store {
		s := openTest(t, filepath.Join(t.TempDir(), name+".db"))
		s.now = func() time.Time { return at }
		old := importTxRecords
		importTxRecords = perTx
		defer func() { importTxRecords = old }()
		// Two imports: the second must see the blobs of the first.
		if err := s.ImportPackages(ctx, append([]Package(nil), pkgs[:100]...), "local"); err != nil {
			t.Fatal(err)
		}
		if err := s.ImportPackages(ctx, append([]Package(nil), pkgs[100:]...), "local"); err != nil {
			t.Fatal(err)
		}
		return s
	}
	one, many := load("one", 1<<30), load("many", 37)
	dump := func(s *Store) map[string][][2][]byte {
		out := map[string][][2][]byte{}
		s.DB().View(func(tx *bolt.Tx) error {
			return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
				return b.ForEach(func(k, v []byte) error {
					out[string(name)] = append(out[string(name)], [2][]byte{append([]byte(nil), k...), append([]byte(nil), v...)})
					return nil
				})
			})
		})
		return out
	}
	a, b := dump(one), dump(many)
	if len(a[string(bucketPackages)]) != 300 || len(a[string(bucketLocations)]) == 0 {
		t.Fatalf("one transaction wrote %d packages, %d locations", len(a[string(bucketPackages)]), len(a[string(bucketLocations)]))
	}
	for name, recs := range a {
		if len(b[name]) != len(recs) {
			t.Fatalf("bucket %s: %d records in one transaction, %d in many", name, len(recs), len(b[name]))
		}
		for i := range recs {
			if !bytes.Equal(recs[i][0], b[name][i][0]) || !bytes.Equal(recs[i][1], b[name][i][1]) {
				t.Fatalf("bucket %s record %d: %q=%q in one transaction, %q=%q in many", name, i, recs[i][0], recs[i][1], b[name][i][0], b[name][i][1])
			}
		}
	}
	if probs, err := many.Check(ctx, []string{"local"}, 10); err != nil || len(probs) > 0 {
		t.Fatalf("db check after an import in many transactions: %v %v", probs, err)
	}
	// The sequence continues after the import: a commit gets the next one.
	if got := commitOne(t, many, "after", "1").Seq; got != 301 {
		t.Fatalf("first sequence after importing 300 packages: %d, want 301", got)
	}
}
