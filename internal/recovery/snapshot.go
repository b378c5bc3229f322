package recovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"artifactstore/backends"
	"artifactstore/internal/digest"
	"artifactstore/store"
)

// SnapshotPrefix is the directory of database snapshots in a backend.
const SnapshotPrefix = "snapshots/"

// snapshotTime is the time format of snapshot names; it sorts as it
// reads.
const snapshotTime = "20060102T150405.000000000Z"

// snapshotTemp is the pattern of a snapshot's temporary file.
const snapshotTemp = "snapshot-*.db"

// ErrNoRecordStore: the backend keeps no records (no snapshots either).
var ErrNoRecordStore = errors.New("backend keeps no records")

// Snapshot describes one database snapshot in a backend. Its name carries
// its time and digest: snapshots/<time>-<sha256 hex>.db.
type Snapshot struct {
	Backend string        `json:"backend"`
	Name    string        `json:"name"`
	Time    time.Time     `json:"time"`
	Digest  digest.Digest `json:"digest"`
	Size    int64         `json:"size"`
}

// snapshotName is the record name of a snapshot.
func snapshotName(t time.Time, d digest.Digest) string {
	return SnapshotPrefix + t.UTC().Format(snapshotTime) + "-" + d.Hex + ".db"
}

// parseSnapshotName is the inverse of snapshotName.
func parseSnapshotName(name string) (time.Time, digest.Digest, bool) {
	rest, ok := strings.CutPrefix(name, SnapshotPrefix)
	if !ok {
		return time.Time{}, digest.Digest{}, false
	}
	rest, ok = strings.CutSuffix(rest, ".db")
	ts, hx, ok2 := strings.Cut(rest, "-")
	if !ok || !ok2 {
		return time.Time{}, digest.Digest{}, false
	}
	t, err := time.Parse(snapshotTime, ts)
	if err != nil {
		return time.Time{}, digest.Digest{}, false
	}
	d, err := digest.FromParts(digest.SHA256, hx)
	if err != nil {
		return time.Time{}, digest.Digest{}, false
	}
	return t, d, true
}

func (m *Manager) recordStore(id string) (backends.RecordStore, error) {
	if _, ok := m.all[id]; !ok {
		return nil, fmt.Errorf("backend %q is not configured", id)
	}
	rs, ok := m.records[id]
	if !ok {
		return nil, fmt.Errorf("backend %s: %w", id, ErrNoRecordStore)
	}
	return rs, nil
}

// ListSnapshots returns the snapshots in backend id, newest first.
// Records under snapshots/ whose names are not snapshot names are
// ignored.
func ListSnapshots(ctx context.Context, id string, rs backends.RecordStore) ([]Snapshot, error) {
	var out []Snapshot
	err := rs.ListRecords(ctx, SnapshotPrefix, func(i backends.RecordInfo) error {
		if t, d, ok := parseSnapshotName(i.Name); ok {
			out = append(out, Snapshot{Backend: id, Name: i.Name, Time: t, Digest: d, Size: i.Size})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("backend %s: list snapshots: %w", id, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name > out[j].Name })
	return out, nil
}

// Snapshots lists the snapshots in a configured backend, newest first.
func (m *Manager) Snapshots(ctx context.Context, id string) ([]Snapshot, error) {
	rs, err := m.recordStore(id)
	if err != nil {
		return nil, err
	}
	return ListSnapshots(ctx, id, rs)
}

// SnapshotResult is what Snapshot did.
type SnapshotResult struct {
	Snapshot
	// Took is how long writing, uploading and verifying took.
	Took time.Duration `json:"took_ns"`
	// Removed are the older snapshots dropped to keep the last N.
	Removed []string `json:"removed,omitempty"`
}

// RunSnapshot is the lifecycle run kind under which the last snapshot's
// result is kept (store.RecordLifecycleRun).
const RunSnapshot = "snapshot"

// Snapshot writes a consistent copy of the database (bbolt's hot backup,
// writers keep going) into backend id: first to a temporary file in
// tmpDir, checked like a backup file, then uploaded under a name carrying
// its time and digest, read back and hashed, and only then are the
// snapshots beyond the newest keep removed. A failure at any step (or a
// process killed during it) leaves the earlier snapshots as they were.
func (m *Manager) Snapshot(ctx context.Context, id string, keep int, tmpDir string) (*SnapshotResult, error) {
	m.snapMu.Lock()
	defer m.snapMu.Unlock()
	res, err := m.snapshot(ctx, id, keep, tmpDir)
	m.opts.Metrics.snapshot(id, err)
	m.snapErrMu.Lock()
	if err != nil {
		m.snapErr, m.snapErrAt = err.Error(), time.Now().UTC()
	} else {
		m.snapErr = ""
	}
	m.snapErrMu.Unlock()
	return res, err
}

func (m *Manager) snapshot(ctx context.Context, id string, keep int, tmpDir string) (*SnapshotResult, error) {
	start := time.Now()
	rs, err := m.recordStore(id)
	if err != nil {
		return nil, err
	}
	if keep < 1 {
		keep = 1
	}
	// Temporary files of snapshots a killed process left (one process per
	// data directory holds the database lock; snapshots are serialised).
	if old, _ := filepath.Glob(filepath.Join(tmpDir, snapshotTemp)); len(old) > 0 {
		for _, o := range old {
			os.Remove(o)
		}
	}
	f, err := os.CreateTemp(tmpDir, snapshotTemp)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := digest.NewHasher()
	size, err := m.store.WriteBackup(ctx, io.MultiWriter(f, h), nil)
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: write %s: %w", f.Name(), err)
	}
	if err := store.CheckFile(f.Name()); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	d := h.Digest()
	now := time.Now().UTC()
	name := snapshotName(now, d)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	body := &stepReader{r: f, at: size / 2, step: func() { m.step("snapshot.upload") }}
	if err := rs.PutRecord(ctx, name, d, size, body); err != nil {
		return nil, fmt.Errorf("snapshot: upload to backend %s: %w", id, err)
	}
	if err := verifySnapshot(ctx, rs, name, d, size); err != nil {
		rs.DeleteRecord(context.WithoutCancel(ctx), name)
		return nil, fmt.Errorf("snapshot: backend %s: %w", id, err)
	}
	res := &SnapshotResult{Snapshot: Snapshot{Backend: id, Name: name, Time: now, Digest: d, Size: size}}
	all, err := ListSnapshots(ctx, id, rs)
	if err != nil {
		return nil, err
	}
	for i, s := range all {
		if i < keep || s.Name == name {
			continue
		}
		if err := rs.DeleteRecord(ctx, s.Name); err != nil {
			return nil, fmt.Errorf("snapshot: remove old snapshot %s: %w", s.Name, err)
		}
		res.Removed = append(res.Removed, s.Name)
	}
	res.Took = time.Since(start)
	if err := m.store.RecordLifecycleRun(ctx, RunSnapshot, "", res); err != nil {
		return nil, err
	}
	m.log.Info("database snapshot written", "backend", id, "name", name, "bytes", size, "removed", len(res.Removed), "took", res.Took.String())
	return res, nil
}

// LastSnapshot returns the result of the last snapshot this database
// wrote, or nil.
func (m *Manager) LastSnapshot(ctx context.Context) (*SnapshotResult, error) {
	var r SnapshotResult
	ok, err := m.store.LifecycleRun(ctx, RunSnapshot, &r)
	if err != nil || !ok {
		return nil, err
	}
	return &r, nil
}

// verifySnapshot reads a snapshot back and checks its size and digest.
func verifySnapshot(ctx context.Context, rs backends.RecordStore, name string, d digest.Digest, size int64) error {
	rc, _, err := rs.OpenRecord(ctx, name)
	if err != nil {
		return fmt.Errorf("read back %s: %w", name, err)
	}
	defer rc.Close()
	v := digest.NewVerifier(rc, d, size)
	if _, err := io.Copy(io.Discard, v); err != nil {
		return fmt.Errorf("read back %s: %w", name, err)
	}
	if !v.Verified() {
		return fmt.Errorf("read back %s: %w", name, digest.ErrMismatch)
	}
	return nil
}

// FetchSnapshot downloads a snapshot into a new file in dir, checks its
// digest, size and bbolt consistency, and returns the file's path.
func FetchSnapshot(ctx context.Context, rs backends.RecordStore, s Snapshot, dir string) (string, error) {
	rc, _, err := rs.OpenRecord(ctx, s.Name)
	if err != nil {
		return "", fmt.Errorf("snapshot %s: %w", s.Name, err)
	}
	defer rc.Close()
	f, err := os.CreateTemp(dir, "recover-*.db")
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	v := digest.NewVerifier(rc, s.Digest, s.Size)
	if _, err := io.Copy(f, v); err != nil {
		return "", fmt.Errorf("snapshot %s: %w", s.Name, err)
	}
	if !v.Verified() {
		return "", fmt.Errorf("snapshot %s: %w", s.Name, digest.ErrMismatch)
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := store.CheckFile(f.Name()); err != nil {
		return "", fmt.Errorf("snapshot %s: %w", s.Name, err)
	}
	ok = true
	return filepath.Clean(f.Name()), nil
}

// stepReader calls step once, when the reads pass at bytes (crash tests
// kill the process there, in the middle of an upload).
type stepReader struct {
	r    io.Reader
	n    int64
	at   int64
	step func()
	done bool
}

func (s *stepReader) Read(p []byte) (int, error) {
	if !s.done && s.n >= s.at {
		s.done = true
		s.step()
	}
	if !s.done && int64(len(p)) > s.at-s.n && s.at > s.n {
		p = p[:s.at-s.n]
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	return n, err
}

// RunSnapshots writes a snapshot into backend id every interval until
// ctx ends; the first is due interval after the last one this database
// recorded (at once if there was none). A failed snapshot is logged and
// tried again after a tenth of the interval (at least a minute, at most
// the interval).
func (m *Manager) RunSnapshots(ctx context.Context, id string, interval time.Duration, keep int, tmpDir string) {
	if interval <= 0 || id == "" {
		return
	}
	due := time.Now()
	if last, err := m.LastSnapshot(ctx); err == nil && last != nil && last.Backend == id {
		due = last.Time.Add(interval)
	}
	retry := min(max(interval/10, time.Minute), interval)
	for {
		t := time.NewTimer(time.Until(due))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if _, err := m.Snapshot(ctx, id, keep, tmpDir); err != nil {
			if ctx.Err() != nil {
				return
			}
			m.log.Error("scheduled database snapshot failed", "backend", id, "err", err, "retry_in", retry.String())
			due = time.Now().Add(retry)
			continue
		}
		due = time.Now().Add(interval)
	}
}
