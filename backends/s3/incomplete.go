package s3

import (
	"context"
	"sort"
	"time"

	"github.com/minio/minio-go/v7"

	"artifactstore/backends"
)

var _ backends.IncompleteWriter = (*Backend)(nil)

type openUpload struct {
	key, id string
	started time.Time
}

func (u openUpload) write() backends.IncompleteWrite {
	return backends.IncompleteWrite{Name: u.key + " (upload " + u.id + ")", Started: u.started}
}

// openUploads lists the multipart uploads open under the key prefix,
// oldest first.
func (b *Backend) openUploads(ctx context.Context) ([]openUpload, error) {
	prefix := ""
	if b.prefix != "" {
		prefix = b.prefix + "/"
	}
	var out []openUpload
	for u := range b.core.ListIncompleteUploads(ctx, b.cfg.Bucket, prefix, true) {
		if u.Err != nil {
			return nil, b.mapErr("list incomplete multipart uploads", prefix, u.Err)
		}
		_, content := backends.ParseObjectKey(b.prefix, u.Key)
		_, record := backends.ParseRecordKey(b.prefix, u.Key)
		if !content && !record {
			continue // not in our key layout
		}
		out = append(out, openUpload{key: u.Key, id: u.UploadID, started: u.Initiated})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].started.Before(out[j].started) })
	return out, nil
}

// IncompleteWrites lists the multipart uploads open under the key prefix:
// a process killed during a large Put leaves its upload open (its parts
// use storage, no object is visible), since only the process that started
// it would have aborted it.
func (b *Backend) IncompleteWrites(ctx context.Context) ([]backends.IncompleteWrite, error) {
	ups, err := b.openUploads(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]backends.IncompleteWrite, 0, len(ups))
	for _, u := range ups {
		out = append(out, u.write())
	}
	return out, nil
}

// AbortIncompleteWrites aborts the multipart uploads under the key prefix
// that were initiated before before. One that is gone meanwhile counts as
// aborted.
func (b *Backend) AbortIncompleteWrites(ctx context.Context, before time.Time) ([]backends.IncompleteWrite, error) {
	ups, err := b.openUploads(ctx)
	if err != nil {
		return nil, err
	}
	var done []backends.IncompleteWrite
	for _, u := range ups {
		if !u.started.Before(before) {
			continue
		}
		if err := b.core.AbortMultipartUpload(ctx, b.cfg.Bucket, u.key, u.id); err != nil && minio.ToErrorResponse(err).Code != "NoSuchUpload" {
			return done, b.mapErr("abort multipart upload", u.key, err)
		}
		b.log.Info("aborted an incomplete write", "backend", b.id, "write", u.write().Name, "started", u.started)
		done = append(done, u.write())
	}
	return done, nil
}
