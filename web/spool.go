package web

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// spoolPrefix names the temporary files of one-request publishes.
const spoolPrefix = "form-"

// spoolDir holds the temporary files of one-request publishes and knows
// which of them a live request still uses, so Sweep can remove the rest:
// files a killed process left behind, or ones a failed remove kept.
type spoolDir struct {
	dir  string
	mu   sync.Mutex
	live map[string]struct{}
}

func newSpoolDir(dir string) *spoolDir {
	return &spoolDir{dir: dir, live: map[string]struct{}{}}
}

// create opens a new temporary file and marks it live.
func (d *spoolDir) create() (*os.File, error) {
	if err := os.MkdirAll(d.dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool directory: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	f, err := os.CreateTemp(d.dir, spoolPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("spool file: %w", err)
	}
	d.live[f.Name()] = struct{}{}
	return f, nil
}

// remove deletes a temporary file and forgets it.
func (d *spoolDir) remove(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.Remove(name); err == nil || os.IsNotExist(err) {
		delete(d.live, name)
	}
}

// sweep removes every spool file that no request of this process uses and
// returns how many it removed.
func (d *spoolDir) sweep(ctx context.Context) (int, error) {
	entries, err := os.ReadDir(d.dir)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sweep spool directory: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	removed := 0
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		p := filepath.Join(d.dir, e.Name())
		if e.IsDir() || !strings.HasPrefix(e.Name(), spoolPrefix) {
			continue
		}
		if _, inUse := d.live[p]; inUse {
			continue
		}
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return removed, fmt.Errorf("sweep spool directory: %w", err)
		}
		removed++
	}
	return removed, nil
}

// SweepSpool removes the temporary files of one-request publishes that no
// request in flight uses (left by a killed process, or by a remove that
// failed) and returns how many. The service calls it at start-up and
// periodically.
func (s *Server) SweepSpool(ctx context.Context) (int, error) { return s.spool.sweep(ctx) }
