// Package backendtest is the conformance suite every backends.Backend runs.
//
// A backend's test passes a constructor that returns an empty backend; each
// subtest gets a fresh one and fails if it leaves objects behind.
package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"artifactstore/backends"
	"artifactstore/internal/digest"
)

// Options tunes the suite for a backend.
type Options struct {
	// LargeSize is a size above the backend's single-request limit (for S3,
	// where uploads switch to parts). Zero means 6 MiB.
	LargeSize int64
	// WalkCount is how many objects the pagination test stores. Zero means
	// 1001, just past a typical 1,000-key listing page.
	WalkCount int
	// AfterFailedPut, if set, runs after every put that must fail, to check
	// backend-specific leftovers (for S3: unfinished part uploads).
	AfterFailedPut func(t *testing.T, b backends.Backend)
	// Overwrite writes raw bytes under d's key behind the backend's back,
	// without any check: how the suite makes a corrupted object for the
	// Replace cases. Required.
	Overwrite func(t *testing.T, b backends.Backend, d digest.Digest, raw []byte)
	// NoRecords lets a backend without backends.RecordStore skip the
	// record cases; without it such a backend fails the suite.
	NoRecords bool
}

// Constructor returns an empty backend for one subtest.
type Constructor func(t *testing.T) backends.Backend

// Run runs every conformance case against backends made by newBackend.
func Run(t *testing.T, newBackend Constructor, opts Options) {
	if opts.LargeSize == 0 {
		opts.LargeSize = 6 << 20
	}
	if opts.WalkCount == 0 {
		opts.WalkCount = 1001
	}
	if opts.Overwrite == nil {
		t.Fatal("backendtest: Options.Overwrite is required (the Replace cases corrupt objects with it)")
	}
	s := &suite{newBackend: newBackend, opts: opts}
	t.Run("PutOpenSizes", s.putOpenSizes)
	t.Run("Ranges", s.ranges)
	t.Run("NotFound", s.notFound)
	t.Run("DeleteIdempotent", s.deleteIdempotent)
	t.Run("PutExistingIsNoop", s.putExisting)
	t.Run("WrongDigestLeavesNothing", s.wrongDigest)
	t.Run("ShortBodyLeavesNothing", s.shortBody)
	t.Run("LongBodyLeavesNothing", s.longBody)
	t.Run("LargeWrongDigestLeavesNothing", s.largeWrongDigest)
	t.Run("LargeBodyCutShortLeavesNothing", s.largeShortBody)
	t.Run("CancelledContextLeavesNothing", s.cancelled)
	t.Run("ConcurrentPutsOfOneObject", s.concurrentPuts)
	t.Run("WalkManyObjects", s.walkMany)
	t.Run("Health", s.health)
	t.Run("ReplaceRewritesCorruptObject", s.replaceCorrupt)
	t.Run("ReplaceOfAbsentObjectStoresIt", s.replaceAbsent)
	t.Run("FailedReplaceKeepsOldObject", s.failedReplace)
	t.Run("ConcurrentReplacesAndReads", s.concurrentReplace)
	s.runRecords(t)
}

type suite struct {
	newBackend Constructor
	opts       Options
}

// fresh returns a backend that must be empty at the end of the subtest.
func (s *suite) fresh(t *testing.T) backends.Backend {
	t.Helper()
	b := s.newBackend(t)
	t.Cleanup(func() {
		left := walkAll(t, b)
		if len(left) > 0 {
			t.Errorf("backend %s: %d objects left behind after the test", b.ID(), len(left))
		}
		if rs, ok := backends.AsRecordStore(b); ok {
			if names := listRecords(t, rs, ""); len(names) > 0 {
				t.Errorf("backend %s: %d records left behind after the test: %v", b.ID(), len(names), names)
			}
		}
	})
	return b
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// Blob returns n pseudo-random bytes derived from seed, and their digest.
func Blob(seed uint64, n int64) ([]byte, digest.Digest) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b, digest.FromBytes(b)
}

func walkAll(t *testing.T, b backends.Backend) map[digest.Digest]int64 {
	t.Helper()
	got := map[digest.Digest]int64{}
	err := b.Walk(context.Background(), func(i backends.Info) error {
		if _, dup := got[i.Digest]; dup {
			return fmt.Errorf("walk reported %s twice", i.Digest)
		}
		got[i.Digest] = i.Size
		return nil
	})
	if err != nil {
		t.Fatalf("walk: %v", err)
	}
	return got
}

func put(t *testing.T, b backends.Backend, data []byte, d digest.Digest) {
	t.Helper()
	if err := b.Put(ctxT(t), d, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("put %d bytes: %v", len(data), err)
	}
}

func del(t *testing.T, b backends.Backend, d digest.Digest) {
	t.Helper()
	if err := b.Delete(ctxT(t), d); err != nil {
		t.Fatalf("delete %s: %v", d, err)
	}
}

func readAll(t *testing.T, b backends.Backend, d digest.Digest, off, n int64) ([]byte, error) {
	t.Helper()
	rc, err := b.Open(ctxT(t), d, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func (s *suite) assertAbsent(t *testing.T, b backends.Backend, d digest.Digest) {
	t.Helper()
	if _, err := b.Stat(ctxT(t), d); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("stat after failed put: got %v, want ErrNotFound", err)
	}
	if left := walkAll(t, b); len(left) != 0 {
		t.Fatalf("walk after failed put shows %d objects", len(left))
	}
	if s.opts.AfterFailedPut != nil {
		s.opts.AfterFailedPut(t, b)
	}
}

func (s *suite) putOpenSizes(t *testing.T) {
	for i, n := range []int64{0, 1, 1 << 20, s.opts.LargeSize} {
		t.Run(fmt.Sprintf("%dB", n), func(t *testing.T) {
			b := s.fresh(t)
			data, d := Blob(uint64(100+i), n)
			put(t, b, data, d)
			info, err := b.Stat(ctxT(t), d)
			if err != nil {
				t.Fatalf("stat: %v", err)
			}
			if info.Size != n || info.Digest != d {
				t.Fatalf("stat = %+v, want size %d digest %s", info, n, d)
			}
			got, err := readAll(t, b, d, 0, -1)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes, differ from the %d put", len(got), n)
			}
			if w := walkAll(t, b); len(w) != 1 || w[d] != n {
				t.Fatalf("walk = %v, want only %s (%d bytes)", w, d, n)
			}
			del(t, b, d)
		})
	}
}

func (s *suite) ranges(t *testing.T) {
	b := s.fresh(t)
	const size = 10000
	data, d := Blob(7, size)
	put(t, b, data, d)
	defer del(t, b, d)
	cases := []struct {
		name   string
		off, n int64
		ok     bool
	}{
		{"whole", 0, -1, true},
		{"whole explicit", 0, size, true},
		{"first byte", 0, 1, true},
		{"middle", 1234, 5000, true},
		{"last byte", size - 1, 1, true},
		{"tail open", 9000, -1, true},
		{"at end empty", size, -1, true},
		{"at end zero length", size, 0, true},
		{"zero length middle", 50, 0, true},
		{"length past end", 9000, 1001, false},
		{"offset past end", size + 1, -1, false},
		{"offset past end with length", size + 10, 5, false},
		{"negative offset", -1, 5, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := readAll(t, b, d, c.off, c.n)
			if !c.ok {
				if !errors.Is(err, backends.ErrInvalidRange) {
					t.Fatalf("Open(%d, %d): got %v (%d bytes), want ErrInvalidRange", c.off, c.n, err, len(got))
				}
				return
			}
			if err != nil {
				t.Fatalf("Open(%d, %d): %v", c.off, c.n, err)
			}
			end := int64(size)
			if c.n >= 0 {
				end = c.off + c.n
			}
			if !bytes.Equal(got, data[c.off:end]) {
				t.Fatalf("Open(%d, %d): got %d bytes, want data[%d:%d]", c.off, c.n, len(got), c.off, end)
			}
		})
	}
	// Random ranges catch off-by-one errors the table misses.
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20; i++ {
		off := r.Int64N(size + 1)
		n := r.Int64N(size - off + 1)
		got, err := readAll(t, b, d, off, n)
		if err != nil || !bytes.Equal(got, data[off:off+n]) {
			t.Fatalf("random range [%d,+%d): err %v, %d bytes", off, n, err, len(got))
		}
	}
}

func (s *suite) notFound(t *testing.T) {
	b := s.fresh(t)
	_, d := Blob(8, 10)
	if _, err := b.Stat(ctxT(t), d); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("Stat of absent object: got %v, want ErrNotFound", err)
	}
	if _, err := readAll(t, b, d, 0, -1); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("Open of absent object: got %v, want ErrNotFound", err)
	}
	if _, err := readAll(t, b, d, 5, 2); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("ranged Open of absent object: got %v, want ErrNotFound", err)
	}
}

func (s *suite) deleteIdempotent(t *testing.T) {
	b := s.fresh(t)
	data, d := Blob(9, 100)
	del(t, b, d) // never stored
	put(t, b, data, d)
	del(t, b, d)
	del(t, b, d) // already deleted
	if _, err := b.Stat(ctxT(t), d); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("Stat after delete: got %v, want ErrNotFound", err)
	}
}

func (s *suite) putExisting(t *testing.T) {
	b := s.fresh(t)
	data, d := Blob(10, 4096)
	put(t, b, data, d)
	defer del(t, b, d)
	put(t, b, data, d)
	got, err := readAll(t, b, d, 0, -1)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after second put: err %v, equal %v", err, bytes.Equal(got, data))
	}
	if w := walkAll(t, b); len(w) != 1 {
		t.Fatalf("walk shows %d objects after putting one twice", len(w))
	}
}

func (s *suite) wrongDigest(t *testing.T) {
	b := s.fresh(t)
	data, _ := Blob(11, 5000)
	_, other := Blob(12, 5000)
	err := b.Put(ctxT(t), other, int64(len(data)), bytes.NewReader(data))
	if !errors.Is(err, backends.ErrDigestMismatch) {
		t.Fatalf("put with wrong digest: got %v, want ErrDigestMismatch", err)
	}
	s.assertAbsent(t, b, other)
}

func (s *suite) shortBody(t *testing.T) {
	b := s.fresh(t)
	data, d := Blob(13, 5000)
	err := b.Put(ctxT(t), d, int64(len(data)), bytes.NewReader(data[:4000]))
	if !errors.Is(err, backends.ErrSizeMismatch) {
		t.Fatalf("put with short body: got %v, want ErrSizeMismatch", err)
	}
	s.assertAbsent(t, b, d)
}

func (s *suite) longBody(t *testing.T) {
	b := s.fresh(t)
	data, d := Blob(14, 5000)
	long := append(append([]byte{}, data...), 'x')
	err := b.Put(ctxT(t), d, int64(len(data)), bytes.NewReader(long))
	if !errors.Is(err, backends.ErrSizeMismatch) {
		t.Fatalf("put with long body: got %v, want ErrSizeMismatch", err)
	}
	s.assertAbsent(t, b, d)
}

// largeWrongDigest exercises the failure path above the single-request limit,
// where S3 backends upload in parts.
func (s *suite) largeWrongDigest(t *testing.T) {
	b := s.fresh(t)
	data, d := Blob(15, s.opts.LargeSize)
	data[len(data)-1] ^= 0xff // flip the very last byte
	err := b.Put(ctxT(t), d, int64(len(data)), bytes.NewReader(data))
	if !errors.Is(err, backends.ErrDigestMismatch) {
		t.Fatalf("large put with a flipped last byte: got %v, want ErrDigestMismatch", err)
	}
	s.assertAbsent(t, b, d)
}

// largeShortBody is a client that disconnects half-way through a body
// above the single-request limit: the body ends early.
func (s *suite) largeShortBody(t *testing.T) {
	b := s.fresh(t)
	data, d := Blob(18, s.opts.LargeSize)
	err := b.Put(ctxT(t), d, int64(len(data)), io.MultiReader(bytes.NewReader(data[:len(data)/2]), iotestErrReader{io.ErrUnexpectedEOF}))
	if !errors.Is(err, backends.ErrSizeMismatch) {
		t.Fatalf("large put whose body breaks off half-way: got %v, want ErrSizeMismatch", err)
	}
	s.assertAbsent(t, b, d)
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

// cancelled cancels the context half-way through the body.
func (s *suite) cancelled(t *testing.T) {
	b := s.fresh(t)
	data, d := Blob(16, s.opts.LargeSize)
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	body := &cancelAfter{r: bytes.NewReader(data), left: len(data) / 2, cancel: cancel}
	err := b.Put(ctx, d, int64(len(data)), body)
	if err == nil {
		t.Fatal("put with a context cancelled mid-body succeeded")
	}
	s.assertAbsent(t, b, d)
	if err := b.Put(ctx, d, int64(len(data)), bytes.NewReader(data)); err == nil {
		t.Fatal("put with an already cancelled context succeeded")
	}
	s.assertAbsent(t, b, d)
}

type cancelAfter struct {
	r      io.Reader
	left   int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.left <= 0 {
		c.cancel()
		// Block briefly like a stalled client so the backend sees the
		// cancellation rather than a short body.
		time.Sleep(50 * time.Millisecond)
		return 0, context.Canceled
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= n
	return n, err
}

func (s *suite) concurrentPuts(t *testing.T) {
	b := s.fresh(t)
	data, d := Blob(17, 2<<20)
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- b.Put(ctxT(t), d, int64(len(data)), bytes.NewReader(data))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent put: %v", err)
		}
	}
	got, err := readAll(t, b, d, 0, -1)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after concurrent puts: err %v, equal %v", err, bytes.Equal(got, data))
	}
	if w := walkAll(t, b); len(w) != 1 {
		t.Fatalf("walk shows %d objects after concurrent puts of one", len(w))
	}
	del(t, b, d)
}

func (s *suite) walkMany(t *testing.T) {
	b := s.fresh(t)
	n := s.opts.WalkCount
	want := make(map[digest.Digest]int64, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		data := []byte(fmt.Sprintf("object %d", i))
		d := digest.FromBytes(data)
		want[d] = int64(len(data))
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := b.Put(ctxT(t), d, int64(len(data)), bytes.NewReader(data)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("put: %v", err)
	}
	defer func() {
		var dwg sync.WaitGroup
		for d := range want {
			dwg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; dwg.Done() }()
				if err := b.Delete(ctxT(t), d); err != nil {
					mu.Lock()
					t.Errorf("delete: %v", err)
					mu.Unlock()
				}
			}()
		}
		dwg.Wait()
	}()
	got := walkAll(t, b)
	if len(got) != n {
		t.Fatalf("walk returned %d objects, want %d", len(got), n)
	}
	for d, size := range want {
		if got[d] != size {
			t.Fatalf("walk: %s has size %d, want %d", d, got[d], size)
		}
	}
	stop := errors.New("stop")
	calls := 0
	err := b.Walk(ctxT(t), func(backends.Info) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("walk with fn returning an error: err %v after %d calls, want that error after 1", err, calls)
	}
}

func (s *suite) health(t *testing.T) {
	b := s.fresh(t)
	if err := b.Health(ctxT(t)); err != nil {
		t.Fatalf("health: %v", err)
	}
}

// corrupt stores a damaged copy of data under d: one byte flipped, or cut
// to half its size.
func (s *suite) corrupt(t *testing.T, b backends.Backend, d digest.Digest, data []byte, truncate bool) []byte {
	t.Helper()
	bad := append([]byte{}, data...)
	if truncate {
		bad = bad[:len(bad)/2]
	} else {
		bad[len(bad)/2] ^= 0x01
	}
	s.opts.Overwrite(t, b, d, bad)
	if got, err := readAll(t, b, d, 0, -1); err != nil || !bytes.Equal(got, bad) {
		t.Fatalf("Overwrite did not store the damaged bytes: %v", err)
	}
	return bad
}

// replaceCorrupt: Put is a no-op on a damaged object; Replace rewrites it,
// in one request and above the single-request limit.
func (s *suite) replaceCorrupt(t *testing.T) {
	for _, c := range []struct {
		name     string
		size     int64
		truncate bool
	}{{"flipped", 5000, false}, {"truncated", 5000, true}, {"large-flipped", s.opts.LargeSize, false}} {
		t.Run(c.name, func(t *testing.T) {
			b := s.fresh(t)
			data, d := Blob(40+uint64(c.size), c.size)
			put(t, b, data, d)
			bad := s.corrupt(t, b, d, data, c.truncate)
			if err := b.Put(ctxT(t), d, int64(len(data)), bytes.NewReader(data)); err != nil {
				t.Fatalf("put over a damaged object: %v", err)
			}
			if got, _ := readAll(t, b, d, 0, -1); !bytes.Equal(got, bad) {
				t.Fatal("Put changed an existing object; the contract says it is a no-op")
			}
			if err := b.Replace(ctxT(t), d, int64(len(data)), bytes.NewReader(data)); err != nil {
				t.Fatalf("replace: %v", err)
			}
			got, err := readAll(t, b, d, 0, -1)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("after replace: err %v, equal %v (%d bytes)", err, bytes.Equal(got, data), len(got))
			}
			if info, err := b.Stat(ctxT(t), d); err != nil || info.Size != int64(len(data)) {
				t.Fatalf("stat after replace: %+v %v", info, err)
			}
			if w := walkAll(t, b); len(w) != 1 || w[d] != int64(len(data)) {
				t.Fatalf("walk after replace: %v", w)
			}
			del(t, b, d)
		})
	}
}

func (s *suite) replaceAbsent(t *testing.T) {
	b := s.fresh(t)
	data, d := Blob(50, 3000)
	if err := b.Replace(ctxT(t), d, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatalf("replace of an absent object: %v", err)
	}
	if got, err := readAll(t, b, d, 0, -1); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after replace: err %v, equal %v", err, bytes.Equal(got, data))
	}
	del(t, b, d)
	// A failed Replace of an absent object leaves nothing.
	if err := b.Replace(ctxT(t), d, int64(len(data)), bytes.NewReader(data[:100])); !errors.Is(err, backends.ErrSizeMismatch) {
		t.Fatalf("short replace: got %v, want ErrSizeMismatch", err)
	}
	s.assertAbsent(t, b, d)
}

// failedReplace: every way a Replace can fail leaves the previous (here
// damaged) object exactly as it was, and nothing else.
func (s *suite) failedReplace(t *testing.T) {
	for _, c := range []struct {
		name string
		size int64
		body func(data []byte, cancel func()) io.Reader
		want error
	}{
		{"wrong-digest", 5000, func(data []byte, _ func()) io.Reader {
			w := append([]byte{}, data...)
			w[len(w)-1] ^= 0xff
			return bytes.NewReader(w)
		}, backends.ErrDigestMismatch},
		{"short", 5000, func(data []byte, _ func()) io.Reader { return bytes.NewReader(data[:4000]) }, backends.ErrSizeMismatch},
		{"long", 5000, func(data []byte, _ func()) io.Reader { return bytes.NewReader(append(append([]byte{}, data...), 'x')) }, backends.ErrSizeMismatch},
		{"large-wrong-digest", s.opts.LargeSize, func(data []byte, _ func()) io.Reader {
			w := append([]byte{}, data...)
			w[len(w)-1] ^= 0xff
			return bytes.NewReader(w)
		}, backends.ErrDigestMismatch},
		{"large-cancelled", s.opts.LargeSize, func(data []byte, cancel func()) io.Reader {
			return &cancelAfter{r: bytes.NewReader(data), left: len(data) / 2, cancel: cancel}
		}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := s.fresh(t)
			data, d := Blob(60+uint64(c.size), c.size)
			put(t, b, data, d)
			bad := s.corrupt(t, b, d, data, false)
			ctx, cancel := context.WithCancel(ctxT(t))
			defer cancel()
			err := b.Replace(ctx, d, int64(len(data)), c.body(data, cancel))
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
				t.Fatalf("replace: got %v, want %v", err, c.want)
			}
			got, rerr := readAll(t, b, d, 0, -1)
			if rerr != nil || !bytes.Equal(got, bad) {
				t.Fatalf("a failed replace changed the previous object: err %v, %d bytes", rerr, len(got))
			}
			if w := walkAll(t, b); len(w) != 1 {
				t.Fatalf("walk after a failed replace shows %d objects", len(w))
			}
			if s.opts.AfterFailedPut != nil {
				s.opts.AfterFailedPut(t, b)
			}
			del(t, b, d)
		})
	}
}

// concurrentReplace: replaces and puts of one object race with readers;
// every read sees the whole object, hashing to its digest.
func (s *suite) concurrentReplace(t *testing.T) {
	b := s.fresh(t)
	data, d := Blob(70, 1<<20)
	put(t, b, data, d)
	s.corrupt(t, b, d, data, false)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 64)
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if i%3 == 2 {
				err = b.Put(ctxT(t), d, int64(len(data)), bytes.NewReader(data))
			} else {
				err = b.Replace(ctxT(t), d, int64(len(data)), bytes.NewReader(data))
			}
			if err != nil {
				errs <- fmt.Errorf("writer %d: %w", i, err)
			}
		}()
	}
	var readers sync.WaitGroup
	reads := make(chan int, 2)
	for i := 0; i < 2; i++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			n := 0
			for {
				select {
				case <-stop:
					reads <- n
					return
				default:
				}
				rc, err := b.Open(ctxT(t), d, 0, -1)
				if err != nil {
					errs <- fmt.Errorf("open during replace: %w", err)
					reads <- n
					return
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				n++
				// Old (damaged) or new (good) bytes, but whole.
				if err != nil || len(got) != len(data) {
					errs <- fmt.Errorf("read during replace: %d bytes, %v", len(got), err)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := <-reads + <-reads; n == 0 {
		t.Error("no read overlapped the replaces")
	}
	if got, err := readAll(t, b, d, 0, -1); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after concurrent replaces: err %v, equal %v", err, bytes.Equal(got, data))
	}
	del(t, b, d)
}
