package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"artifactstore/backends"
	"artifactstore/backends/backendtest"
	"artifactstore/backends/s3"
	"artifactstore/backends/s3/s3test"
	"artifactstore/internal/digest"
)

// partWatch wraps the client's transport and watches the part uploads
// (PUT with a partNumber): how many run at once, how many started, and
// which part number should fail. Each part waits (up to hold) until want
// parts are in flight, so the concurrency a test sees does not depend on
// how fast the server answers.
type partWatch struct {
	want     int
	hold     time.Duration
	failPart string

	mu       sync.Mutex
	cur, max int
	started  atomic.Int64
	aborts   atomic.Int64
	next     http.RoundTripper
}

func (w *partWatch) wrap(next http.RoundTripper) http.RoundTripper {
	w.next = next
	return w
}

func (w *partWatch) RoundTrip(r *http.Request) (*http.Response, error) {
	q := r.URL.Query()
	if r.Method == http.MethodDelete && q.Has("uploadId") {
		w.aborts.Add(1)
	}
	part := q.Get("partNumber")
	if r.Method != http.MethodPut || part == "" {
		return w.next.RoundTrip(r)
	}
	w.started.Add(1)
	if part == w.failPart {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, errors.New("injected failure of part " + part)
	}
	w.mu.Lock()
	w.cur++
	w.max = max(w.max, w.cur)
	deadline := time.Now().Add(w.hold)
	for w.cur < w.want && time.Now().Before(deadline) {
		w.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		w.mu.Lock()
	}
	w.mu.Unlock()
	resp, err := w.next.RoundTrip(r)
	w.mu.Lock()
	w.cur--
	w.mu.Unlock()
	return resp, err
}

func (w *partWatch) maxInFlight() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.max
}

// TestPartsInFlight: an object of many parts goes up with exactly
// multipart_parts_in_flight parts at once (never more) and arrives intact;
// with several in flight, the part buffers are reused, so nine parts cost
// about as much memory as three.
func TestPartsInFlight(t *testing.T) {
	const chunk = 5 << 20
	for _, srv := range s3test.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			cfg := srv.NewBucket(t)
			cfg.MultipartThresholdBytes = chunk
			cfg.MultipartChunkBytes = chunk
			var allocs []int64
			for _, c := range []struct{ inFlight, parts int }{{1, 3}, {3, 3}, {3, 9}} {
				cfg.MultipartPartsInFlight = c.inFlight
				data, d := backendtest.Blob(uint64(40+c.parts), int64(c.parts-1)*chunk+777)
				w := &partWatch{want: c.inFlight, hold: 2 * time.Second}
				b, err := s3.NewWithTransport("s3-test", cfg, "inflight", slog.New(slog.DiscardHandler), w.wrap)
				if err != nil {
					t.Fatal(err)
				}
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				if err := b.Put(context.Background(), d, int64(len(data)), bytes.NewReader(data)); err != nil {
					t.Fatalf("%d in flight: put: %v", c.inFlight, err)
				}
				runtime.ReadMemStats(&after)
				alloc := int64(after.TotalAlloc - before.TotalAlloc)
				t.Logf("%d in flight, %d parts: %d parts at once, %.1f MiB allocated during the put", c.inFlight, c.parts, w.maxInFlight(), float64(alloc)/(1<<20))
				if c.inFlight > 1 {
					allocs = append(allocs, alloc)
				}
				if got := w.maxInFlight(); got != c.inFlight {
					t.Errorf("%d in flight configured: %d parts were in flight at once", c.inFlight, got)
				}
				if got := w.started.Load(); got != int64(c.parts) {
					t.Errorf("%d in flight: %d part uploads, want %d", c.inFlight, got, c.parts)
				}
				rc, err := b.Open(context.Background(), d, 0, -1)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("%d in flight: read back %d bytes (%v), want the %d put", c.inFlight, len(got), err, len(data))
				}
				b.Delete(context.Background(), d)
			}
			// A buffer per part would add six chunks (30 MiB) for the six
			// extra parts, on top of the client library's per-request
			// allocations (1-3 MiB a part, more where the server closes
			// connections and each new one gets its 2 MiB of I/O buffers);
			// reused buffers add only the latter (7-20 MiB measured).
			if extra := allocs[1] - allocs[0]; extra > 5*chunk {
				t.Errorf("nine parts allocated %d MiB more than three (3 in flight), want under %d MiB: part buffers are not reused", extra>>20, 5*chunk>>20)
			}
		})
	}
}

// TestPartFailureAbortsUpload: when one part fails, the parts still in
// flight are cancelled, no further part starts, the upload is aborted, and
// neither an object nor an incomplete upload is left.
func TestPartFailureAbortsUpload(t *testing.T) {
	cephParts(t, func(t *testing.T, srv s3test.Server, cfg s3.Config) {
		cfg.MultipartPartsInFlight = 3
		cfg.MaxRetries = 1
		w := &partWatch{want: 1, failPart: "2"}
		b, err := s3.NewWithTransport("s3-test", cfg, "fail", slog.New(slog.DiscardHandler), w.wrap)
		if err != nil {
			t.Fatal(err)
		}
		data, d := backendtest.Blob(43, 6*partChunk) // six parts
		err = b.Put(context.Background(), d, int64(len(data)), bytes.NewReader(data))
		if err == nil || !errors.Is(err, backends.ErrUnavailable) {
			t.Fatalf("put with a failing part: %v, want an unavailable error", err)
		}
		if got := w.started.Load(); got >= 6 {
			t.Errorf("all %d parts were started after part 2 failed", got)
		}
		if w.aborts.Load() != 1 {
			t.Errorf("%d aborts of the upload, want 1", w.aborts.Load())
		}
		assertNothingLeft(t, srv, cfg, b, d)
	})
}

// TestPartsInFlightCancel: cancelling the caller's context while parts are
// in flight stops the upload with the context's error and leaves nothing.
func TestPartsInFlightCancel(t *testing.T) {
	cephParts(t, func(t *testing.T, srv s3test.Server, cfg s3.Config) {
		cfg.MultipartPartsInFlight = 2
		w := &partWatch{want: 1}
		b, err := s3.NewWithTransport("s3-test", cfg, "cancel", slog.New(slog.DiscardHandler), w.wrap)
		if err != nil {
			t.Fatal(err)
		}
		data, d := backendtest.Blob(44, 4*partChunk)
		ctx, cancel := context.WithCancel(context.Background())
		// Cancel once the third part has been read from the body.
		body := &cancelAfter{r: bytes.NewReader(data), n: 2*partChunk + 1, cancel: cancel}
		err = b.Put(ctx, d, int64(len(data)), body)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled put: %v, want context.Canceled", err)
		}
		assertNothingLeft(t, srv, cfg, b, d)
	})
}

// partChunk is the part size (and multipart threshold) of the failure
// tests: the smallest part S3 takes.
const partChunk = 5 << 20

// cephParts runs fn on Ceph RGW with a fresh bucket whose uploads go in
// parts of partChunk: the failure paths are client-side logic, so one
// server (the production target) suffices.
func cephParts(t *testing.T, fn func(t *testing.T, srv s3test.Server, cfg s3.Config)) {
	for _, srv := range s3test.Servers(t) {
		if srv.Name != "ceph" {
			continue
		}
		t.Run(srv.Name, func(t *testing.T) {
			cfg := srv.NewBucket(t)
			cfg.MultipartThresholdBytes = partChunk
			cfg.MultipartChunkBytes = partChunk
			fn(t, srv, cfg)
		})
	}
}

// assertNothingLeft fails unless a failed put left neither the object nor
// an incomplete upload.
func assertNothingLeft(t *testing.T, srv s3test.Server, cfg s3.Config, b *s3.Backend, d digest.Digest) {
	t.Helper()
	if _, err := b.Stat(context.Background(), d); !errors.Is(err, backends.ErrNotFound) {
		t.Fatalf("after a failed put: stat %v, want not found", err)
	}
	if left := s3test.IncompleteUploads(t, srv.Client(t), cfg.Bucket, ""); len(left) > 0 {
		t.Fatalf("incomplete uploads left: %v", left)
	}
}

// cancelAfter calls cancel once n bytes have been read.
type cancelAfter struct {
	r      io.Reader
	n      int64
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	if c.n -= int64(k); c.n <= 0 {
		c.cancel()
	}
	return k, err
}
