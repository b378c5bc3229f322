package local

import (
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
	// flushed is set once a flush has succeeded: everything renamed
	// before the group was made (by an earlier process) is durable.
	flushed atomic.Bool
}

type flushRound struct {
	done    chan struct{}
	err     error
	waiters int // for tests: how many writers wait for this round
}

func newGroupFlush(flush func() error) *groupFlush { return &groupFlush{flush: flush} }

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

// run flushes round after round until no writer waits.
func (g *groupFlush) run() {
	for {
		g.mu.Lock()
		r := g.next
		g.next = nil
		if r == nil {
			g.running = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		r.err = g.flush()
		if r.err == nil {
			g.flushed.Store(true)
		}
		close(r.done)
	}
}
