package backends

import (
	"context"
	"time"

	"artifactstore/internal/digest"
)

// DirectURLProvider is implemented by backends whose objects can be read
// by anyone holding a time-limited URL, straight from the storage service,
// without passing through this process. It is optional: the API proxies
// the bytes of backends that do not implement it (and of those that do,
// unless the operator enabled direct downloads for them).
type DirectURLProvider interface {
	// DirectURL returns an absolute http(s) URL from which a plain GET,
	// without any credential of ours, reads the whole object stored
	// under d for at least ttl from now (a Range header reads part of it).
	// It does not check that the object exists: callers hand out URLs
	// only for objects the registry knows are there. The URL carries the
	// authority to read that one object until it expires; treat it like a
	// short-lived secret. ttl must be positive; a backend may refuse a
	// ttl above its own limit with an error.
	DirectURL(ctx context.Context, d digest.Digest, ttl time.Duration) (string, error)
}

// AsDirectURLProvider finds the DirectURLProvider of b, looking through
// decorators (such as Instrument) that expose the backend they wrap with
// an Unwrap() Backend method.
func AsDirectURLProvider(b Backend) (DirectURLProvider, bool) {
	for b != nil {
		if p, ok := b.(DirectURLProvider); ok {
			return p, true
		}
		u, ok := b.(interface{ Unwrap() Backend })
		if !ok {
			return nil, false
		}
		b = u.Unwrap()
	}
	return nil, false
}
