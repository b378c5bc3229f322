package local

import (
	"path/filepath"
	"sync"
)

// A name renamed into place is visible at once but durable only after
// the flush that follows the rename (the shared file-system flush, or
// the directory's fsync). Put and Stat report a name that exists, and
// their callers act on it (a publish commits a package that refers to
// the object), so they must never report one that a crash could still
// take away: a Put of content another Put is still flushing, or the
// staged commit's Stat of it, would otherwise let a package be committed
// (and acknowledged as durable) a moment before its object is.
//
// Every name this process renames after its bytes are durable
// (writeFile: records, large objects, Replace) is "unsettled" from just
// before its rename until a flush after it succeeds. (A small object's
// name, renamed before its bytes are durable, is provisional instead
// and verified from the disk before it is trusted: trust in local.go.) A Put or Stat that finds an
// unsettled name flushes it itself (the next shared flush, or its
// directory's fsync) before trusting it; a name whose flush failed stays
// unsettled until such a flush succeeds. Names from before this process
// are trusted once this process's first shared flush has succeeded (or,
// without shared flushes, after the flush in New).

// unsettledNames counts, per final path, the writers between their
// rename and the end of the flush after it, and marks the paths whose
// flush failed.
type unsettledNames struct {
	mu    sync.Mutex
	names map[string]*unsettledName
}

type unsettledName struct {
	writers int  // renames in progress or waiting for their flush
	failed  bool // a flush after a rename of this name failed
}

// add registers a writer about to rename onto path.
func (u *unsettledNames) add(path string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.names == nil {
		u.names = map[string]*unsettledName{}
	}
	n := u.names[path]
	if n == nil {
		n = &unsettledName{}
		u.names[path] = n
	}
	n.writers++
}

// done ends a writer's registration; failed says its flush after the
// rename failed, so the name is not known to be durable.
func (u *unsettledNames) done(path string, failed bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := u.names[path]
	n.writers--
	n.failed = n.failed || failed
	if n.writers == 0 && !n.failed {
		delete(u.names, path)
	}
}

// is reports whether path is unsettled.
func (u *unsettledNames) is(path string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.names[path] != nil
}

// settled records that a flush which started after path was seen
// succeeded: a failed earlier flush no longer matters.
func (u *unsettledNames) settled(path string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if n := u.names[path]; n != nil {
		n.failed = false
		if n.writers == 0 {
			delete(u.names, path)
		}
	}
}

// settle makes sure the existing name path (an object, a record, or a
// directory mkdirDurable found) is durable before a caller trusts it.
// The caller has seen the name exist: if its writer added it to the set
// before renaming (or creating) it, the set still holds it until a flush
// after that has succeeded, so a name not in the set is durable, once
// the first shared flush of this process has made the names of earlier
// processes durable (without a shared flush, New flushed the file
// system).
func (b *Backend) settle(path string) error {
	if !b.unsettled.is(path) && (b.group == nil || b.group.flushed.Load()) {
		return nil
	}
	// The rename is visible, so it happened before this flush starts;
	// the bytes under the name were made durable before the rename.
	if err := b.flushName(filepath.Dir(path)); err != nil {
		return err
	}
	b.unsettled.settled(path)
	return nil
}

// flushName makes a rename into dir (and the directories created for it)
// durable: the next shared flush, or without one the directory's fsync
// (its new parents were made durable by mkdirDurable).
func (b *Backend) flushName(dir string) error {
	if b.group != nil {
		return b.group.wait()
	}
	return b.syncDir(dir)
}
