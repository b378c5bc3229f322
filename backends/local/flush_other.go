//go:build !linux

package local

import "os"

// fsFlush: without syncfs(2) every write flushes its own file and
// directory (nil: no group flush).
func fsFlush(root string) (flush func() error, closeFlush func() error, err error) {
	return nil, nil, nil
}

// dropCache: provisional objects are written only with a group flush
// (Linux); elsewhere there is no page cache to drop portably.
func dropCache(f *os.File) error { return nil }

// renameNoReplace: only Linux's writeSmall calls it (with a group flush).
func renameNoReplace(from, to string) error { return errNoReplace }
