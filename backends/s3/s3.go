// Package s3 stores objects in an S3-compatible service (Ceph RGW, MinIO,
// AWS S3) through github.com/minio/minio-go/v7.
//
// Objects use the shared key layout
// <key_prefix>/<algorithm>/<hex[0:2]>/<hex[2:4]>/<hex>. Objects up to the
// multipart threshold go up in one PUT; larger ones as a multipart upload
// this package drives itself (create, stream each part, complete), so a
// failed upload is always aborted and never leaves an incomplete upload or a
// visible object behind. S3 errors become the backends package's typed
// errors here, at the edge; nothing outside this package sees S3 terms.
package s3

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/encrypt"

	"artifactstore/backends"
	"artifactstore/internal/digest"
)

// Backend is a backends.Backend on one S3 bucket.
type Backend struct {
	id     string
	cfg    Config
	prefix string
	core   minio.Core
	log    *slog.Logger
	sse    encrypt.ServerSide
}

var _ backends.Backend = (*Backend)(nil)

// New resolves the credential references and builds the client. It does
// not contact the service; Health does.
func New(id string, cfg Config, keyPrefix string, res Resolver, log *slog.Logger) (*Backend, error) {
	return newBackend(id, cfg, keyPrefix, res, log, nil)
}

// newBackend is New with a hook that may wrap the HTTP transport (tests
// watch and break requests with it).
func newBackend(id string, cfg Config, keyPrefix string, res Resolver, log *slog.Logger, wrap func(http.RoundTripper) http.RoundTripper) (*Backend, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	access, err := res.Resolve(cfg.AccessKeyRef)
	if err != nil {
		return nil, &FieldError{"access_key_ref", err.Error()}
	}
	secret, err := res.Resolve(cfg.SecretKeyRef)
	if err != nil {
		return nil, &FieldError{"secret_key_ref", err.Error()}
	}
	u, _ := url.Parse(cfg.EndpointURL)
	transport, err := newTransport(cfg)
	if err != nil {
		return nil, err
	}
	var rt http.RoundTripper = transport
	if wrap != nil {
		rt = wrap(transport)
	}
	lookup := map[string]minio.BucketLookupType{"path": minio.BucketLookupPath, "dns": minio.BucketLookupDNS, "auto": minio.BucketLookupAuto}[cfg.BucketLookup]
	client, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(access, secret, ""),
		Secure:       u.Scheme == "https",
		Region:       cfg.Region,
		Transport:    rt,
		BucketLookup: lookup,
		MaxRetries:   cfg.MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client for %s: %w", cfg.EndpointURL, err)
	}
	b := &Backend{id: id, cfg: cfg, prefix: strings.Trim(keyPrefix, "/"), core: minio.Core{Client: client}, log: log}
	if strings.EqualFold(cfg.SSE, "sse-s3") {
		b.sse = encrypt.NewSSE()
	}
	return b, nil
}

func newTransport(cfg Config) (*http.Transport, error) {
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
		// Objects are already compressed artifacts; transparent gzip would
		// only change Content-Length semantics.
		DisableCompression: true,
		WriteBufferSize:    1 << 20,
		// A read smaller than this buffer goes through it (one more copy
		// of every byte); GETs are read in 1 MiB chunks that the socket
		// fills a part at a time, so a 1 MiB buffer made most reads copy
		// (about 0.3 CPU-s per GB downloaded, ~10% of a proxied GET's
		// throughput on 2 cores; PERFORMANCE.md, session 7).
		ReadBufferSize: 64 << 10,
	}
	if cfg.CABundleFile != "" {
		pem, err := os.ReadFile(cfg.CABundleFile)
		if err != nil {
			return nil, &FieldError{"ca_bundle_file", err.Error()}
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &FieldError{"ca_bundle_file", "no PEM certificate found in " + cfg.CABundleFile}
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return t, nil
}

// ID implements backends.Backend.
func (b *Backend) ID() string { return b.id }

// Key returns the object key of d.
func (b *Backend) Key(d digest.Digest) string { return backends.ObjectKey(b.prefix, d) }

// Config returns the effective configuration (credentials are references).
func (b *Backend) Config() Config { return b.cfg }

// Core exposes the client for self-tests and test helpers in this tree.
func (b *Backend) Core() minio.Core { return b.core }

// mapErr turns an S3 error into the SPI's typed errors, keeping the cause.
func (b *Backend) mapErr(op, key string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("s3 %s %s: %w", op, key, err)
	}
	resp := minio.ToErrorResponse(err)
	switch resp.Code {
	case "NoSuchKey", "NotFound":
		return fmt.Errorf("s3 %s %s: %w", op, key, backends.ErrNotFound)
	case "InvalidRange":
		return fmt.Errorf("s3 %s %s: %w", op, key, backends.ErrInvalidRange)
	case "NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidBucketName",
		"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "XMinioServerNotInitialized":
		return fmt.Errorf("s3 %s %s on %s: %w: %s (%s)", op, key, b.cfg.EndpointURL, backends.ErrUnavailable, resp.Code, resp.Message)
	}
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("s3 %s %s: %w", op, key, backends.ErrNotFound)
	}
	if resp.StatusCode == http.StatusRequestedRangeNotSatisfiable {
		return fmt.Errorf("s3 %s %s: %w", op, key, backends.ErrInvalidRange)
	}
	var ne net.Error
	var ue *url.Error
	if errors.As(err, &ne) || errors.As(err, &ue) || resp.StatusCode >= 500 {
		return fmt.Errorf("s3 %s %s on %s: %w: %w", op, key, b.cfg.EndpointURL, backends.ErrUnavailable, err)
	}
	return fmt.Errorf("s3 %s %s: %w", op, key, err)
}

func (b *Backend) putOptions() minio.PutObjectOptions {
	return minio.PutObjectOptions{
		ContentType:          "application/octet-stream",
		StorageClass:         b.cfg.StorageClass,
		ServerSideEncryption: b.sse,
		DisableMultipart:     true,
	}
}

// Put implements backends.Backend.
func (b *Backend) Put(ctx context.Context, d digest.Digest, size int64, body io.Reader) error {
	key := b.Key(d)
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := b.Stat(ctx, d); err == nil {
		return nil
	} else if !errors.Is(err, backends.ErrNotFound) {
		return err
	}
	return b.write(ctx, key, d, size, body)
}

// Replace writes the object like Put even if one exists. An S3 PUT (or
// the completion of a part upload) replaces a key atomically, and both
// happen only after the verifier accepted every byte, so a failed
// Replace leaves the old object in place.
func (b *Backend) Replace(ctx context.Context, d digest.Digest, size int64, body io.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.write(ctx, b.Key(d), d, size, body)
}

func (b *Backend) write(ctx context.Context, key string, d digest.Digest, size int64, body io.Reader) error {
	v := digest.NewVerifier(backends.ContextReader(ctx, body), d, size)
	var err error
	if size == 0 {
		// The HTTP client never reads an empty body, so verify it here
		// (the verifier also rejects a body that is not empty).
		if _, err := io.Copy(io.Discard, v); err != nil {
			return fmt.Errorf("s3 put %s: %w", key, err)
		}
		err = b.putSingle(ctx, key, d, strings.NewReader(""), 0)
	} else if size <= b.cfg.MultipartThresholdBytes {
		err = b.putSingle(ctx, key, d, v, size)
	} else {
		err = b.putMultipart(ctx, key, v, size)
	}
	if verr := v.Err(); verr != nil {
		// Whatever the client library made of the aborted body, the cause
		// is the verifier's (mismatch, short or long body, cancellation).
		return fmt.Errorf("s3 put %s: %w", key, verr)
	}
	if err != nil {
		return err
	}
	if !v.Verified() {
		// The service accepted an object we did not fully verify: never
		// leave it visible.
		b.deleteKey(context.WithoutCancel(ctx), key)
		return fmt.Errorf("s3 put %s: body not fully read: %w", key, digest.ErrSizeMismatch)
	}
	return nil
}

// putSingle sends one PUT. The verifier withholds the final bytes when the
// content does not match, so the service never receives a complete body.
// The sha256 also goes into the SigV4 payload hash, so a conforming
// service verifies the bytes itself too.
func (b *Backend) putSingle(ctx context.Context, key string, d digest.Digest, v io.Reader, size int64) error {
	opts := b.putOptions()
	sha := d.Hex
	if size == 0 {
		// RGW 16.2 rejects every signed payload hash of an empty body
		// (plain or streaming); an unsigned payload works everywhere.
		sha = ""
		opts.DisableContentSha256 = true
	}
	_, err := b.core.PutObject(ctx, b.cfg.Bucket, key, v, size, "", sha, opts)
	return b.mapErr("put", key, err)
}

// putMultipart sends the body in parts (multipart_parts_in_flight at once,
// see putPartsConcurrently). On any failure it aborts the
// upload (with a context that survives the caller's cancellation), so no
// incomplete upload is left to accumulate storage.
func (b *Backend) putMultipart(ctx context.Context, key string, v *digest.Verifier, size int64) (err error) {
	opts := b.putOptions()
	opts.DisableMultipart = false
	uploadID, err := b.core.NewMultipartUpload(ctx, b.cfg.Bucket, key, opts)
	if err != nil {
		return b.mapErr("create multipart upload", key, err)
	}
	defer func() {
		if err == nil {
			return
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if aerr := b.core.AbortMultipartUpload(actx, b.cfg.Bucket, key, uploadID); aerr != nil {
			b.log.Error("aborting a failed multipart upload failed; the bucket may hold an incomplete upload until a lifecycle rule removes it",
				"backend", b.id, "key", key, "err", aerr)
		}
	}()
	chunk := b.cfg.MultipartChunkBytes
	if parts := (size + chunk - 1) / chunk; parts > MaxParts {
		// Grow the part size so the object fits in 10,000 parts.
		chunk = (size + MaxParts - 1) / MaxParts
	}
	var parts []minio.CompletePart
	if b.cfg.MultipartPartsInFlight > 1 {
		parts, err = b.putPartsConcurrently(ctx, key, uploadID, v, size, chunk, b.cfg.MultipartPartsInFlight)
	} else {
		parts, err = b.putPartsStreamed(ctx, key, uploadID, v, size, chunk)
	}
	if err != nil {
		return err
	}
	if !v.Verified() {
		// All bytes were sent but the check did not run to completion.
		if verr := v.Err(); verr != nil {
			return verr
		}
		return fmt.Errorf("s3 put %s: %w", key, digest.ErrSizeMismatch)
	}
	if _, err := b.core.CompleteMultipartUpload(ctx, b.cfg.Bucket, key, uploadID, parts, opts); err != nil {
		return b.mapErr("complete multipart upload", key, err)
	}
	return nil
}

// putPartsStreamed sends the parts one after another, each streamed from
// the body without a buffer.
func (b *Backend) putPartsStreamed(ctx context.Context, key, uploadID string, v io.Reader, size, chunk int64) ([]minio.CompletePart, error) {
	var parts []minio.CompletePart
	for n, off := 1, int64(0); off < size; n++ {
		partSize := min(chunk, size-off)
		p, err := b.core.PutObjectPart(ctx, b.cfg.Bucket, key, uploadID, n, io.LimitReader(v, partSize), partSize, minio.PutObjectPartOptions{})
		if err != nil {
			return nil, b.mapErr(fmt.Sprintf("put part %d", n), key, err)
		}
		parts = append(parts, minio.CompletePart{PartNumber: n, ETag: p.ETag})
		off += partSize
	}
	return parts, nil
}

// putPartsConcurrently reads the body part by part into at most inFlight
// buffers of chunk bytes and sends up to inFlight parts at once: the body
// is read while earlier parts are still on the wire, and the service's
// time to store one part overlaps with sending the next. The first error
// (a read of the body or any part) cancels the parts still in flight and
// stops reading; the caller then aborts the upload. A buffered part is
// seekable, so the client library may retry it.
func (b *Backend) putPartsConcurrently(ctx context.Context, key, uploadID string, v io.Reader, size, chunk int64, inFlight int) ([]minio.CompletePart, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg       sync.WaitGroup
		failOnce sync.Once
		firstErr error
	)
	fail := func(err error) {
		failOnce.Do(func() {
			firstErr = err
			cancel(err)
		})
	}
	// free holds the buffers not in use; nil slots are allocated on first
	// use, so a small upload never holds inFlight buffers.
	free := make(chan []byte, inFlight)
	for range inFlight {
		free <- nil
	}
	parts := make([]minio.CompletePart, (size+chunk-1)/chunk)
read:
	for n, off := 1, int64(0); off < size; n++ {
		partSize := min(chunk, size-off)
		var buf []byte
		select {
		case buf = <-free:
		case <-ctx.Done():
			fail(fmt.Errorf("s3 put %s: %w", key, context.Cause(ctx)))
			break read
		}
		if int64(cap(buf)) < partSize {
			buf = make([]byte, chunk)
		}
		buf = buf[:partSize]
		if _, err := io.ReadFull(v, buf); err != nil {
			fail(fmt.Errorf("s3 put %s: reading part %d: %w", key, n, err))
			free <- buf
			break
		}
		if ctx.Err() != nil {
			// A part failed (or the caller gave up) while this one was
			// read: start no more.
			fail(fmt.Errorf("s3 put %s: %w", key, context.Cause(ctx)))
			free <- buf
			break
		}
		off += partSize
		wg.Add(1)
		go func(n int, buf []byte) {
			defer wg.Done()
			defer func() { free <- buf }()
			p, err := b.core.PutObjectPart(ctx, b.cfg.Bucket, key, uploadID, n, bytes.NewReader(buf), int64(len(buf)), minio.PutObjectPartOptions{})
			if err != nil {
				fail(b.mapErr(fmt.Sprintf("put part %d", n), key, err))
				return
			}
			parts[n-1] = minio.CompletePart{PartNumber: n, ETag: p.ETag}
		}(n, buf)
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return parts, nil
}

// Open implements backends.Backend. One ranged GET; S3 clamps a range
// that runs past the end, so the answer's Content-Range is checked.
func (b *Backend) Open(ctx context.Context, d digest.Digest, off, n int64) (io.ReadCloser, error) {
	key := b.Key(d)
	if off < 0 {
		return nil, fmt.Errorf("s3 get %s: %w", key, backends.ErrInvalidRange)
	}
	if n == 0 {
		// A zero-length range cannot be expressed; check the bounds only.
		info, err := b.Stat(ctx, d)
		if err != nil {
			return nil, err
		}
		if off > info.Size {
			return nil, fmt.Errorf("s3 get %s: offset %d past %d bytes: %w", key, off, info.Size, backends.ErrInvalidRange)
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	opts := minio.GetObjectOptions{}
	switch {
	case n > 0:
		opts.SetRange(off, off+n-1)
	case off > 0:
		opts.SetRange(off, 0)
	}
	rc, info, hdr, err := b.core.GetObject(ctx, b.cfg.Bucket, key, opts)
	if err != nil {
		err = b.mapErr("get", key, err)
		if errors.Is(err, backends.ErrInvalidRange) && n < 0 {
			// "bytes=size-" is unsatisfiable to S3 but an empty read to us.
			if st, serr := b.Stat(ctx, d); serr == nil && off == st.Size {
				return io.NopCloser(strings.NewReader("")), nil
			}
		}
		return nil, err
	}
	if n > 0 || off > 0 {
		total, start, length, ok := parseContentRange(hdr.Get("Content-Range"))
		if !ok {
			rc.Close()
			return nil, fmt.Errorf("s3 get %s: bad Content-Range %q in a ranged answer", key, hdr.Get("Content-Range"))
		}
		if start != off || (n > 0 && length != n) || (n < 0 && start+length != total) {
			rc.Close()
			return nil, fmt.Errorf("s3 get %s [%d,+%d) of %d bytes: %w", key, off, n, total, backends.ErrInvalidRange)
		}
	} else if info.Size < 0 {
		rc.Close()
		return nil, fmt.Errorf("s3 get %s: no Content-Length", key)
	}
	return &readCloser{r: backends.ContextReader(ctx, rc), c: rc}, nil
}

// parseContentRange parses "bytes start-end/total".
func parseContentRange(h string) (total, start, length int64, ok bool) {
	spec, found := strings.CutPrefix(h, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(spec, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, z, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	start, err1 = strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(z, 10, 64)
	total, err3 = strconv.ParseInt(tot, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || end < start {
		return 0, 0, 0, false
	}
	return total, start, end - start + 1, true
}

type readCloser struct {
	r io.Reader
	c io.Closer
}

func (r *readCloser) Read(p []byte) (int, error) { return r.r.Read(p) }
func (r *readCloser) Close() error               { return r.c.Close() }

// Stat implements backends.Backend.
func (b *Backend) Stat(ctx context.Context, d digest.Digest) (backends.Info, error) {
	key := b.Key(d)
	info, err := b.core.StatObject(ctx, b.cfg.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return backends.Info{}, b.mapErr("stat", key, err)
	}
	return backends.Info{Digest: d, Size: info.Size}, nil
}

// Delete implements backends.Backend; deleting an absent object succeeds.
func (b *Backend) Delete(ctx context.Context, d digest.Digest) error {
	return b.deleteKey(ctx, b.Key(d))
}

func (b *Backend) deleteKey(ctx context.Context, key string) error {
	err := b.core.RemoveObject(ctx, b.cfg.Bucket, key, minio.RemoveObjectOptions{})
	if err = b.mapErr("delete", key, err); errors.Is(err, backends.ErrNotFound) {
		return nil
	}
	return err
}

// Walk implements backends.Backend. The listing pages through the prefix
// (1,000 keys a page) and stops as soon as fn returns an error.
func (b *Backend) Walk(ctx context.Context, fn func(backends.Info) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	prefix := ""
	if b.prefix != "" {
		prefix = b.prefix + "/"
	}
	for obj := range b.core.Client.ListObjects(ctx, b.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return b.mapErr("list", prefix, obj.Err)
		}
		d, ok := backends.ParseObjectKey(b.prefix, obj.Key)
		if !ok {
			continue
		}
		if err := fn(backends.Info{Digest: d, Size: obj.Size}); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Health implements backends.Backend: the bucket answers with these
// credentials.
func (b *Backend) Health(ctx context.Context) error {
	ok, err := b.core.BucketExists(ctx, b.cfg.Bucket)
	if err != nil {
		err = b.mapErr("check bucket", b.cfg.Bucket, err)
		if !errors.Is(err, backends.ErrUnavailable) {
			err = fmt.Errorf("%w: %w", backends.ErrUnavailable, err)
		}
		return fmt.Errorf("backend %s: %w", b.id, err)
	}
	if !ok {
		return fmt.Errorf("backend %s: %w: bucket %q does not exist at %s", b.id, backends.ErrUnavailable, b.cfg.Bucket, b.cfg.EndpointURL)
	}
	return nil
}

func asPathErr(err error, target **os.PathError) bool { return errors.As(err, target) }

// SingleRequestLimit is the largest object stored with one request; larger
// ones are uploaded in parts.
func (b *Backend) SingleRequestLimit() int64 { return b.cfg.MultipartThresholdBytes }

// MaxDirectURLTTL is the longest a presigned URL may stay valid (SigV4).
const MaxDirectURLTTL = 7 * 24 * time.Hour

var _ backends.DirectURLProvider = (*Backend)(nil)

// DirectURL implements backends.DirectURLProvider with a presigned GET of
// the object's key on the configured endpoint. It is computed locally (the
// region is configured, so nothing is asked of the service) and does not
// check that the object exists. ttl is rounded down to whole seconds and
// must be between 1 s and 7 days.
func (b *Backend) DirectURL(ctx context.Context, d digest.Digest, ttl time.Duration) (string, error) {
	key := b.Key(d)
	if ttl < time.Second || ttl > MaxDirectURLTTL {
		return "", fmt.Errorf("s3 presign %s: lifetime %v outside 1s..%v", key, ttl, MaxDirectURLTTL)
	}
	u, err := b.core.Client.PresignedGetObject(ctx, b.cfg.Bucket, key, ttl, nil)
	if err != nil {
		return "", fmt.Errorf("s3 presign %s: %w", key, err)
	}
	return u.String(), nil
}
