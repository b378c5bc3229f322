// Package local stores objects as files under a root directory, in the same
// key layout the S3 backend uses:
// <root>/<key_prefix>/<algorithm>/<hex[0:2]>/<hex[2:4]>/<hex>.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"artifactstore/backends"
	"artifactstore/internal/digest"
	"artifactstore/internal/durable"
)

// TempDir is the directory under the root that holds in-progress writes.
// It is on the same file system as the objects, so the rename into place
// is atomic, and start-up empties it without walking the object tree
// (which holds millions of files in a large store).
const TempDir = ".tmp"

// copyBufSize is large because one 32 KiB buffer halves upload throughput.
const copyBufSize = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// Config configures a local backend.
type Config struct {
	// Root is the directory holding all objects; created if missing.
	Root string
	// KeyPrefix is the first path segment under Root (may be empty).
	KeyPrefix string
	// Sync chooses how writes are made durable: SyncFileSystem (the
	// default, also for "") or SyncFile.
	Sync string
}

// The durability modes of Config.Sync. Both make a write's bytes and
// its name durable before Put returns (a small content object's bytes
// and name by the same flush, see writeSmall; everything else's bytes
// before its name); they differ in how many writes one device flush
// serves.
const (
	// SyncFileSystem: concurrent writes share syncfs(2) of the root's
	// file system (groupflush.go). One flush serves every write that
	// finished before it, but it also writes back whatever else is dirty
	// on that file system. Where syncfs is missing (not Linux), as
	// SyncFile.
	SyncFileSystem = "filesystem"
	// SyncFile: every write fsyncs its own file, its directory and the
	// parents of the directories it creates.
	SyncFile = "file"
)

// Backend is a backends.Backend on the local file system.
type Backend struct {
	id     string
	root   string
	prefix string
	tmp    string
	log    *slog.Logger
	// group shares file-system flushes among concurrent writes
	// (groupflush.go); nil where the platform has no syncfs.
	group *groupFlush
	// unsettled holds the names (final paths) this process renamed into
	// place whose flush after the rename has not succeeded yet: such a
	// name is visible before it is durable, so a Put or Stat that finds
	// it must make it durable before trusting it (settle.go).
	unsettled unsettledNames
	// syncDir fsyncs a directory (durable.SyncDir; tests record it).
	syncDir func(dir string) error
}

var _ backends.Backend = (*Backend)(nil)

// New opens (creating if needed) a local backend and removes the temporary
// files an earlier process left in <root>/.tmp. Its cost does not depend on
// how many objects the backend holds.
func New(id string, cfg Config, log *slog.Logger) (*Backend, error) {
	if cfg.Root == "" {
		return nil, errors.New("local backend: root directory is empty")
	}
	if cfg.Sync != "" && cfg.Sync != SyncFileSystem && cfg.Sync != SyncFile {
		return nil, fmt.Errorf("local backend %s: sync %q is not %q or %q", id, cfg.Sync, SyncFileSystem, SyncFile)
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("local backend %s: %w", id, err)
	}
	if err := os.MkdirAll(filepath.Join(root, filepath.FromSlash(cfg.KeyPrefix)), 0o750); err != nil {
		return nil, fmt.Errorf("local backend %s: create root: %w", id, err)
	}
	b := &Backend{id: id, root: root, prefix: strings.Trim(cfg.KeyPrefix, "/"), tmp: filepath.Join(root, TempDir), log: log, syncDir: durable.SyncDir}
	if err := b.removeTemps(); err != nil {
		return nil, fmt.Errorf("local backend %s: remove leftover temp files: %w", id, err)
	}
	flush, closeFlush, err := fsFlush(root)
	if err != nil {
		return nil, fmt.Errorf("local backend %s: %w", id, err)
	}
	switch {
	case flush != nil && cfg.Sync != SyncFile:
		// Names an earlier process left visible but not yet durable are
		// made durable by the first shared flush (settle.go). The
		// descriptor stays open for the backend's life.
		b.group = newGroupFlush(flush)
	case flush != nil:
		// An earlier process may have stopped between a rename and the
		// flush after it; this process trusts every name it did not
		// write itself, so it makes them all durable first: one flush of
		// the file system, whatever the number of objects.
		err := flush()
		closeFlush()
		if err != nil {
			return nil, fmt.Errorf("local backend %s: flush at start: %w", id, err)
		}
	}
	return b, nil
}

// ID implements backends.Backend.
func (b *Backend) ID() string { return b.id }

// Root returns the absolute root directory.
func (b *Backend) Root() string { return b.root }

// Path returns the file path of d's object (which may not exist).
func (b *Backend) Path(d digest.Digest) string {
	return filepath.Join(b.root, filepath.FromSlash(backends.ObjectKey(b.prefix, d)))
}

// removeTemps empties the temp directory (creating it if needed). Only an
// earlier process can have left files there: this one has not written yet.
func (b *Backend) removeTemps() error {
	entries, err := os.ReadDir(b.tmp)
	if errors.Is(err, fs.ErrNotExist) {
		return b.mkdirDurable(b.tmp)
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(b.tmp, e.Name())
		b.log.Info("removing leftover temp file", "backend", b.id, "path", p)
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}

// Put implements backends.Backend: if the object exists, nothing but
// making sure it is a durable copy of d (a concurrent Put may have
// renamed it into place and still be flushing; a provisional one is
// read and hashed, see trust); otherwise write (temp file in the temp
// directory, verified copy, flushes, rename into the target directory).
func (b *Backend) Put(ctx context.Context, d digest.Digest, size int64, body io.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p := b.Path(d)
	if st, err := os.Stat(p); err == nil {
		ok, _, err := b.trust(ctx, p, d, st, size)
		if err != nil {
			return fmt.Errorf("local put %s: the existing object: %w", d, err)
		}
		if ok {
			return nil
		}
		// The remains of a write a crash interrupted: write it again,
		// its bytes durable before they take the name.
		b.log.Warn("rewriting an object left unfinished by a crash", "backend", b.id, "digest", d.String())
		return b.writeFile(ctx, p, d, size, body)
	}
	return b.write(ctx, d, size, body)
}

// Replace writes the object like Put even if one exists: the rename of
// the verified temp file over the old one is atomic, and its bytes are
// durable before it replaces anything (writeFile, also for a small
// object: the old object may be the one a package relies on, so the
// name must never hold bytes a crash or a failed flush could lose).
func (b *Backend) Replace(ctx context.Context, d digest.Digest, size int64, body io.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.writeFile(ctx, b.Path(d), d, size, body)
}

// write streams body through the verifier into a temp file in the temp
// directory (from 4 MiB on, hashing on another core while reading and
// writing: digest.CopyVerified; write-back to disk started every
// writeBehindBytes: writeBehind) and makes it durable under its name:
// a small object by writeSmall, anything else by writeFile. Put calls
// it when no name exists, or only the remains of an interrupted write.
func (b *Backend) write(ctx context.Context, d digest.Digest, size int64, body io.Reader) error {
	if b.group != nil && size >= 0 && size < groupFlushBelow {
		return b.writeSmall(ctx, b.Path(d), d, size, body)
	}
	return b.writeFile(ctx, b.Path(d), d, size, body)
}

// groupFlushBelow is the size below which a write's data is made durable
// by the shared flush (groupflush.go) rather than its own fsync: a flush
// shared with others should not carry one writer's megabytes.
const groupFlushBelow = copyBufSize

// writeFile writes final as write describes (content objects and records).
// The data is durable before the rename, so the final name never points
// at bytes a crash could lose (a later Put of the same digest trusts an
// existing file), and the rename and any directories created for it are
// durable before writeFile returns: with a group flush, a small write
// hands its closed temp file to the flusher (renameDurably), which
// flushes the data, renames, and flushes the name, each flush shared by
// every writer; a large one fsyncs its own file, renames, and shares the
// flush of the name; without a group flush, the file's fsync, then its
// directory's (and new directories' parents').
func (b *Backend) writeFile(ctx context.Context, final string, d digest.Digest, size int64, body io.Reader) (err error) {
	dir := filepath.Dir(final)
	g := b.group
	if g != nil {
		// The flush after the rename makes the new directories durable too.
		err = os.MkdirAll(dir, 0o750)
	} else {
		err = b.mkdirDurable(dir)
	}
	if err != nil {
		return fmt.Errorf("local put %s: %w", d, err)
	}
	f, err := os.CreateTemp(b.tmp, "put-*")
	if err != nil {
		return fmt.Errorf("local put %s: %w", d, err)
	}
	closed := false
	defer func() {
		if err != nil {
			if !closed {
				f.Close()
			}
			os.Remove(f.Name())
		}
	}()
	var failed0 uint64 // failed flushes before the bytes were written
	if g != nil {
		failed0 = g.failed.Load()
	}
	if err = copyVerified(newWriteBehind(f), backends.ContextReader(ctx, body), d, size); err != nil {
		return fmt.Errorf("local put %s: %w", d, err)
	}
	if g == nil || size >= groupFlushBelow {
		if err = f.Sync(); err != nil {
			return fmt.Errorf("local put %s: fsync: %w", d, err)
		}
	}
	if g != nil && size < groupFlushBelow {
		// The flusher flushes the data, renames, and flushes the name.
		// The file stays open until then: see ownError.
		b.unsettled.add(final) // before the name can be seen
		renamed, rerr := g.renameDurably(f.Name(), final)
		if rerr == nil {
			rerr = g.ownError(f, failed0)
		}
		b.unsettled.done(final, renamed && rerr != nil)
		closed = true
		cerr := f.Close()
		if rerr != nil {
			err = rerr
			return fmt.Errorf("local put %s: %w", d, err)
		}
		if cerr != nil {
			err = cerr
			return fmt.Errorf("local put %s: close: %w", d, err)
		}
		return nil
	}
	closed = true
	if err = f.Close(); err != nil {
		return fmt.Errorf("local put %s: close: %w", d, err)
	}
	if _, err = b.renameSettled(f.Name(), final); err != nil {
		return fmt.Errorf("local put %s: %w", d, err)
	}
	return nil
}

// renameSettled renames tmp, whose bytes are durable, onto final and
// makes the name durable (flushName), keeping it unsettled meanwhile
// (settle.go). renamed reports whether the name now holds tmp's file.
func (b *Backend) renameSettled(tmp, final string) (renamed bool, err error) {
	b.unsettled.add(final) // before the name can be seen
	if err := rename(tmp, final); err != nil {
		b.unsettled.done(final, false)
		return false, fmt.Errorf("rename: %w", err)
	}
	if err := b.flushName(filepath.Dir(final)); err != nil {
		b.unsettled.done(final, true)
		return true, fmt.Errorf("flush after rename: %w", err)
	}
	b.unsettled.done(final, false)
	return true, nil
}

// writeSmall writes a small content object where none exists with one
// shared flush after the rename instead of one before and one after it
// (writeFile): the flush makes the data, the name and new directories
// durable together. So a crash, or a failed flush, can leave the name
// with bytes that never reached the disk. Such a file is told apart by
// its mode: it is created provisional (read-only, modeProvisional, from
// its first byte, so no state of its inode on the disk says otherwise)
// and made modeSettled only after its flush succeeded; a provisional
// name is never trusted as found: trust verifies it from the disk.
// The rename never replaces a name: an object another Put has written
// (and maybe reported durable) since Put looked must not give way to
// bytes that are not durable yet. When the name is taken (or the file
// system cannot refuse to replace), the write takes writeFile's order
// with the file it has: fsync, settled, rename, flush of the name.
// Records, large objects and Replace keep writeFile's order.
func (b *Backend) writeSmall(ctx context.Context, final string, d digest.Digest, size int64, body io.Reader) (err error) {
	if err := mkdirFast(filepath.Dir(final)); err != nil {
		return fmt.Errorf("local put %s: %w", d, err)
	}
	f, err := b.createTemp(modeProvisional)
	if err != nil {
		return fmt.Errorf("local put %s: %w", d, err)
	}
	tmp, renamed := f.Name(), false
	defer func() {
		f.Close()
		if err != nil && !renamed {
			os.Remove(tmp)
		}
	}()
	failed0 := b.group.failed.Load() // failed flushes before the bytes were written
	if err = copyVerified(newWriteBehind(f), backends.ContextReader(ctx, body), d, size); err != nil {
		return fmt.Errorf("local put %s: %w", d, err)
	}
	// The name needs no place in b.unsettled: while provisional it is
	// trusted only after trust has verified it from the disk.
	if err = renameNoReplace(tmp, final); err != nil {
		if !errors.Is(err, fs.ErrExist) && !errors.Is(err, errNoReplace) {
			return fmt.Errorf("local put %s: rename: %w", d, err)
		}
		if errors.Is(err, fs.ErrExist) {
			// Another Put's name appeared since Put looked: trust it as
			// Put would have, and keep it if it holds the content.
			if st, serr := os.Stat(final); serr == nil {
				ok, _, terr := b.trust(ctx, final, d, st, size)
				if terr != nil {
					err = terr
					return fmt.Errorf("local put %s: the existing object: %w", d, err)
				}
				if ok {
					os.Remove(tmp)
					return nil
				}
			}
		}
		// Bytes durable before the name, as writeFile does.
		if err = f.Sync(); err != nil {
			return fmt.Errorf("local put %s: fsync: %w", d, err)
		}
		if err = f.Chmod(modeSettled); err != nil {
			return fmt.Errorf("local put %s: %w", d, err)
		}
		if renamed, err = b.renameSettled(tmp, final); err != nil {
			return fmt.Errorf("local put %s: %w", d, err)
		}
		return nil
	}
	renamed = true
	if err = b.group.wait(); err == nil {
		err = b.group.ownError(f, failed0)
	}
	if err != nil {
		// The bytes may not be on the disk. The name stays provisional
		// (never removed: another writer may have verified it already),
		// so whoever finds it verifies it from the disk first.
		return fmt.Errorf("local put %s: flush: %w", d, err)
	}
	// Durable: mark it so. A crash before this change is on the disk
	// leaves a provisional name, which trust verifies once.
	if cerr := f.Chmod(modeSettled); cerr != nil {
		b.log.Warn("object stays provisional (it is re-read before it is trusted)", "backend", b.id, "digest", d.String(), "err", cerr)
	}
	return nil
}

// mkdirFast is os.MkdirAll for the object tree, where most directories
// a write needs exist already or miss only their last level: one mkdir
// (instead of MkdirAll's stat, stat of the parent, mkdir), and the
// parents only when that one fails for want of them. Nothing here makes
// a directory durable: the caller's shared flush does.
func mkdirFast(dir string) error {
	err := os.Mkdir(dir, 0o750)
	switch {
	case err == nil || errors.Is(err, fs.ErrExist):
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return os.MkdirAll(dir, 0o750)
	default:
		return err
	}
}

// rename is os.Rename without the lstat of the target it makes first
// (to refuse renaming onto a directory, which rename(2) refuses too):
// one system call fewer on every write.
func rename(from, to string) error {
	for {
		err := syscall.Rename(from, to)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
		}
		return nil
	}
}

// errNoReplace: the file system cannot rename without replacing.
var errNoReplace = errors.New("rename without replacing is not supported")

// File modes of objects: a small object is modeProvisional until the
// flush after its rename, then modeSettled (os.CreateTemp's mode, so
// every object written before provisional ones existed is settled).
const (
	modeSettled     fs.FileMode = 0o600
	modeProvisional fs.FileMode = 0o400
)

// createTemp creates a new file in the temp directory with mode perm.
func (b *Backend) createTemp(perm fs.FileMode) (*os.File, error) {
	for range 100 {
		name := filepath.Join(b.tmp, "put-"+strconv.FormatUint(rand.Uint64(), 36))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, errors.New("no unused temp file name")
}

// trust makes sure the existing file at path (found with st) is a
// durable copy of d before a caller relies on it, and reports whether it
// is. A settled name is trusted once durable (settle). A provisional one
// is a small write still in flight, or the remains of one a crash or a
// failed flush interrupted, whose bytes may exist only in memory (a
// killed process) or, after a failed write-back, only in clean cached
// pages that still read back right. So it is verified from the disk:
// its file fsynced and its name flushed, its cached pages dropped, then
// read and hashed; trusted (and settled) only if that matches.
// want is the size the caller expects (< 0: any); the size returned is
// that of the file trusted.
func (b *Backend) trust(ctx context.Context, path string, d digest.Digest, st fs.FileInfo, want int64) (bool, int64, error) {
	if st.Mode().Perm() != modeProvisional {
		return true, st.Size(), b.settle(path)
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, err
	}
	defer f.Close()
	fst, err := f.Stat()
	if err != nil {
		return false, 0, err
	}
	if want >= 0 && fst.Size() != want {
		return false, 0, nil // not this content, whatever its bytes
	}
	if err := f.Sync(); err != nil {
		return false, 0, err
	}
	if err := b.flushName(filepath.Dir(path)); err != nil {
		return false, 0, err
	}
	if err := dropCache(f); err != nil {
		return false, 0, err
	}
	v := digest.NewVerifier(backends.ContextReader(ctx, f), d, fst.Size())
	bp := bufPool.Get().(*[]byte)
	// The writer hides io.Discard's ReadFrom, which would ignore bp.
	_, err = io.CopyBuffer(struct{ io.Writer }{io.Discard}, v, *bp)
	bufPool.Put(bp)
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	if err != nil || !v.Verified() {
		return false, 0, nil
	}
	if err := f.Chmod(modeSettled); err != nil {
		b.log.Warn("object stays provisional (verified again when next found)", "backend", b.id, "digest", d.String(), "err", err)
	}
	return true, fst.Size(), nil
}

// mkdirDurable creates dir and any missing parents below the root, and
// fsyncs the parent of every directory it creates, so a new directory's
// entry survives a crash together with the object inside it. A directory
// another writer has created but not yet made durable is unsettled
// (settle.go): finding it, this writer fsyncs its parent itself rather
// than rename into a directory a crash could still take away.
func (b *Backend) mkdirDurable(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return b.settle(dir)
	}
	parent := filepath.Dir(dir)
	if parent != dir && parent != b.root {
		if err := b.mkdirDurable(parent); err != nil {
			return err
		}
	}
	b.unsettled.add(dir) // before the directory can be seen
	if err := os.Mkdir(dir, 0o750); err != nil {
		b.unsettled.done(dir, false)
		if errors.Is(err, fs.ErrExist) {
			return b.settle(dir) // created concurrently
		}
		return err
	}
	if err := b.syncDir(parent); err != nil {
		b.unsettled.done(dir, true)
		return err
	}
	b.unsettled.done(dir, false)
	return nil
}

// parallelFrom is the size from which a put hashes on one goroutine while
// another reads and writes (digest.CopyVerified); below it the goroutine
// handoff costs more than it saves.
const parallelFrom = 4 << 20

// copyVerified copies exactly size bytes of body into w (the temp file's
// writeBehind) and checks them against d. The temp file only becomes the
// object after a nil error.
func copyVerified(w *writeBehind, body io.Reader, d digest.Digest, size int64) error {
	if size >= parallelFrom {
		bps := [3]*[]byte{}
		bufs := make([][]byte, len(bps))
		for i := range bps {
			bps[i] = bufPool.Get().(*[]byte)
			bufs[i] = *bps[i]
		}
		defer func() {
			for _, bp := range bps {
				bufPool.Put(bp)
			}
		}()
		_, err := digest.CopyVerified(w, body, d, size, bufs)
		return err
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	v := digest.NewVerifier(body, d, size)
	// w has no ReadFrom (an *os.File's would ignore our buffer and copy
	// in 32 KiB pieces: half the throughput).
	if _, err := io.CopyBuffer(w, v, *bp); err != nil {
		return err
	}
	if !v.Verified() {
		// CopyBuffer stops at EOF from the verifier, which it only returns
		// after a successful check; this guards against a changed contract.
		return digest.ErrMismatch
	}
	return nil
}

// Open implements backends.Backend.
func (b *Backend) Open(ctx context.Context, d digest.Digest, off, n int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(b.Path(d))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("local open %s: %w", d, backends.ErrNotFound)
		}
		return nil, fmt.Errorf("local open %s: %w", d, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("local open %s: %w", d, err)
	}
	length, err := backends.CheckRange(st.Size(), off, n)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("local open %s [%d,+%d) of %d bytes: %w", d, off, n, st.Size(), err)
	}
	return &rangeFile{f: f, off: off, n: length, r: backends.ContextReader(ctx, io.NewSectionReader(f, off, length))}, nil
}

type rangeFile struct {
	f      *os.File
	off, n int64
	r      io.Reader
	used   bool
}

func (r *rangeFile) Read(p []byte) (int, error) { r.used = true; return r.r.Read(p) }
func (r *rangeFile) Close() error               { return r.f.Close() }

// WriteTo hands the file itself to w, so an HTTP response can use
// sendfile instead of copying through user space.
func (r *rangeFile) WriteTo(w io.Writer) (int64, error) {
	if r.used {
		return io.Copy(w, r.r)
	}
	r.used = true
	if _, err := r.f.Seek(r.off, io.SeekStart); err != nil {
		return 0, err
	}
	return io.Copy(w, &io.LimitedReader{R: r.f, N: r.n})
}

// Stat implements backends.Backend. An object it reports is durable: a
// name another Put has renamed into place but not yet flushed is flushed
// first (the staged commit's proof of upload is a Stat).
func (b *Backend) Stat(ctx context.Context, d digest.Digest) (backends.Info, error) {
	if err := ctx.Err(); err != nil {
		return backends.Info{}, err
	}
	p := b.Path(d)
	st, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return backends.Info{}, fmt.Errorf("local stat %s: %w", d, backends.ErrNotFound)
		}
		return backends.Info{}, fmt.Errorf("local stat %s: %w", d, err)
	}
	ok, size, err := b.trust(ctx, p, d, st, -1)
	if err != nil {
		return backends.Info{}, fmt.Errorf("local stat %s: %w", d, err)
	}
	if !ok {
		return backends.Info{}, fmt.Errorf("local stat %s: %w (the file holds the remains of a write a crash interrupted)", d, backends.ErrNotFound)
	}
	return backends.Info{Digest: d, Size: size}, nil
}

// Delete implements backends.Backend.
func (b *Backend) Delete(ctx context.Context, d digest.Digest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p := b.Path(d)
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("local delete %s: %w", d, err)
	}
	if err := b.syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("local delete %s: fsync dir: %w", d, err)
	}
	return nil
}

// Walk implements backends.Backend.
func (b *Backend) Walk(ctx context.Context, fn func(backends.Info) error) error {
	base := filepath.Join(b.root, filepath.FromSlash(b.prefix))
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
		if e.IsDir() || !e.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(b.root, p)
		if err != nil {
			return err
		}
		d, ok := backends.ParseObjectKey(b.prefix, filepath.ToSlash(rel))
		if !ok {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted while walking
			}
			return err
		}
		return fn(backends.Info{Digest: d, Size: fi.Size()})
	})
	if err != nil {
		return fmt.Errorf("local walk: %w", err)
	}
	return nil
}

// Health implements backends.Backend: the root must be a writable directory.
func (b *Backend) Health(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := os.CreateTemp(b.tmp, "health-*")
	if err != nil {
		return fmt.Errorf("local backend %s: %w: %v", b.id, backends.ErrUnavailable, err)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}
