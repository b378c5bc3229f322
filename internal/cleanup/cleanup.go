// Package cleanup removes what interrupted work leaves behind and the
// registry does not know about: temporary files of one-request publishes
// (a killed process never removes them) and incomplete writes a backend
// holds (backends.IncompleteWriter, e.g. uploads a killed process had
// open). It runs at start-up and then periodically.
package cleanup

import (
	"context"
	"log/slog"
	"sort"
	"time"

	"artifactstore/backends"
)

// Options configures a Janitor.
type Options struct {
	// Interval between runs; 0 means 10 minutes.
	Interval time.Duration
	// IncompleteWriteAge: incomplete writes that started longer ago are
	// aborted. It must exceed the longest upload a client may take, since
	// a write in progress looks the same; 0 means 24 hours.
	IncompleteWriteAge time.Duration
	// Spool removes unused temporary files and returns how many; nil
	// means none.
	Spool func(ctx context.Context) (int, error)
	// Backends whose incomplete writes are aborted (those implementing
	// backends.IncompleteWriter; the others are skipped).
	Backends map[string]backends.Backend
	Logger   *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Janitor runs the cleanup.
type Janitor struct {
	opts Options
	log  *slog.Logger
}

// New builds a Janitor.
func New(opts Options) *Janitor {
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Minute
	}
	if opts.IncompleteWriteAge <= 0 {
		opts.IncompleteWriteAge = 24 * time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Janitor{opts: opts, log: opts.Logger}
}

// Result is what one run removed.
type Result struct {
	SpoolFiles int
	// Aborted lists the incomplete writes aborted, by backend id.
	Aborted map[string][]backends.IncompleteWrite
}

// RunOnce sweeps the spool and aborts old incomplete writes on every
// backend. A failing backend is logged and does not stop the others; the
// first error is returned with what was done.
func (j *Janitor) RunOnce(ctx context.Context) (Result, error) {
	res := Result{Aborted: map[string][]backends.IncompleteWrite{}}
	var first error
	keep := func(err error) {
		if first == nil {
			first = err
		}
	}
	if j.opts.Spool != nil {
		n, err := j.opts.Spool(ctx)
		res.SpoolFiles = n
		if n > 0 {
			j.log.Info("removed leftover spool files of one-request publishes", "count", n)
		}
		if err != nil {
			j.log.Warn("sweeping the spool directory failed", "err", err)
			keep(err)
		}
	}
	ids := make([]string, 0, len(j.opts.Backends))
	for id := range j.opts.Backends {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	before := j.opts.Now().Add(-j.opts.IncompleteWriteAge)
	for _, id := range ids {
		iw, ok := backends.AsIncompleteWriter(j.opts.Backends[id])
		if !ok {
			continue
		}
		done, err := iw.AbortIncompleteWrites(ctx, before)
		if len(done) > 0 {
			res.Aborted[id] = done
			j.log.Info("aborted incomplete writes left by interrupted uploads", "backend", id, "count", len(done))
		}
		if err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			j.log.Warn("aborting incomplete writes failed", "backend", id, "err", err)
			keep(err)
		}
	}
	return res, first
}

// Loop runs RunOnce now and then every Interval until ctx is done.
func (j *Janitor) Loop(ctx context.Context) {
	t := time.NewTicker(j.opts.Interval)
	defer t.Stop()
	for {
		j.RunOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
