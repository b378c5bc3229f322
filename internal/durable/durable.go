// Package durable holds the file-system steps that make a change survive
// a crash of the machine, not only of the process: a rename is in the
// page cache until its directory is flushed.
package durable

import (
	"fmt"
	"os"
	"path/filepath"
)

// SyncDir fsyncs the directory dir, making the entries created, renamed
// or removed in it durable.
func SyncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Rename renames oldpath to newpath and makes the rename durable: it
// fsyncs newpath's directory, and oldpath's too when it is another one.
// The file's own bytes must already be durable (fsynced by its writer).
// When Rename returns an error after the rename itself succeeded, the
// new name is visible but may not survive a crash.
func Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	dirs := []string{filepath.Dir(newpath)}
	if od := filepath.Dir(oldpath); od != dirs[0] {
		dirs = append(dirs, od)
	}
	for _, d := range dirs {
		if err := SyncDir(d); err != nil {
			return fmt.Errorf("rename %s: fsync %s: %w", newpath, d, err)
		}
	}
	return nil
}
