package local

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// groupFlush shares one file-system flush among concurrent writers, the
// way store/groupcommit.go shares one bbolt commit: a writer that has
// written (or renamed) what it needs durable calls wait, which returns
// after a flush that STARTED after the call. Flushes run one after
// another, back to back, while anyone waits; the writers that arrive
// during a flush all share the next one. An idle backend flushes a lone
// writer at once.
//
// The flush is syncfs(2) of the backend root's file system
// (flush_linux.go): it writes back every dirty page and inode of that
// file system and commits its journal, so one call makes the data of
// every temp file written before it, and every rename and mkdir done
// before it, durable, whatever the number of files. Its error (the
// file system's writeback error since the previous flush, reported by
// Linux since 5.8) goes to every writer of the round: a writer never
// learns of a failure later than it would have with its own fsync, and
// may learn of another file's failure on the same file system
// (conservative: its Put fails).
type groupFlush struct {
	// flush makes everything written before it started durable.
	flush func() error

	mu      sync.Mutex
	next    *flushRound // the round that starts when the running one ends
	running bool        // a goroutine is running rounds
	// toRename are small writes whose data the next flush makes durable;
	// the flusher renames them after it, and they join renamed, whose
	// names the flush after that makes durable. So one flush serves one
	// batch's data and the batch before it's names, and a writer is woken
	// once, not twice.
	toRename []*renameItem
	renamed  []*renameItem
	// flushed is set once a flush has succeeded: everything renamed
	// before the group was made (by an earlier process) is durable.
	flushed atomic.Bool
	// failed counts the flushes that failed (see ownError).
	failed atomic.Uint64
	// syncFile fsyncs one file (ownError; tests record it).
	syncFile func(*os.File) error
}

// ownError returns the write-back error of f, a file whose bytes were
// written when failed was failed0, if a flush has failed since: syncfs
// reports a write-back error to the first flush after it, which may be
// a round that started before the writer waited (and so released other
// writers), and the writer's own round then succeeds. The writer's
// descriptor, open since before the error, still reports it to fsync.
// Without a failure since, it costs nothing.
func (g *groupFlush) ownError(f *os.File, failed0 uint64) error {
	if g.failed.Load() == failed0 {
		return nil
	}
	if err := g.syncFile(f); err != nil {
		return fmt.Errorf("flush: an earlier flush failed, and so does this file's fsync: %w", err)
	}
	return nil
}

// renameItem is a small write handed to the flusher (renameDurably): its
// temp file's data to flush, then its rename, then its name to flush.
type renameItem struct {
	tmp, final string
	renamed    bool  // the rename was done (the name is visible)
	err        error // set before done is closed
	done       chan struct{}
}

type flushRound struct {
	done    chan struct{}
	err     error
	waiters int // for tests: how many writers wait for this round
}

func newGroupFlush(flush func() error) *groupFlush {
	return &groupFlush{flush: flush, syncFile: (*os.File).Sync}
}

// wait returns after a flush that started after wait was called, with
// that flush's error. It does not take a context: the caller has
// already made its change visible (a rename) or is about to, and must
// learn whether it is durable; a flush does not wait on the network.
func (g *groupFlush) wait() error {
	g.mu.Lock()
	r := g.next
	if r == nil {
		r = &flushRound{done: make(chan struct{})}
		g.next = r
	}
	r.waiters++
	if !g.running {
		g.running = true
		go g.run()
	}
	g.mu.Unlock()
	<-r.done
	return r.err
}

// renameDurably makes the data of the closed file tmp durable, renames
// it to final and makes that name durable, sharing flushes with every
// other writer: the data with the next flush, the name with the one
// after it (the flusher does the rename in between). renamed reports
// whether the rename happened (the name is visible): after an error
// with renamed false, tmp is still there and final untouched.
func (g *groupFlush) renameDurably(tmp, final string) (renamed bool, err error) {
	it := &renameItem{tmp: tmp, final: final, done: make(chan struct{})}
	g.mu.Lock()
	g.toRename = append(g.toRename, it)
	if !g.running {
		g.running = true
		go g.run()
	}
	g.mu.Unlock()
	<-it.done
	return it.renamed, it.err
}

// run flushes round after round until no writer waits and no rename
// waits for its flush.
func (g *groupFlush) run() {
	for {
		g.mu.Lock()
		r, data, names := g.next, g.toRename, g.renamed
		g.next, g.toRename, g.renamed = nil, nil, nil
		if r == nil && len(data) == 0 && len(names) == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		err := g.flush()
		if err == nil {
			g.flushed.Store(true)
		} else {
			g.failed.Add(1) // before any writer is released
		}
		if r != nil {
			r.err = err
			close(r.done)
		}
		for _, it := range names { // renamed before this flush started
			if err != nil {
				it.err = fmt.Errorf("flush after rename: %w", err)
			}
			close(it.done)
		}
		var next []*renameItem
		for _, it := range data { // written before this flush started
			switch {
			case err != nil:
				it.err = fmt.Errorf("flush: %w", err)
			default:
				if rerr := rename(it.tmp, it.final); rerr != nil {
					it.err = fmt.Errorf("rename: %w", rerr)
				} else {
					it.renamed = true
					next = append(next, it)
					continue
				}
			}
			close(it.done)
		}
		if len(next) > 0 {
			g.mu.Lock()
			g.renamed = append(g.renamed, next...)
			g.mu.Unlock()
		}
	}
}
