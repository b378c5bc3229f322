package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"artifactstore/backends"
	"artifactstore/internal/digest"
)

var _ backends.RecordStore = (*Backend)(nil)

// recordPath returns the file of a record: <root>/<key_prefix>/<name>.
func (b *Backend) recordPath(name string) (string, error) {
	if err := backends.ValidateRecordName(name); err != nil {
		return "", err
	}
	return filepath.Join(b.root, filepath.FromSlash(backends.RecordKey(b.prefix, name))), nil
}

// PutRecord implements backends.RecordStore: the same verified temp file,
// fsync and rename as Replace, so a reader sees the old or the new file.
func (b *Backend) PutRecord(ctx context.Context, name string, d digest.Digest, size int64, body io.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := b.recordPath(name)
	if err != nil {
		return err
	}
	if err := b.writeFile(ctx, p, d, size, body); err != nil {
		return fmt.Errorf("local put record %s: %w", name, err)
	}
	return nil
}

// OpenRecord implements backends.RecordStore.
func (b *Backend) OpenRecord(ctx context.Context, name string) (io.ReadCloser, backends.RecordInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, backends.RecordInfo{}, err
	}
	p, err := b.recordPath(name)
	if err != nil {
		return nil, backends.RecordInfo{}, err
	}
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = backends.ErrNotFound
		}
		return nil, backends.RecordInfo{}, fmt.Errorf("local open record %s: %w", name, err)
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = backends.ErrNotFound // a directory of records, not a record
	}
	if err != nil {
		f.Close()
		return nil, backends.RecordInfo{}, fmt.Errorf("local open record %s: %w", name, err)
	}
	return &readCloser{r: backends.ContextReader(ctx, f), c: f}, backends.RecordInfo{Name: name, Size: st.Size(), Modified: st.ModTime()}, nil
}

type readCloser struct {
	r io.Reader
	c io.Closer
}

func (r *readCloser) Read(p []byte) (int, error) { return r.r.Read(p) }
func (r *readCloser) Close() error               { return r.c.Close() }

// DeleteRecord implements backends.RecordStore. Emptied directories stay
// (like the content layout's); they hold nothing a listing reports.
func (b *Backend) DeleteRecord(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := b.recordPath(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if st, serr := os.Stat(p); serr == nil && st.IsDir() {
			return nil // a directory is no record
		}
		return fmt.Errorf("local delete record %s: %w", name, err)
	}
	if err := b.syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("local delete record %s: fsync dir: %w", name, err)
	}
	return nil
}

// ListRecords implements backends.RecordStore. It walks only the
// directory the prefix names (its part up to the last slash), so listing
// "packages/" never visits the content tree.
func (b *Backend) ListRecords(ctx context.Context, prefix string, fn func(backends.RecordInfo) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dir = prefix[:i]
	}
	if dir != "" && backends.ValidateRecordName(dir) != nil {
		return nil // no record can be under it
	}
	base := filepath.Join(b.root, filepath.FromSlash(path.Join(b.prefix, dir)))
	err := filepath.WalkDir(base, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(b.root, p)
		if err != nil {
			return err
		}
		name, ok := backends.ParseRecordKey(b.prefix, filepath.ToSlash(rel))
		if e.IsDir() {
			if p != base && !ok {
				return fs.SkipDir // the content layout or the temp directory
			}
			return nil
		}
		if !ok || !e.Type().IsRegular() || !strings.HasPrefix(name, prefix) {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted while listing
			}
			return err
		}
		return fn(backends.RecordInfo{Name: name, Size: fi.Size(), Modified: fi.ModTime()})
	})
	if err != nil {
		return fmt.Errorf("local list records %q: %w", prefix, err)
	}
	return nil
}
