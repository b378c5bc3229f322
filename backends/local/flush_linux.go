package local

import (
	"os"

	"golang.org/x/sys/unix"
)

// fsFlush returns the flush of root's file system: syncfs(2) on a
// descriptor held open for the backend's life, so the writeback errors
// reported to it are every error since its previous call (a descriptor
// opened per call would miss an error another syncfs caller had
// already seen), and closeFlush, which closes that descriptor.
func fsFlush(root string) (flush func() error, closeFlush func() error, err error) {
	f, err := os.Open(root)
	if err != nil {
		return nil, nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return func() error {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = unix.Syncfs(int(fd)) }); err != nil {
			return err
		}
		if serr != nil {
			return &os.SyscallError{Syscall: "syncfs", Err: serr}
		}
		return nil
	}, f.Close, nil
}

// dropCache drops the cached pages of f (clean after a sync), so the
// next read of them comes from the disk.
func dropCache(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = unix.Fadvise(int(fd), 0, 0, unix.FADV_DONTNEED) }); err != nil {
		return err
	}
	if ferr != nil {
		return &os.SyscallError{Syscall: "fadvise", Err: ferr}
	}
	return nil
}

// renameNoReplace renames from to to unless to exists (fs.ErrExist);
// errNoReplace when the file system cannot refuse to replace.
func renameNoReplace(from, to string) error {
	for {
		err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
		switch err {
		case nil:
			return nil
		case unix.EINTR:
			continue
		case unix.EINVAL, unix.ENOSYS:
			return errNoReplace
		}
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
}
