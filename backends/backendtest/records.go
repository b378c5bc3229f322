package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"

	"artifactstore/backends"
	"artifactstore/internal/digest"
)

// runRecords runs the RecordStore cases. Every backend of this project
// implements RecordStore, so a backend that does not fails here; a
// third-party backend without records would set Options.NoRecords.
func (s *suite) runRecords(t *testing.T) {
	probe := s.newBackend(t)
	if _, ok := backends.AsRecordStore(probe); !ok {
		if s.opts.NoRecords {
			return
		}
		t.Fatalf("backend %s does not implement backends.RecordStore", probe.ID())
	}
	t.Run("RecordPutOpenSizes", s.recordSizes)
	t.Run("RecordReplaceIsAtomic", s.recordReplace)
	t.Run("RecordFailedPutKeepsOldRecord", s.recordFailedPut)
	t.Run("RecordNotFoundAndIdempotentDelete", s.recordNotFound)
	t.Run("RecordInvalidNames", s.recordInvalidNames)
	t.Run("RecordsAndContentAreSeparate", s.recordsSeparate)
	t.Run("RecordListingByPrefix", s.recordListing)
}

func (s *suite) freshRecords(t *testing.T) (backends.Backend, backends.RecordStore) {
	t.Helper()
	b := s.fresh(t)
	rs, _ := backends.AsRecordStore(b)
	return b, rs
}

func listRecords(t *testing.T, rs backends.RecordStore, prefix string) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	err := rs.ListRecords(context.Background(), prefix, func(i backends.RecordInfo) error {
		if _, dup := got[i.Name]; dup {
			return fmt.Errorf("listing reported %s twice", i.Name)
		}
		got[i.Name] = i.Size
		return nil
	})
	if err != nil {
		t.Fatalf("list records %q: %v", prefix, err)
	}
	return got
}

func putRecord(t *testing.T, rs backends.RecordStore, name string, data []byte) {
	t.Helper()
	if err := rs.PutRecord(ctxT(t), name, digest.FromBytes(data), int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("put record %s (%d bytes): %v", name, len(data), err)
	}
}

func readRecord(t *testing.T, rs backends.RecordStore, name string) ([]byte, error) {
	t.Helper()
	rc, info, err := rs.OpenRecord(ctxT(t), name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err == nil && int64(len(b)) != info.Size {
		err = fmt.Errorf("record %s: read %d bytes, OpenRecord said %d", name, len(b), info.Size)
	}
	return b, err
}

func delRecord(t *testing.T, rs backends.RecordStore, name string) {
	t.Helper()
	if err := rs.DeleteRecord(ctxT(t), name); err != nil {
		t.Fatalf("delete record %s: %v", name, err)
	}
}

func (s *suite) recordSizes(t *testing.T) {
	for _, n := range []int64{0, 1, 4096, s.opts.LargeSize} {
		t.Run(fmt.Sprintf("%dB", n), func(t *testing.T) {
			_, rs := s.freshRecords(t)
			data, _ := Blob(uint64(800+n), n)
			name := fmt.Sprintf("snapshots/2026/s-%d.db", n)
			putRecord(t, rs, name, data)
			got, err := readRecord(t, rs, name)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes: err %v, equal %v", n, err, bytes.Equal(got, data))
			}
			if l := listRecords(t, rs, "snapshots/"); len(l) != 1 || l[name] != n {
				t.Fatalf("listing after put: %v, want %s with %d bytes", l, name, n)
			}
			delRecord(t, rs, name)
			if _, err := readRecord(t, rs, name); !errors.Is(err, backends.ErrNotFound) {
				t.Fatalf("read after delete: %v, want ErrNotFound", err)
			}
		})
	}
}

// recordReplace: a record is rewritten in place; readers racing the
// rewrites see one whole version or the other.
func (s *suite) recordReplace(t *testing.T) {
	_, rs := s.freshRecords(t)
	const name = "packages/app/1.0.0+build.7.json"
	a, _ := Blob(900, 64<<10)
	b2, _ := Blob(901, 64<<10)
	putRecord(t, rs, name, a)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 6; i++ {
			data := a
			if i%2 == 0 {
				data = b2
			}
			if err := rs.PutRecord(ctxT(t), name, digest.FromBytes(data), int64(len(data)), bytes.NewReader(data)); err != nil {
				errs <- err
			}
		}
	}()
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			got, err := readRecord(t, rs, name)
			if err != nil || !(bytes.Equal(got, a) || bytes.Equal(got, b2)) {
				errs <- fmt.Errorf("read during rewrites: %d bytes, %v", len(got), err)
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	rwg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got, err := readRecord(t, rs, name); err != nil || !bytes.Equal(got, a) {
		t.Fatalf("after the rewrites: err %v, want the last version", err)
	}
	delRecord(t, rs, name)
}

// recordFailedPut: a wrong hash, a short or long body or a cancelled
// context leaves the previous record exactly as it was, and an absent
// record absent.
func (s *suite) recordFailedPut(t *testing.T) {
	for _, c := range []struct {
		name string
		size int64
		body func(data []byte, cancel func()) io.Reader
		want error
	}{
		{"wrong-digest", 3000, func(data []byte, _ func()) io.Reader {
			w := append([]byte{}, data...)
			w[0] ^= 0xff
			return bytes.NewReader(w)
		}, backends.ErrDigestMismatch},
		{"short", 3000, func(data []byte, _ func()) io.Reader { return bytes.NewReader(data[:2000]) }, backends.ErrSizeMismatch},
		{"long", 3000, func(data []byte, _ func()) io.Reader { return bytes.NewReader(append(append([]byte{}, data...), 1)) }, backends.ErrSizeMismatch},
		{"large-cancelled", s.opts.LargeSize, func(data []byte, cancel func()) io.Reader {
			return &cancelAfter{r: bytes.NewReader(data), left: len(data) / 2, cancel: cancel}
		}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, rs := s.freshRecords(t)
			old := []byte(`{"old":true}`)
			const kept, absent = "packages/p/1.json", "packages/p/2.json"
			putRecord(t, rs, kept, old)
			data, d := Blob(950+uint64(c.size), c.size)
			for _, name := range []string{kept, absent} {
				ctx, cancel := context.WithCancel(ctxT(t))
				err := rs.PutRecord(ctx, name, d, c.size, c.body(data, cancel))
				cancel()
				if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
					t.Fatalf("put record %s: got %v, want %v", name, err, c.want)
				}
			}
			if got, err := readRecord(t, rs, kept); err != nil || !bytes.Equal(got, old) {
				t.Fatalf("a failed put changed the previous record: %q, %v", got, err)
			}
			if _, err := readRecord(t, rs, absent); !errors.Is(err, backends.ErrNotFound) {
				t.Fatalf("a failed put of a new record left something: %v", err)
			}
			if l := listRecords(t, rs, ""); len(l) != 1 {
				t.Fatalf("listing after failed puts: %v", l)
			}
			if s.opts.AfterFailedPut != nil {
				s.opts.AfterFailedPut(t, b)
			}
			delRecord(t, rs, kept)
		})
	}
}

func (s *suite) recordNotFound(t *testing.T) {
	_, rs := s.freshRecords(t)
	if _, _, err := rs.OpenRecord(ctxT(t), "packages/none/1.json"); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("open absent record: %v, want ErrNotFound", err)
	}
	putRecord(t, rs, "packages/a/1.json", []byte("x"))
	// A directory of records is not a record.
	if _, _, err := rs.OpenRecord(ctxT(t), "packages/a"); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("open a name that is only a prefix of a record: %v, want ErrNotFound", err)
	}
	delRecord(t, rs, "packages/a/1.json")
	delRecord(t, rs, "packages/a/1.json")
	delRecord(t, rs, "packages/never/1.json")
	ctx, cancel := context.WithCancel(ctxT(t))
	cancel()
	if err := rs.PutRecord(ctx, "packages/a/2.json", digest.FromBytes([]byte("y")), 1, bytes.NewReader([]byte("y"))); err == nil {
		t.Fatal("put record with a cancelled context succeeded")
	}
	if l := listRecords(t, rs, ""); len(l) != 0 {
		t.Fatalf("records left: %v", l)
	}
}

func (s *suite) recordInvalidNames(t *testing.T) {
	_, rs := s.freshRecords(t)
	data := []byte("x")
	d := digest.FromBytes(data)
	for _, name := range []string{"", "/a", "a/", "a//b", "../a", "a/../b", "./a", ".tmp/a", "a/.hidden",
		"sha256/ab/cd/" + d.Hex, "sha256", "a\\b", "a\nb"} {
		err := rs.PutRecord(ctxT(t), name, d, 1, bytes.NewReader(data))
		if !errors.Is(err, backends.ErrInvalidRecordName) {
			t.Errorf("put record %q: %v, want ErrInvalidRecordName", name, err)
		}
		if _, _, err := rs.OpenRecord(ctxT(t), name); !errors.Is(err, backends.ErrInvalidRecordName) {
			t.Errorf("open record %q: %v, want ErrInvalidRecordName", name, err)
		}
		if err := rs.DeleteRecord(ctxT(t), name); !errors.Is(err, backends.ErrInvalidRecordName) {
			t.Errorf("delete record %q: %v, want ErrInvalidRecordName", name, err)
		}
	}
}

// recordsSeparate: content never shows in a record listing and records
// never in Walk, and deleting one never touches the other.
func (s *suite) recordsSeparate(t *testing.T) {
	b, rs := s.freshRecords(t)
	data, d := Blob(990, 100)
	put(t, b, data, d)
	putRecord(t, rs, "packages/x/1.json", data)
	putRecord(t, rs, "snapshots/s.db", data)
	if w := walkAll(t, b); len(w) != 1 || w[d] != 100 {
		t.Fatalf("walk with records present: %v, want only the content", w)
	}
	if l := listRecords(t, rs, ""); len(l) != 2 {
		t.Fatalf("records listing with content present: %v, want the two records", l)
	}
	delRecord(t, rs, "packages/x/1.json")
	if _, err := b.Stat(ctxT(t), d); err != nil {
		t.Fatalf("content gone after deleting a record: %v", err)
	}
	del(t, b, d)
	if got, err := readRecord(t, rs, "snapshots/s.db"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("record changed after deleting content: %v", err)
	}
	delRecord(t, rs, "snapshots/s.db")
}

// recordListing: prefixes select exactly their records, at several
// depths, with the stored sizes; fn's error stops the listing.
func (s *suite) recordListing(t *testing.T) {
	_, rs := s.freshRecords(t)
	names := []string{"packages/a/1.json", "packages/a/2.json", "packages/ab/1.json",
		"packages/b/1.0.0+x.json", "snapshots/2026-01.db", "snapshots/2026-02.db"}
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := bytes.Repeat([]byte{'r'}, i+1)
			if err := rs.PutRecord(ctxT(t), n, digest.FromBytes(data), int64(len(data)), bytes.NewReader(data)); err != nil {
				t.Errorf("put %s: %v", n, err)
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, n := range names {
			delRecord(t, rs, n)
		}
	}()
	for _, c := range []struct {
		prefix string
		want   []string
	}{
		{"", names},
		{"packages/", names[:4]},
		{"packages/a/", names[:2]},
		{"packages/a", names[:3]},
		{"snapshots/", names[4:]},
		{"snapshots/2026-02", names[5:]},
		{"nothing/", nil},
	} {
		got := listRecords(t, rs, c.prefix)
		var gotNames []string
		for n, size := range got {
			gotNames = append(gotNames, n)
			if i := slices.Index(names, n); i < 0 || size != int64(i+1) {
				t.Errorf("listing %q: %s has %d bytes", c.prefix, n, size)
			}
		}
		slices.Sort(gotNames)
		want := slices.Clone(c.want)
		slices.Sort(want)
		if !slices.Equal(gotNames, want) {
			t.Errorf("listing %q: %v, want %v", c.prefix, gotNames, want)
		}
	}
	stop := errors.New("stop")
	calls := 0
	err := rs.ListRecords(ctxT(t), "", func(backends.RecordInfo) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("listing with fn returning an error: %v after %d calls", err, calls)
	}
}
