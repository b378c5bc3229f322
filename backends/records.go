package backends

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"artifactstore/internal/digest"
)

// ErrInvalidRecordName: a record name that RecordStore refuses (see
// ValidateRecordName).
var ErrInvalidRecordName = errors.New("invalid record name")

// RecordInfo describes one stored record.
type RecordInfo struct {
	// Name is the record's name, relative to the backend's key prefix
	// (e.g. "packages/app/1.2.json").
	Name string
	Size int64
	// Modified is when the record was last written, as the backend
	// reports it (zero if it cannot tell).
	Modified time.Time
}

// RecordStore is implemented by backends that can keep named records
// beside the content: small documents that describe the content (a
// package's manifest record) and database snapshots. It is optional; a
// backend without it simply holds no records.
//
// A record lives under <key_prefix>/<name>, outside the content layout:
// Walk never reports a record and ListRecords never reports content. Names
// are checked by ValidateRecordName.
//
// All methods are safe for concurrent use, honour ctx cancellation and
// return errors that wrap the typed errors of this package where they
// apply.
type RecordStore interface {
	// PutRecord stores exactly size bytes read from body under name,
	// replacing any record of that name. Like Replace, the bytes are read
	// and hashed to d in full before they take the name's place, and the
	// switch is atomic: a concurrent OpenRecord sees the old record or the
	// new one, never a mix. A short or long body, a wrong hash, a
	// cancelled ctx or any other error returns an error (ErrSizeMismatch,
	// ErrDigestMismatch, ctx.Err(), ...) and leaves the previous record (or
	// its absence) exactly as it was. A process killed mid-write leaves no
	// visible record (at most an IncompleteWrite, for backends that have
	// those). An invalid name is ErrInvalidRecordName.
	PutRecord(ctx context.Context, name string, d digest.Digest, size int64, body io.Reader) error

	// OpenRecord returns a reader over the whole record and its size. An
	// absent record is ErrNotFound. The caller must Close the reader.
	OpenRecord(ctx context.Context, name string) (io.ReadCloser, RecordInfo, error)

	// DeleteRecord removes the record. Deleting an absent record succeeds.
	DeleteRecord(ctx context.Context, name string) error

	// ListRecords calls fn once for every record whose name starts with
	// prefix (a whole name or a directory such as "packages/"), in no
	// particular order. Content objects and temporary data are never
	// listed. An error from fn stops the listing and is returned
	// unchanged.
	ListRecords(ctx context.Context, prefix string, fn func(RecordInfo) error) error
}

// maxRecordName bounds a record name (object stores limit keys to 1024 bytes, and the
// key prefix needs some of them).
const maxRecordName = 900

// ValidateRecordName checks a record name: slash-separated segments, each
// non-empty, not "." or "..", not starting with "." (the local backend's
// temporary directory), without control characters or backslashes; the
// first segment is not a digest algorithm (that is the content layout);
// at most 900 bytes. Errors wrap ErrInvalidRecordName.
func ValidateRecordName(name string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidRecordName, name, why) }
	if name == "" || len(name) > maxRecordName {
		return bad("empty or longer than 900 bytes")
	}
	for _, c := range name {
		if c < 0x20 || c == 0x7f || c == '\\' {
			return bad("control character or backslash")
		}
	}
	segs := strings.Split(name, "/")
	for _, s := range segs {
		if s == "" || strings.HasPrefix(s, ".") {
			return bad("empty segment or segment starting with a dot")
		}
	}
	if segs[0] == digest.SHA256 {
		return bad("the first segment names a digest algorithm (the content layout)")
	}
	return nil
}

// RecordKey returns the key of a record under prefix: <prefix>/<name>.
func RecordKey(prefix, name string) string { return path.Join(prefix, name) }

// ParseRecordKey is the inverse of RecordKey: the record name of a key
// under prefix, or false for a key that is not a valid record name (such
// as content in the ObjectKey layout).
func ParseRecordKey(prefix, key string) (string, bool) {
	if prefix != "" {
		var ok bool
		key, ok = strings.CutPrefix(key, strings.TrimSuffix(prefix, "/")+"/")
		if !ok {
			return "", false
		}
	}
	if ValidateRecordName(key) != nil {
		return "", false
	}
	return key, true
}

// AsRecordStore finds the RecordStore of b, looking through decorators
// (such as Instrument) that expose the backend they wrap with an Unwrap()
// Backend method.
func AsRecordStore(b Backend) (RecordStore, bool) {
	for b != nil {
		if rs, ok := b.(RecordStore); ok {
			return rs, true
		}
		u, ok := b.(interface{ Unwrap() Backend })
		if !ok {
			return nil, false
		}
		b = u.Unwrap()
	}
	return nil, false
}
