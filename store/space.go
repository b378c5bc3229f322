package store

import (
	"context"
	"fmt"
	"os"
	"sort"

	bolt "go.etcd.io/bbolt"
)

// Space is where the bytes of the database file go. Every figure is in
// bytes. The identity Allocated = Tables + Free + Pending + Own holds.
type Space struct {
	// File is the size of the file on disk. bbolt grows the file ahead
	// of the pages it uses (doubling up to its AllocSize, 16 MiB, then in
	// steps of AllocSize), so File exceeds Allocated by up to that much:
	// a constant, not a cost per record.
	File int64
	// Allocated is the database's high-water mark: every page up to the
	// highest page id in use (tx.Size()), whether a table, bbolt's own or
	// free holds it.
	Allocated int64
	// Tables is the pages of every table (leaf and branch pages of each
	// bbolt bucket), page slack included.
	Tables int64
	// Free is pages on the freelist, reusable by the next writes; Pending
	// is pages freed by recent transactions that a reader may still see
	// (free once it ends). Both as of the last write transaction.
	Free, Pending int64
	// Own is bbolt's own pages: the two meta pages, the freelist and the
	// root page listing the buckets.
	Own int64
	// Records is the bytes of keys and values in use (with bbolt's
	// per-record headers), without page slack: the floor of any layout.
	Records int64
	// PerTable is each table's pages and records, largest first.
	PerTable []TableSpace
}

// TableSpace is one table's share of Space.
type TableSpace struct {
	Name    string
	Keys    int
	Pages   int64 // bytes of its leaf and branch pages
	Records int64 // bytes of its keys and values in use
}

// Space measures the database. Take it while nothing writes for the
// free and pending figures to match the rest.
func (s *Store) Space(ctx context.Context) (Space, error) {
	var sp Space
	fi, err := os.Stat(s.path)
	if err != nil {
		return sp, fmt.Errorf("database space: %w", err)
	}
	sp.File = fi.Size()
	st := s.db.Stats()
	err = s.db.View(func(tx *bolt.Tx) error {
		page := int64(tx.DB().Info().PageSize)
		sp.Allocated = tx.Size()
		sp.Free, sp.Pending = int64(st.FreePageN)*page, int64(st.PendingPageN)*page
		if err := tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			bs := b.Stats()
			t := TableSpace{Name: string(name), Keys: bs.KeyN,
				Pages:   int64(bs.LeafAlloc + bs.BranchAlloc),
				Records: int64(bs.LeafInuse + bs.InlineBucketInuse)}
			sp.Tables += t.Pages
			sp.Records += t.Records
			sp.PerTable = append(sp.PerTable, t)
			return nil
		}); err != nil {
			return err
		}
		sp.Own = sp.Allocated - sp.Tables - sp.Free - sp.Pending
		return ctx.Err()
	})
	sort.SliceStable(sp.PerTable, func(i, j int) bool { return sp.PerTable[i].Pages > sp.PerTable[j].Pages })
	return sp, err
}
