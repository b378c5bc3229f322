package s3

import (
	"context"
	"fmt"
	"io"

	"github.com/minio/minio-go/v7"

	"artifactstore/backends"
	"artifactstore/internal/digest"
)

var _ backends.RecordStore = (*Backend)(nil)

func (b *Backend) recordKey(name string) (string, error) {
	if err := backends.ValidateRecordName(name); err != nil {
		return "", err
	}
	return backends.RecordKey(b.prefix, name), nil
}

// PutRecord implements backends.RecordStore with the same verified write
// as Replace: one PUT, or a part upload completed only after every byte
// was verified (aborted on failure). Either replaces the key atomically.
func (b *Backend) PutRecord(ctx context.Context, name string, d digest.Digest, size int64, body io.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key, err := b.recordKey(name)
	if err != nil {
		return err
	}
	return b.write(ctx, key, d, size, body)
}

// OpenRecord implements backends.RecordStore.
func (b *Backend) OpenRecord(ctx context.Context, name string) (io.ReadCloser, backends.RecordInfo, error) {
	key, err := b.recordKey(name)
	if err != nil {
		return nil, backends.RecordInfo{}, err
	}
	rc, info, _, err := b.core.GetObject(ctx, b.cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, backends.RecordInfo{}, b.mapErr("get", key, err)
	}
	if info.Size < 0 {
		rc.Close()
		return nil, backends.RecordInfo{}, fmt.Errorf("s3 get %s: no Content-Length", key)
	}
	return &readCloser{r: backends.ContextReader(ctx, rc), c: rc}, backends.RecordInfo{Name: name, Size: info.Size, Modified: info.LastModified}, nil
}

// DeleteRecord implements backends.RecordStore.
func (b *Backend) DeleteRecord(ctx context.Context, name string) error {
	key, err := b.recordKey(name)
	if err != nil {
		return err
	}
	return b.deleteKey(ctx, key)
}

// ListRecords implements backends.RecordStore: one listing of the keys
// under <key_prefix>/<prefix>, skipping keys that are not record names
// (content).
func (b *Backend) ListRecords(ctx context.Context, prefix string, fn func(backends.RecordInfo) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	full := prefix
	if b.prefix != "" {
		full = b.prefix + "/" + prefix
	}
	for obj := range b.core.Client.ListObjects(ctx, b.cfg.Bucket, minio.ListObjectsOptions{Prefix: full, Recursive: true}) {
		if obj.Err != nil {
			return b.mapErr("list", full, obj.Err)
		}
		name, ok := backends.ParseRecordKey(b.prefix, obj.Key)
		if !ok {
			continue
		}
		if err := fn(backends.RecordInfo{Name: name, Size: obj.Size, Modified: obj.LastModified}); err != nil {
			return err
		}
	}
	return ctx.Err()
}
