package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"
)

// Records whose key already holds some of their fields are stored without
// them (the migration "blob and location values without the fields their
// key holds"): a location's key is digest \x00 backend, a blob's key
// is its digest. Readers fill them back from the key, so values written
// before (which carry the fields) read the same.

// locationValue is the stored form of a Location: the outer, empty
// Digest and Backend shadow the embedded ones and are omitted.
type locationValue struct {
	Location
	Digest  string `json:"digest,omitempty"`
	Backend string `json:"backend,omitempty"`
}

// blobValue is the stored form of a Blob, without its digest.
type blobValue struct {
	Blob
	Digest string `json:"digest,omitempty"`
}

// Since the migration "blob and location values in a binary form" they
// are written in a binary form (encodingBinary) when every time in them is
// in UTC, which is how the store writes them; a value with a time in
// another zone keeps the JSON form, which keeps its zone. Readers take
// both.
//
//	blob:     encodingBinary, varint size, created_at
//	location: encodingBinary, flags (bit 0 last_verified_at, bit 1
//	          last_checked_at, bit 2 last_failed_at present), status code
//	          (index+1 in locationStatuses; 0: uvarint length and the
//	          status), varint size, stored_at, [last_verified_at],
//	          [last_checked_at], [last_failed_at], uvarint length and
//	          last_error, varint repairs
//
// A time is varint Unix seconds and uvarint nanoseconds. Bit 2 came with
// the migration "location values with the time of the last failure": a
// value without it reads as before, and a flag this binary does not know
// is ErrCorrupt rather than a misread of the bytes behind it.
const encodingBinary byte = 2

// locationStatuses have a one-byte code (index+1). Never reorder: append.
var locationStatuses = []string{StatusStored, StatusVerified, StatusMismatch, StatusMissing, StatusUnreadable}

const (
	locVerified = 1 << 0
	locChecked  = 1 << 1
	locFailed   = 1 << 2
	locFlags    = locVerified | locChecked | locFailed
)

func isUTC(ts ...time.Time) bool {
	for _, t := range ts {
		if t.Location() != time.UTC {
			return false
		}
	}
	return true
}

func appendTime(b []byte, t time.Time) []byte {
	return binary.AppendUvarint(binary.AppendVarint(b, t.Unix()), uint64(t.Nanosecond()))
}

func (r *valueReader) time() time.Time {
	sec, nsec := r.varint(), r.uvarint()
	if nsec >= 1e9 {
		r.fail()
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

func encodeLocation(l *Location) ([]byte, error) {
	times := []time.Time{l.StoredAt}
	if l.LastVerifiedAt != nil {
		times = append(times, *l.LastVerifiedAt)
	}
	if l.LastCheckedAt != nil {
		times = append(times, *l.LastCheckedAt)
	}
	if l.LastFailedAt != nil {
		times = append(times, *l.LastFailedAt)
	}
	if !isUTC(times...) {
		return encode(locationValue{Location: *l})
	}
	flags := byte(0)
	if l.LastVerifiedAt != nil {
		flags |= locVerified
	}
	if l.LastCheckedAt != nil {
		flags |= locChecked
	}
	if l.LastFailedAt != nil {
		flags |= locFailed
	}
	b := appendCoded(append(make([]byte, 0, 32+len(l.LastError)), encodingBinary, flags), locationStatuses, l.Status)
	b = appendTime(binary.AppendVarint(b, l.Size), l.StoredAt)
	if l.LastVerifiedAt != nil {
		b = appendTime(b, *l.LastVerifiedAt)
	}
	if l.LastCheckedAt != nil {
		b = appendTime(b, *l.LastCheckedAt)
	}
	if l.LastFailedAt != nil {
		b = appendTime(b, *l.LastFailedAt)
	}
	b = appendString(b, l.LastError)
	return binary.AppendVarint(b, int64(l.Repairs)), nil
}

func decodeLocationBinary(v []byte, l *Location) error {
	r := valueReader{b: v[1:]}
	flags := r.byte()
	if r.err == nil && flags&^locFlags != 0 {
		return fmt.Errorf("%w: unknown location flags %#x", ErrCorrupt, flags)
	}
	var out Location
	status, code, ok := r.coded(locationStatuses)
	if !ok {
		return fmt.Errorf("%w: unknown location status code %d", ErrCorrupt, code)
	}
	out.Status = status
	out.Size = r.varint()
	out.StoredAt = r.time()
	if flags&locVerified != 0 {
		t := r.time()
		out.LastVerifiedAt = &t
	}
	if flags&locChecked != 0 {
		t := r.time()
		out.LastCheckedAt = &t
	}
	if flags&locFailed != 0 {
		t := r.time()
		out.LastFailedAt = &t
	}
	out.LastError = r.string()
	out.Repairs = int(r.varint())
	if r.err == nil && len(r.b) != 0 {
		return fmt.Errorf("%w: %d bytes after a location value", ErrCorrupt, len(r.b))
	}
	*l = out
	return r.err
}

func encodeBlob(b Blob) ([]byte, error) {
	if !isUTC(b.CreatedAt) {
		return encode(blobValue{Blob: b})
	}
	return appendTime(binary.AppendVarint([]byte{encodingBinary}, b.Size), b.CreatedAt), nil
}

func decodeBlobBinary(v []byte, b *Blob) error {
	r := valueReader{b: v[1:]}
	size, created := r.varint(), r.time()
	if r.err == nil && len(r.b) != 0 {
		return fmt.Errorf("%w: %d bytes after a blob value", ErrCorrupt, len(r.b))
	}
	if r.err != nil {
		return r.err
	}
	*b = Blob{Size: size, CreatedAt: created}
	return nil
}

// decodeLocationKV decodes a storage_locations entry into l, taking its
// digest and backend from the key.
func decodeLocationKV(k, v []byte, l *Location) error {
	if len(v) > 0 && v[0] == encodingBinary {
		if err := decodeLocationBinary(v, l); err != nil {
			return err
		}
	} else if err := decode(v, l); err != nil {
		return err
	}
	i := bytes.IndexByte(k, 0)
	if i < 0 {
		return fmt.Errorf("location key %q has no backend: %w", k, ErrCorrupt)
	}
	l.Digest, l.Backend = string(k[:i]), string(k[i+1:])
	return nil
}

// decodeBlobKV decodes a blobs entry into b, taking its digest from the key.
func decodeBlobKV(k, v []byte, b *Blob) error {
	if len(v) > 0 && v[0] == encodingBinary {
		if err := decodeBlobBinary(v, b); err != nil {
			return err
		}
	} else if err := decode(v, b); err != nil {
		return err
	}
	b.Digest = string(k)
	return nil
}
