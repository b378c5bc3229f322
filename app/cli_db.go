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
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"artifactstore/internal/cliout"
	"artifactstore/internal/durable"
	"artifactstore/store"
)

// adminBackup is GET /v1/admin/backup: a consistent snapshot of the
// database, streamed while the service keeps serving.
func (s *Service) adminBackup(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	_, err := s.Store.WriteBackup(r.Context(), w, func(n int64) {
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	})
	if err != nil {
		s.Log.Error("backup failed", "err", err)
	}
}

// dbCheckResult is GET /v1/admin/db/check.
type dbCheckResult struct {
	OK       bool            `json:"ok"`
	Problems []store.Problem `json:"problems"`
	// Repaired lists what POST /v1/admin/db/repair found before it rebuilt
	// the derived records (counters, indexes); Problems is what remains.
	Repaired []store.Problem `json:"repaired,omitempty"`
}

// adminDBRepair is POST /v1/admin/db/repair: rebuild every derived record
// (location counters, failed-location index, listing indexes) from the
// records they derive from, then check again.
func (s *Service) adminDBRepair(w http.ResponseWriter, r *http.Request) {
	before, err := s.dbCheck(r.Context())
	if err == nil {
		err = s.Store.Repair(r.Context())
	}
	if err == nil {
		// Rewrites the manifest records that are missing, differ or were
		// tampered with, from the database.
		_, err = s.Recovery.Repair(r.Context(), before)
	}
	var after []store.Problem
	if err == nil {
		after, err = s.dbCheck(r.Context())
	}
	if err != nil {
		adminError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	if after == nil {
		after = []store.Problem{}
	}
	var repaired []store.Problem
	for _, p := range before {
		if !slices.Contains(after, p) {
			repaired = append(repaired, p)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	cliout.JSON(w, dbCheckResult{OK: len(after) == 0, Problems: after, Repaired: repaired})
}

// dbCheck is the database's own check followed by the comparison with the
// manifest records in the backends (after writing what the outbox holds).
func (s *Service) dbCheck(ctx context.Context) ([]store.Problem, error) {
	problems, err := s.Store.Check(ctx, s.Registry.BackendIDs(), 1000)
	if err != nil {
		return nil, err
	}
	fctx, cancel := context.WithTimeout(ctx, recordsFlushTimeout)
	defer cancel()
	if err := s.Recovery.Flush(fctx); err != nil {
		s.Log.Warn("db check: writing pending manifest records failed; they are compared as they are", "err", err)
	}
	more, err := s.Recovery.Compare(ctx, 1000-len(problems))
	return append(problems, more...), err
}

func (s *Service) adminDBCheck(w http.ResponseWriter, r *http.Request) {
	problems, err := s.dbCheck(r.Context())
	if err != nil {
		adminError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	if problems == nil {
		problems = []store.Problem{}
	}
	w.Header().Set("Content-Type", "application/json")
	cliout.JSON(w, dbCheckResult{OK: len(problems) == 0, Problems: problems})
}

func dbCommands(env Env) []*cli.Command {
	backup := &cli.Command{
		Name:  "backup",
		Usage: "write a consistent copy of the registry database (works while the service runs)",
		Flags: []cli.Flag{configFlag(), jsonFlag, &cli.StringFlag{Name: "out", Usage: "backup `FILE` to write"},
			&cli.StringFlag{Name: "to-backend", Usage: "write a snapshot into backend `ID` instead (verified after writing; the last snapshots.keep are kept)"}},
		Action: func(c *cli.Context) error {
			switch {
			case c.String("to-backend") != "" && c.String("out") != "":
				return cli.Exit(&UsageError{Msg: "give --out FILE or --to-backend ID, not both"}, 2)
			case c.String("to-backend") != "":
				return backupToBackend(c, env, c.String("to-backend"))
			case c.String("out") == "":
				return cli.Exit(&UsageError{Msg: "give --out FILE (a backup file) or --to-backend ID (a snapshot into a backend)"}, 2)
			}
			cfg, err := loadFromCLI(c, env, nil)
			if err != nil {
				return cli.Exit(err, 2)
			}
			n, remote, err := backupTo(c.Context, cfg, NewLogger(env.Stderr, cfg.Log), c.String("out"))
			if err != nil {
				return cli.Exit(err, 1)
			}
			how := "opened the database directly"
			if remote {
				how = "through the running service"
			}
			fmt.Fprintf(env.Stdout, "backup written to %s (%d bytes, %s, checked)\n", c.String("out"), n, how)
			return nil
		},
	}
	restore := &cli.Command{
		Name:  "restore",
		Usage: "replace the registry database with a backup; refuses while the database is in use",
		Flags: []cli.Flag{configFlag(),
			&cli.StringFlag{Name: "from", Required: true, Usage: "backup `FILE`"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing database (it is kept as <path>.before-restore-<time>)"},
		},
		Action: func(c *cli.Context) error {
			cfg, err := loadFromCLI(c, env, nil)
			if err != nil {
				return cli.Exit(err, 2)
			}
			kept, err := restoreFrom(c.Context, cfg, c.String("from"), c.Bool("force"))
			if err != nil {
				return cli.Exit(err, 1)
			}
			fmt.Fprintf(env.Stdout, "restored %s from %s\n", cfg.Database.Path, c.String("from"))
			if kept != "" {
				fmt.Fprintf(env.Stdout, "the previous database is kept as %s\n", kept)
			}
			return nil
		},
	}
	db := &cli.Command{
		Name:  "db",
		Usage: "registry database maintenance",
		Subcommands: []*cli.Command{{
			Name:  "check",
			Usage: "check bbolt's consistency and the registry's invariants, and compare the database with the manifest records in the backends; exit 1 if anything is wrong",
			Flags: []cli.Flag{configFlag(), jsonFlag, &cli.BoolFlag{Name: "repair",
				Usage: "rebuild the derived records (location counters, failed-location index, listing indexes, package content references) from the records they derive from, rewrite manifest records in the backends that are missing, differ or were tampered with, then check"}},
			Action: func(c *cli.Context) error {
				var res dbCheckResult
				var cfg *Config
				var err error
				if c.Bool("repair") {
					var b []byte
					b, err = adminDo(c, env, http.MethodPost, "/v1/admin/db/repair", nil, http.StatusOK)
					if err == nil {
						err = json.Unmarshal(b, &res)
					}
					if err == nil {
						cfg, err = loadFromCLI(c, env, nil)
					}
				} else {
					cfg, err = adminGetJSON(c, env, "/v1/admin/db/check", &res)
				}
				if err != nil {
					return cli.Exit(err, 2)
				}
				if !c.Bool("json") {
					for _, p := range res.Repaired {
						fmt.Fprintln(env.Stdout, "REPAIRED", p.String())
					}
				}
				if c.Bool("json") {
					cliout.JSON(env.Stdout, res)
				} else if res.OK {
					fmt.Fprintf(env.Stdout, "database %s is consistent\n", cfg.Database.Path)
				} else {
					for _, p := range res.Problems {
						fmt.Fprintln(env.Stdout, "PROBLEM", p.String())
					}
				}
				if !res.OK {
					return cli.Exit(fmt.Sprintf("%d problems found", len(res.Problems)), 1)
				}
				return nil
			},
		}},
	}
	return []*cli.Command{backup, restore, db}
}

// backupTo writes a backup through the admin path to a temporary file,
// checks that it opens and passes the consistency checks, then renames it
// into place. It reports whether a running service produced it.
func backupTo(ctx context.Context, cfg *Config, log *slog.Logger, out string) (int64, bool, error) {
	conn, err := dialAdmin(ctx, cfg, log)
	if err != nil {
		return 0, false, err
	}
	defer conn.close()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, adminBase+"/v1/admin/backup", nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := conn.http.Do(req)
	if err != nil {
		return 0, conn.Remote, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, conn.Remote, fmt.Errorf("backup: %s", resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o750); err != nil {
		return 0, conn.Remote, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".tmp-*")
	if err != nil {
		return 0, conn.Remote, err
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("backup stream ended after %d of %d bytes", n, resp.ContentLength)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, conn.Remote, fmt.Errorf("write backup: %w", err)
	}
	if err := checkBackupFile(ctx, tmp.Name()); err != nil {
		return 0, conn.Remote, err
	}
	if err := durable.Rename(tmp.Name(), out); err != nil {
		return 0, conn.Remote, err
	}
	return n, conn.Remote, nil
}

// checkBackupFile checks a backup before it is kept or restored.
func checkBackupFile(ctx context.Context, path string) error {
	return store.CheckFile(path)
}

// restoreFrom copies a checked backup over the configured database. It
// refuses while a service answers on the admin socket or holds the
// database lock, and replaces an existing database only with force,
// keeping the old file beside it.
func restoreFrom(ctx context.Context, cfg *Config, from string, force bool) (string, error) {
	if c, err := net.DialTimeout("unix", cfg.AdminSocket(), time.Second); err == nil {
		c.Close()
		return "", fmt.Errorf("refusing to restore: a running service answers on %s; stop it first", cfg.AdminSocket())
	}
	if err := checkBackupFile(ctx, from); err != nil {
		return "", err
	}
	dst := cfg.Database.Path
	kept := ""
	if _, err := os.Stat(dst); err == nil {
		// Taking the lock proves no process uses the database.
		st, err := store.Open(dst, store.Options{LockTimeout: time.Second, ReadOnly: true})
		if err != nil {
			if errors.Is(err, store.ErrLocked) {
				return "", fmt.Errorf("refusing to restore over a live database: %w", err)
			}
		} else {
			st.Close()
		}
		if !force {
			return "", fmt.Errorf("refusing to replace the existing database %s without --force", dst)
		}
		kept = fmt.Sprintf("%s.before-restore-%s", dst, time.Now().UTC().Format("20060102T150405Z"))
		if err := durable.Rename(dst, kept); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return kept, err
	}
	src, err := os.Open(from)
	if err != nil {
		return kept, err
	}
	defer src.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), filepath.Base(dst)+".restore-*")
	if err != nil {
		return kept, err
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, src)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o600)
	}
	if err == nil {
		err = durable.Rename(tmp.Name(), dst)
	}
	return kept, err
}
