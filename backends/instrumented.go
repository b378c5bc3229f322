package backends

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"artifactstore/internal/digest"
)

// Metrics are backend operation metrics, shared by every instrumented
// backend of a process.
type Metrics struct {
	duration *prometheus.HistogramVec
	errs     *prometheus.CounterVec
	bytes    *prometheus.CounterVec
}

// NewMetrics registers backend operation metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "artifactstore_backend_operation_duration_seconds",
			Help:    "Duration of storage backend operations by backend and operation (put, open, stat, delete, walk, health); open measures until the reader is closed.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"backend", "operation"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "artifactstore_backend_operation_errors_total",
			Help: "Failed storage backend operations by backend, operation and kind (not_found, invalid_range, digest_mismatch, size_mismatch, unavailable, cancelled, other).",
		}, []string{"backend", "operation", "kind"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "artifactstore_backend_bytes_total",
			Help: "Bytes written to (direction=write) and read from (direction=read) storage backends.",
		}, []string{"backend", "direction"}),
	}
	reg.MustRegister(m.duration, m.errs, m.bytes)
	return m
}

// Instrument wraps b so every operation is timed and its errors counted.
// The wrapper is the one place cross-cutting concerns live, so backends
// stay small.
func Instrument(b Backend, m *Metrics) Backend {
	return &instrumented{Backend: b, m: m}
}

type instrumented struct {
	Backend
	m *Metrics
}

func errKind(err error) string {
	switch {
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrInvalidRange):
		return "invalid_range"
	case errors.Is(err, ErrDigestMismatch):
		return "digest_mismatch"
	case errors.Is(err, ErrSizeMismatch):
		return "size_mismatch"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "cancelled"
	}
	return "other"
}

func (i *instrumented) observe(op string, start time.Time, err error) {
	id := i.Backend.ID()
	i.m.duration.WithLabelValues(id, op).Observe(time.Since(start).Seconds())
	if err != nil {
		i.m.errs.WithLabelValues(id, op, errKind(err)).Inc()
	}
}

func (i *instrumented) Put(ctx context.Context, d digest.Digest, size int64, body io.Reader) error {
	start := time.Now()
	err := i.Backend.Put(ctx, d, size, body)
	i.observe("put", start, err)
	if err == nil {
		i.m.bytes.WithLabelValues(i.Backend.ID(), "write").Add(float64(size))
	}
	return err
}

func (i *instrumented) Replace(ctx context.Context, d digest.Digest, size int64, body io.Reader) error {
	start := time.Now()
	err := i.Backend.Replace(ctx, d, size, body)
	i.observe("replace", start, err)
	if err == nil {
		i.m.bytes.WithLabelValues(i.Backend.ID(), "write").Add(float64(size))
	}
	return err
}

func (i *instrumented) Open(ctx context.Context, d digest.Digest, off, n int64) (io.ReadCloser, error) {
	start := time.Now()
	rc, err := i.Backend.Open(ctx, d, off, n)
	if err != nil {
		i.observe("open", start, err)
		return nil, err
	}
	return &countingReader{rc: rc, done: func(read int64, rerr error) {
		i.observe("open", start, rerr)
		i.m.bytes.WithLabelValues(i.Backend.ID(), "read").Add(float64(read))
	}}, nil
}

type countingReader struct {
	rc   io.ReadCloser
	n    int64
	err  error
	done func(int64, error)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

// WriteTo keeps the wrapped reader's fast path (sendfile for local files).
func (c *countingReader) WriteTo(w io.Writer) (int64, error) {
	var n int64
	var err error
	if wt, ok := c.rc.(io.WriterTo); ok {
		n, err = wt.WriteTo(w)
	} else {
		// Both sides hidden behind plain interfaces, so the 1 MiB buffer
		// is used (a ReaderFrom on w would fall back to 32 KiB copies).
		n, err = io.CopyBuffer(onlyWriter{w}, onlyReader{c.rc}, make([]byte, 1<<20))
	}
	c.n += n
	if err != nil {
		c.err = err
	}
	return n, err
}

type onlyReader struct{ io.Reader }
type onlyWriter struct{ io.Writer }

func (c *countingReader) Close() error {
	err := c.rc.Close()
	if c.done != nil {
		c.done(c.n, c.err)
		c.done = nil
	}
	return err
}

func (i *instrumented) Stat(ctx context.Context, d digest.Digest) (Info, error) {
	start := time.Now()
	info, err := i.Backend.Stat(ctx, d)
	if errors.Is(err, ErrNotFound) {
		// Absence is an answer, not a failure (commit checks and
		// verification stat objects that may not be there).
		i.observe("stat", start, nil)
		return info, err
	}
	i.observe("stat", start, err)
	return info, err
}

func (i *instrumented) Delete(ctx context.Context, d digest.Digest) error {
	start := time.Now()
	err := i.Backend.Delete(ctx, d)
	i.observe("delete", start, err)
	return err
}

func (i *instrumented) Walk(ctx context.Context, fn func(Info) error) error {
	start := time.Now()
	err := i.Backend.Walk(ctx, fn)
	i.observe("walk", start, err)
	return err
}

func (i *instrumented) Health(ctx context.Context) error {
	start := time.Now()
	err := i.Backend.Health(ctx)
	i.observe("health", start, err)
	return err
}
