package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"artifactstore/internal/cliout"
	"artifactstore/internal/recovery"
	"artifactstore/store"
)

// recoveryKillAtEnv is a fault-injection hook for the crash tests: when
// set to POINT:N the process kills itself with SIGKILL the Nth time the
// recovery package reaches step POINT (recovery.Options.Step), as kill -9
// would.
const recoveryKillAtEnv = "ARTIFACTSTORE_TEST_RECOVERY_KILL_AT"

func recoveryKillAt() func(string) {
	point, count, ok := strings.Cut(os.Getenv(recoveryKillAtEnv), ":")
	n, err := strconv.ParseInt(count, 10, 64)
	if !ok || err != nil || n <= 0 {
		return nil
	}
	var steps atomic.Int64
	return func(p string) {
		if p == point && steps.Add(1) == n {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
}

// recordsFlushTimeout bounds how long shutdown and db check wait for the
// record outbox to drain.
const recordsFlushTimeout = 30 * time.Second

// runRecovery keeps the manifest records in step until ctx ends, then
// writes what the last commits left in the outbox (bounded; what is not
// written stays in the outbox for the next start).
func (s *Service) runRecovery(ctx context.Context) {
	s.Recovery.Run(ctx)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordsFlushTimeout)
	defer cancel()
	if err := s.Recovery.Flush(fctx); err != nil {
		s.Log.Warn("manifest records not all written at shutdown; they are written at the next start", "err", err)
	}
}

// SnapshotsConfig schedules database snapshots into a backend
// (internal/recovery).
type SnapshotsConfig struct {
	// Backend receives the scheduled snapshots; empty: none are scheduled
	// (`backup --to-backend` still works).
	Backend string `koanf:"backend" yaml:"backend"`
	// Interval between scheduled snapshots; 0 disables the schedule.
	Interval time.Duration `koanf:"interval" yaml:"interval"`
	// Keep is how many snapshots stay in the backend (the newest).
	Keep int `koanf:"keep" yaml:"keep"`
}

func (c *Config) validateSnapshots() error {
	s := c.Snapshots
	if s.Backend != "" {
		if _, ok := c.Backends[s.Backend]; !ok {
			return &ConfigError{Key: "snapshots.backend", Msg: fmt.Sprintf("names unknown backend %q", s.Backend)}
		}
	}
	if s.Interval < 0 {
		return &ConfigError{Key: "snapshots.interval", Msg: "must not be negative (0 disables the schedule)"}
	}
	if s.Interval > 0 && s.Interval < time.Second {
		return &ConfigError{Key: "snapshots.interval", Msg: "must be at least 1s"}
	}
	if s.Keep < 1 {
		return &ConfigError{Key: "snapshots.keep", Msg: "must be at least 1"}
	}
	return nil
}

// runSnapshots runs the snapshot schedule until ctx ends.
func (s *Service) runSnapshots(ctx context.Context) {
	c := s.Config.Snapshots
	s.Recovery.RunSnapshots(ctx, c.Backend, c.Interval, c.Keep, s.Config.DataDir)
}

// adminSnapshot is POST /v1/admin/snapshots?backend=ID: write a database
// snapshot into the backend now (keeping snapshots.keep of them).
func (s *Service) adminSnapshot(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("backend")
	if id == "" {
		id = s.Config.Snapshots.Backend
	}
	if id == "" {
		adminError(w, http.StatusBadRequest, "bad_request", "name the backend (?backend=ID); snapshots.backend is not set")
		return
	}
	if _, ok := s.Backends[id]; !ok {
		adminError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("backend %q is not configured", id))
		return
	}
	res, err := s.Recovery.Snapshot(r.Context(), id, s.Config.Snapshots.Keep, s.Config.DataDir)
	if err != nil {
		adminError(w, http.StatusInternalServerError, "snapshot_failed", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	cliout.JSON(w, res)
}

// adminSnapshots is GET /v1/admin/snapshots?backend=ID: the snapshots in
// a backend, newest first.
func (s *Service) adminSnapshots(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("backend")
	if id == "" {
		id = s.Config.Snapshots.Backend
	}
	list, err := s.Recovery.Snapshots(r.Context(), id)
	if err != nil {
		adminError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if list == nil {
		list = []recovery.Snapshot{}
	}
	w.Header().Set("Content-Type", "application/json")
	cliout.JSON(w, list)
}

// backupToBackend asks the admin path for a snapshot into a backend.
func backupToBackend(c *cli.Context, env Env, id string) error {
	b, err := adminDo(c, env, http.MethodPost, "/v1/admin/snapshots?backend="+url.QueryEscape(id), nil, http.StatusOK)
	if err != nil {
		return cli.Exit(fmt.Sprintf("snapshot into backend %s failed: %v", id, err), 1)
	}
	var res recovery.SnapshotResult
	if err := json.Unmarshal(b, &res); err != nil {
		return cli.Exit(err, 1)
	}
	if c.Bool("json") {
		return cliout.JSON(env.Stdout, res)
	}
	fmt.Fprintf(env.Stdout, "snapshot %s written to backend %s (%d bytes, %s, read back and verified)\n", res.Name, res.Backend, res.Size, res.Digest)
	for _, n := range res.Removed {
		fmt.Fprintf(env.Stdout, "removed older snapshot %s\n", n)
	}
	return nil
}

func recoverCommand(env Env) *cli.Command {
	return &cli.Command{
		Name: "recover",
		Usage: "rebuild the registry database from the backends alone (the newest snapshot in one backend, then the manifest records of every backend); " +
			"only into a data directory without a database, with no service running",
		Flags: []cli.Flag{configFlag(), jsonFlag,
			&cli.StringFlag{Name: "from-backend", Required: true, Usage: "backend `ID` holding the snapshots"}},
		Action: func(c *cli.Context) error {
			cfg, err := loadFromCLI(c, env, nil)
			if err != nil {
				return cli.Exit(err, 2)
			}
			if _, ok := cfg.Backends[c.String("from-backend")]; !ok {
				return cli.Exit(&UsageError{Msg: fmt.Sprintf("--from-backend: backend %q is not configured", c.String("from-backend"))}, 2)
			}
			rep, err := recoverFrom(c.Context, cfg, NewLogger(env.Stderr, cfg.Log), c.String("from-backend"))
			if err != nil {
				return cli.Exit(err, 1)
			}
			if c.Bool("json") {
				cliout.JSON(env.Stdout, rep)
			} else {
				printRecoverReport(env.Stdout, cfg, rep)
			}
			if len(rep.Problems) > 0 {
				return cli.Exit(fmt.Sprintf("recovered, but %d things could not be restored as they were (listed above)", len(rep.Problems)), 1)
			}
			return nil
		},
	}
}

// recoverFrom refuses while a service answers on the admin socket, holds
// the database lock, or a database exists, then runs recovery.Recover.
func recoverFrom(ctx context.Context, cfg *Config, log *slog.Logger, from string) (*recovery.RecoverReport, error) {
	if c, err := net.DialTimeout("unix", cfg.AdminSocket(), time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("refusing to recover: a running service answers on %s; stop it first", cfg.AdminSocket())
	}
	if fi, err := os.Stat(cfg.Database.Path); err == nil {
		if st, err := store.Open(cfg.Database.Path, store.Options{LockTimeout: time.Second, ReadOnly: true}); errors.Is(err, store.ErrLocked) {
			return nil, fmt.Errorf("refusing to recover over a live database: %w", err)
		} else if err == nil {
			st.Close()
		}
		return nil, fmt.Errorf("refusing to recover: the database %s exists (%d bytes); recover only builds a new one: move it away first", cfg.Database.Path, fi.Size())
	}
	bs, err := buildBackends(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	for id, b := range bs {
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := b.Health(hctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("backend %s is not healthy; recover needs every configured backend: %w", id, err)
		}
	}
	return recovery.Recover(ctx, recovery.RecoverOptions{
		From:     from,
		Backends: bs,
		DBPath:   cfg.Database.Path,
		Logger:   log,
		Open: func(path string) (*store.Store, error) {
			return store.Open(path, store.Options{LockTimeout: cfg.Database.LockTimeout, Logger: log})
		},
	})
}

func printRecoverReport(w io.Writer, cfg *Config, rep *recovery.RecoverReport) {
	if rep.Snapshot != nil {
		fmt.Fprintf(w, "restored snapshot %s from backend %s (%d bytes, taken %s)\n", rep.Snapshot.Name, rep.Snapshot.Backend, rep.Snapshot.Size, rep.Snapshot.Time.Format(time.RFC3339))
	} else {
		fmt.Fprintln(w, "no usable snapshot: rebuilt from the manifest records alone (no tokens, webhook subscriptions, events or verification state were restored)")
	}
	fmt.Fprintf(w, "%d packages from the snapshot, %d recovered from manifest records, %d deleted since the snapshot\n",
		rep.FromSnapshot, len(rep.Recovered), len(rep.DeletedSinceSnapshot))
	for _, n := range rep.DeletedSinceSnapshot {
		fmt.Fprintf(w, "DELETED %s (no backend keeps its record any more)\n", n)
	}
	fmt.Fprintf(w, "locations: %d created from the backends' listings, %d dropped\n", rep.LocationsCreated, rep.LocationsDropped)
	for _, p := range rep.Problems {
		fmt.Fprintln(w, "NOT RESTORED", p.String())
	}
	fmt.Fprintf(w, "database %s written in %s\n", cfg.Database.Path, rep.Took.Round(time.Millisecond))
}
