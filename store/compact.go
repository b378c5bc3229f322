package store

import (
	"bytes"
	"fmt"
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

func encodeLocation(l *Location) ([]byte, error) { return encode(locationValue{Location: *l}) }

func encodeBlob(b Blob) ([]byte, error) { return encode(blobValue{Blob: b}) }

// decodeLocationKV decodes a storage_locations entry into l, taking its
// digest and backend from the key.
func decodeLocationKV(k, v []byte, l *Location) error {
	if err := decode(v, l); err != nil {
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
	if err := decode(v, b); err != nil {
		return err
	}
	b.Digest = string(k)
	return nil
}
