package store

import (
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// groupCommitter runs hot-path writes (publish begin and commit, verdicts,
// repairs, webhook cursors) as group commits: one goroutine commits
// everything that is waiting, in one bbolt transaction and one fsync,
// while the writes that arrive during that commit queue for the next. A
// caller returns only after the transaction holding its write is durable
// (or failed), so "a 201 means durable" holds; under load many writes
// share each fsync, and an idle store commits a lone write at once.
//
// bbolt's own DB.Batch groups only the writes that arrive within
// MaxBatchDelay of the first one; the groups then queue behind the
// database's writer lock one after another, so under load each commit
// carries a handful of writes (measured: 106-175 publishes/s of 4 KiB
// with 32 producers on 2 cores; see docs/PERFORMANCE.md).
type groupCommitter struct {
	db *bolt.DB
	// update runs a group's transaction: db.Update (tests wrap it to
	// make a commit fail after the functions ran).
	update func(fn func(*bolt.Tx) error) error
	// delay is how long an idle committer waits for more writes to join
	// the first one (Options.BatchDelay); 0 commits at once.
	delay time.Duration

	mu      sync.Mutex
	pending []groupCall
	closed  bool
	wake    chan struct{} // one token: work is pending
	done    chan struct{} // closed when the loop has exited

	// released counts the groups whose early calls were released before
	// their commit, committed the groups whose commit has returned; both
	// under mu, settled is signalled when committed moves.
	released, committed uint64
	settled             *sync.Cond
}

type groupCall struct {
	fn  func(*bolt.Tx) error
	err chan error
	// early calls (doEarly) learn fn's result once every function of
	// their group has run, before the commit; failed learns of a commit
	// that then fails.
	early  bool
	failed func(error)
}

// maxGroup bounds the writes of one transaction, so one commit stays short.
const maxGroup = 1000

// errSolo tells a caller its function failed inside a group: it runs
// again alone, so its error is its own and the others commit without it.
var errSolo = errors.New("run alone")

// errClosed is returned for writes submitted after Close.
var errClosed = errors.New("store closed")

func newGroupCommitter(db *bolt.DB, delay time.Duration) *groupCommitter {
	g := &groupCommitter{db: db, update: db.Update, delay: delay, wake: make(chan struct{}, 1), done: make(chan struct{})}
	g.settled = sync.NewCond(&g.mu)
	go g.loop()
	return g
}

// do runs fn in a durable write transaction shared with concurrent
// writes. fn may run more than once (when another function of the same
// group fails, the group is rolled back and retried without it), so it
// must set its results afresh on every call.
func (g *groupCommitter) do(fn func(*bolt.Tx) error) error {
	return g.submit(groupCall{fn: fn, err: make(chan error, 1)})
}

// doEarly is do for a write whose durability nobody waits for: it
// returns fn's result as soon as fn (and every other function of its
// group) has run in the transaction, before that transaction commits;
// failed is called if the commit then fails. What fn wrote is visible
// at once to every write transaction (bbolt has one writer at a time,
// and the committing transaction holds it), but to read transactions
// only once the commit returns: a read that must see every write
// released so far calls settle first.
func (g *groupCommitter) doEarly(fn func(*bolt.Tx) error, failed func(error)) error {
	return g.submit(groupCall{fn: fn, err: make(chan error, 1), early: true, failed: failed})
}

// settle returns once every group whose early calls were released
// before it was called has committed (or failed to).
func (g *groupCommitter) settle() {
	g.mu.Lock()
	for target := g.released; g.committed < target; {
		g.settled.Wait()
	}
	g.mu.Unlock()
}

func (g *groupCommitter) submit(c groupCall) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return errClosed
	}
	g.pending = append(g.pending, c)
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default: // the loop is already woken
	}
	err := <-c.err
	if err == errSolo {
		err = g.db.Update(c.fn)
	}
	return err
}

// close commits what is pending, stops the loop and refuses new writes.
func (g *groupCommitter) close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		<-g.done
		return
	}
	g.closed = true
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
	<-g.done
}

func (g *groupCommitter) loop() {
	defer close(g.done)
	for range g.wake {
		if g.delay > 0 {
			time.Sleep(g.delay)
		}
		for {
			g.mu.Lock()
			n := min(len(g.pending), maxGroup)
			calls := g.pending[:n:n]
			g.pending = g.pending[n:]
			if len(g.pending) == 0 {
				g.pending = nil
			}
			closed := g.closed && n == 0
			g.mu.Unlock()
			if closed {
				return
			}
			if n == 0 {
				break
			}
			g.commit(calls)
		}
	}
}

// commit runs calls in one transaction. A call whose function fails (or
// panics) is taken out and told to run alone; the rest are retried.
func (g *groupCommitter) commit(calls []groupCall) {
	for len(calls) > 0 {
		failed := -1
		var gen uint64 // set when early calls were released
		err := g.update(func(tx *bolt.Tx) error {
			for i, c := range calls {
				if err := safeCall(c.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			gen = g.release(calls)
			return nil
		})
		if failed >= 0 {
			calls[failed].err <- errSolo
			calls = append(calls[:failed:failed], calls[failed+1:]...)
			continue
		}
		for _, c := range calls {
			switch {
			case !c.early || gen == 0:
				c.err <- err
			case err != nil:
				c.failed(err)
			}
		}
		if gen != 0 {
			g.mu.Lock()
			g.committed = gen
			g.settled.Broadcast()
			g.mu.Unlock()
		}
		return
	}
}

// release tells the early calls of a group whose functions have all run
// that they succeeded, and returns the group's generation (0 when it
// has no early call).
func (g *groupCommitter) release(calls []groupCall) uint64 {
	var gen uint64
	for _, c := range calls {
		if !c.early {
			continue
		}
		if gen == 0 {
			g.mu.Lock()
			g.released++
			gen = g.released
			g.mu.Unlock()
		}
		c.err <- nil
	}
	return gen
}

func safeCall(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return fn(tx)
}
