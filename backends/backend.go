// Package backends defines where blob bytes live: the storage SPI every
// backend implements, its typed errors and the object key layout shared by
// all of them. No code outside backends/s3 knows what S3 is.
//
// A backend stores immutable objects named by digest. It knows nothing of
// packages, files or the registry database.
package backends

import (
	"context"
	"errors"
	"io"
	"path"
	"strings"

	"artifactstore/internal/digest"
)

// Typed errors. Backends wrap them (fmt.Errorf("...: %w", ErrNotFound)) and
// callers match them with errors.Is.
var (
	// ErrNotFound: no object is stored under the digest.
	ErrNotFound = errors.New("object not found")
	// ErrInvalidRange: an Open offset or length reaches past the object.
	ErrInvalidRange = errors.New("invalid range")
	// ErrDigestMismatch: the bytes given to Put do not hash to the digest.
	ErrDigestMismatch = digest.ErrMismatch
	// ErrSizeMismatch: the body given to Put was shorter or longer than size.
	ErrSizeMismatch = digest.ErrSizeMismatch
	// ErrUnavailable: the backend cannot be reached or refuses service.
	// Callers may retry later; nothing was changed.
	ErrUnavailable = errors.New("backend unavailable")
)

// Info describes one stored object.
type Info struct {
	Digest digest.Digest
	Size   int64
}

// Backend stores immutable, content-addressed objects.
//
// All methods are safe for concurrent use, honour ctx cancellation and
// return errors that wrap the typed errors above where they apply.
type Backend interface {
	// ID is the configured identifier of this backend, e.g. "local" or "rgw".
	ID() string

	// Put stores exactly size bytes read from body under d's key.
	//
	// The object becomes visible (to Open, Stat and Walk) only after all
	// size bytes were read and hashed to d. If the body is short or long,
	// the hash differs, ctx is cancelled or any other error occurs, Put
	// returns an error (ErrSizeMismatch, ErrDigestMismatch, ctx.Err(), ...)
	// and nothing is left behind: no object, no temporary data visible to
	// Walk. Putting an object that already exists is a no-op that returns
	// nil; the body may be left partly or wholly unread in that case.
	// Concurrent Puts of the same digest are safe: one of them wins and the
	// others become no-ops.
	//
	// A nil return means the object is durable: it survives a crash of
	// the process or the machine. That holds for the no-op too: an
	// existing object another Put has made visible but not yet durable
	// is made durable (or waited for) before Put returns.
	Put(ctx context.Context, d digest.Digest, size int64, body io.Reader) error

	// Replace stores exactly size bytes read from body under d's key,
	// whether or not an object is there already: it is how a stored object
	// that no longer hashes to d (corrupted, truncated) is rewritten.
	//
	// The new bytes are read and hashed to d in full before they take the
	// key's place, and the switch is atomic: a concurrent Open sees the old
	// object or the new one, never a mix or nothing. If the body is short
	// or long, the hash differs, ctx is cancelled or any other error
	// occurs, Replace returns an error like Put and the previous object (or
	// its absence) is left exactly as it was, with no temporary data
	// visible to Walk. Concurrent Replaces and Puts of the same digest are
	// safe: all bytes that become visible hashed to d. A nil return means
	// the new bytes are durable.
	Replace(ctx context.Context, d digest.Digest, size int64, body io.Reader) error

	// Open returns a reader over the object's bytes [off, off+n). n < 0
	// means "to the end". off == size with n <= 0 yields an empty reader.
	// An off < 0, off > size, or off+n > size returns ErrInvalidRange (never
	// a short read). An absent object returns ErrNotFound. The caller must
	// Close the reader. Reading after ctx is cancelled fails.
	Open(ctx context.Context, d digest.Digest, off, n int64) (io.ReadCloser, error)

	// Stat returns the object's size, or ErrNotFound if absent. An object
	// Stat reports is durable, as after Put (the registry commits a
	// package on the strength of a Stat: the staged protocol's proof of
	// upload).
	Stat(ctx context.Context, d digest.Digest) (Info, error)

	// Delete removes the object. Deleting an absent object succeeds.
	Delete(ctx context.Context, d digest.Digest) error

	// Walk calls fn once for every stored object under the backend's key
	// layout, in no particular order. Keys outside the layout are skipped.
	// An error from fn stops the walk and is returned unchanged.
	Walk(ctx context.Context, fn func(Info) error) error

	// Health returns nil when the backend can serve reads and writes now.
	// A failure wraps ErrUnavailable.
	Health(ctx context.Context) error
}

// ObjectKey returns the key of d under prefix:
// <prefix>/<algorithm>/<hex[0:2]>/<hex[2:4]>/<hex>. An empty prefix
// yields the same key without its leading segment.
func ObjectKey(prefix string, d digest.Digest) string {
	return path.Join(prefix, d.Algorithm, d.Hex[0:2], d.Hex[2:4], d.Hex)
}

// ParseObjectKey is the inverse of ObjectKey for keys under prefix. It
// returns false for any key that is not exactly in the layout.
func ParseObjectKey(prefix, key string) (digest.Digest, bool) {
	if prefix != "" {
		var ok bool
		key, ok = strings.CutPrefix(key, strings.TrimSuffix(prefix, "/")+"/")
		if !ok {
			return digest.Digest{}, false
		}
	}
	parts := strings.Split(key, "/")
	if len(parts) != 4 {
		return digest.Digest{}, false
	}
	d, err := digest.FromParts(parts[0], parts[3])
	if err != nil || parts[1] != d.Hex[0:2] || parts[2] != d.Hex[2:4] {
		return digest.Digest{}, false
	}
	return d, true
}

// CheckRange validates [off, off+n) against size and returns the length to
// read (resolving n < 0 to "to the end").
func CheckRange(size, off, n int64) (int64, error) {
	if off < 0 || off > size {
		return 0, ErrInvalidRange
	}
	if n < 0 {
		return size - off, nil
	}
	if n > size-off {
		return 0, ErrInvalidRange
	}
	return n, nil
}

// ContextReader returns a reader that fails once ctx is done, so long
// copies (a stalled client, a slow backend) stop promptly.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
