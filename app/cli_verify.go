package app

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"artifactstore/internal/cliout"
	"artifactstore/internal/replication"
	"artifactstore/internal/verify"
	"artifactstore/store"
)

// Exit codes of verify, documented for cron and alerting.
const (
	exitVerified  = 0 // every location verified
	exitFailures  = 1 // at least one mismatch, missing or unreadable location
	exitCannotRun = 2 // the run could not be done (config, database, backend listing)
)

// verifyLine is one line of the admin verify stream (NDJSON).
type verifyLine struct {
	Type    string         `json:"type"` // start, verdict, report, error
	Backend string         `json:"backend,omitempty"`
	Total   int            `json:"total,omitempty"`
	Verdict *store.Verdict `json:"verdict,omitempty"`
	Report  *verify.Report `json:"report,omitempty"`
	Error   string         `json:"error,omitempty"`
}

// adminVerify is POST /v1/admin/verify?backend=ID&mode=deep|quick: it runs
// verification in this process and streams NDJSON progress.
func (s *Service) adminVerify(w http.ResponseWriter, r *http.Request) {
	backend := r.URL.Query().Get("backend")
	mode := r.URL.Query().Get("mode")
	if mode == "" {
		mode = store.ModeDeep
	}
	if _, ok := s.Backends[backend]; !ok {
		adminError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no backend %q", backend))
		return
	}
	if mode != store.ModeDeep && mode != store.ModeQuick {
		adminError(w, http.StatusBadRequest, "bad_request", "mode must be deep or quick")
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	// A write error means the reader went away, which also cancels
	// r.Context() and so the run.
	send := cliout.NDJSON(w)
	rep, err := s.Verify.Run(r.Context(), backend, mode, verify.Hooks{
		Start:   func(total int) { send(verifyLine{Type: "start", Backend: backend, Total: total}) },
		Verdict: func(v store.Verdict) { send(verifyLine{Type: "verdict", Verdict: &v}) },
	})
	if err != nil {
		send(verifyLine{Type: "error", Backend: backend, Error: err.Error()})
		return
	}
	send(verifyLine{Type: "report", Backend: backend, Report: rep})
}

func verifyFlags() []cli.Flag {
	return []cli.Flag{
		configFlag(), jsonFlag,
		&cli.BoolFlag{Name: "quick", Usage: "check existence and size only, not content"},
		&cli.BoolFlag{Name: "repair", Usage: "then rewrite every failed location from a good copy on another backend, and write pending copies (exit 1 only if a failure remains)"},
	}
}

const verifyHelp = `Exit codes: 0 every location verified; 1 failures found (mismatch, missing
or unreadable); 2 bad usage or an invalid configuration, or verification
could not run (database, admin socket, backend listing). With the service running, the
run happens inside it (over the admin socket) and progress streams back;
otherwise this command opens the database itself.`

func verifyCommands(env Env) (*cli.Command, *cli.Command) {
	all := &cli.Command{
		Name:        "verify",
		Usage:       "re-read stored objects of every backend (or --backend) and record verdicts",
		Description: verifyHelp,
		Flags:       append(verifyFlags(), &cli.StringSliceFlag{Name: "backend", Usage: "only this backend `ID` (repeatable)"}),
		Action:      func(c *cli.Context) error { return runVerify(c, env, c.StringSlice("backend")) },
	}
	one := &cli.Command{
		Name:        "verify",
		Usage:       "re-read every stored object of one backend and record verdicts",
		Description: verifyHelp,
		Flags:       append(verifyFlags(), &cli.StringFlag{Name: "backend", Required: true, Usage: "backend `ID`"}),
		Action:      func(c *cli.Context) error { return runVerify(c, env, []string{c.String("backend")}) },
	}
	return all, one
}

func runVerify(c *cli.Context, env Env, ids []string) error {
	cfg, err := loadFromCLI(c, env, nil)
	if err != nil {
		return cli.Exit(err, exitCannotRun)
	}
	if len(ids) == 0 {
		for id := range cfg.Backends {
			ids = append(ids, id)
		}
		sort.Strings(ids)
	}
	for _, id := range ids {
		if _, ok := cfg.Backends[id]; !ok {
			return cli.Exit(fmt.Sprintf("no backend %q in the config", id), exitCannotRun)
		}
	}
	mode := store.ModeDeep
	if c.Bool("quick") {
		mode = store.ModeQuick
	}
	conn, err := dialAdmin(c.Context, cfg, NewLogger(env.Stderr, cfg.Log))
	if err != nil {
		return cli.Exit(err, exitCannotRun)
	}
	defer conn.close()
	terminal := false
	if f, ok := env.Stderr.(*os.File); ok {
		terminal = isatty.IsTerminal(f.Fd())
	}
	var reports []*verify.Report
	failed := false
	for _, id := range ids {
		rep, err := streamVerify(c.Context, conn, id, mode, env, terminal && !c.Bool("json"), !c.Bool("json"))
		if err != nil {
			return cli.Exit(fmt.Sprintf("verify %s: %v", id, err), exitCannotRun)
		}
		reports = append(reports, rep)
		for verdict, n := range rep.ByVerdict {
			if verdict != store.StatusVerified && n > 0 {
				failed = true
			}
		}
		// A location stays failed until evidence clears it (a quick pass
		// cannot clear a mismatch): the exit status says so too.
		if rep.FailedTotal > 0 {
			failed = true
		}
	}
	var repair *replication.Report
	if c.Bool("repair") {
		repair = &replication.Report{}
		if err := adminPostJSON(c.Context, conn, "/v1/admin/repair", repair); err != nil {
			return cli.Exit(fmt.Sprintf("repair: %v", err), exitCannotRun)
		}
		if !c.Bool("json") {
			for _, it := range repair.Items {
				fmt.Fprintf(env.Stdout, "REPAIR %s %s on %s from %s: %s %s\n", it.Kind, it.Digest, it.Target, orAny(it.Source), it.Result, it.Error)
			}
			fmt.Fprintf(env.Stdout, "repair: %s\n", repair)
		}
		// What the repair fixed no longer counts as a failure.
		failed = repair.Failed > 0 || repair.Unrepairable > 0
	}
	if c.Bool("json") {
		out := map[string]any{"mode": mode, "remote": conn.Remote, "reports": reports}
		if repair != nil {
			out["repair"] = repair
		}
		cliout.JSON(env.Stdout, out)
	}
	if failed {
		return cli.Exit("", exitFailures)
	}
	return nil
}

// adminPostJSON sends an empty POST to an admin path and decodes the answer.
func adminPostJSON(ctx context.Context, conn *adminConn, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, adminBase+path, nil)
	if err != nil {
		return err
	}
	resp, err := conn.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func streamVerify(ctx context.Context, conn *adminConn, id, mode string, env Env, bar, plain bool) (*verify.Report, error) {
	q := url.Values{"backend": {id}, "mode": {mode}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, adminBase+"/v1/admin/verify?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := conn.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		return nil, fmt.Errorf("%s: %s", resp.Status, b)
	}
	var pb *progressbar.ProgressBar
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var l verifyLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("bad progress line: %w", err)
		}
		switch l.Type {
		case "start":
			if bar {
				pb = progressbar.NewOptions(l.Total, progressbar.OptionSetWriter(env.Stderr),
					progressbar.OptionSetDescription(fmt.Sprintf("verify %s (%s)", id, mode)),
					progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
			} else if plain {
				fmt.Fprintf(env.Stdout, "verify %s (%s): %d locations to check\n", id, mode, l.Total)
			}
		case "verdict":
			if pb != nil {
				pb.Add(1)
			}
			if v := l.Verdict; plain && v.Failed() {
				if pb != nil {
					pb.Clear()
				}
				fmt.Fprintf(env.Stdout, "FAIL %s %s on %s: %s\n", v.Verdict, v.Digest, v.Backend, v.Error)
			}
		case "error":
			return nil, errors.New(l.Error)
		case "report":
			if pb != nil {
				pb.Finish()
			}
			r := l.Report
			if plain {
				fmt.Fprintf(env.Stdout, "verify %s (%s): %d checked, %s, %d bytes read, %d orphans", id, mode, r.Checked, verdictCounts(r.ByVerdict), r.BytesRead, r.Orphans)
				if r.Resumed {
					fmt.Fprint(env.Stdout, " (resumed an interrupted run)")
				}
				fmt.Fprintln(env.Stdout)
				for _, f := range r.StillFailed {
					fmt.Fprintf(env.Stdout, "FAILED %s %s on %s (%s)\n  what to do: %s\n", f.Status, f.Digest, f.Backend, f.LastError, f.Action)
				}
				if r.FailedTotal > len(r.StillFailed) {
					fmt.Fprintf(env.Stdout, "... and %d more failed locations (GET /v1/health)\n", r.FailedTotal-len(r.StillFailed))
				}
				for _, o := range r.OrphanDigests {
					fmt.Fprintf(env.Stdout, "ORPHAN %s on %s (not referenced by the registry; left in place)\n", o, id)
				}
				for _, w := range r.IncompleteWrites {
					fmt.Fprintf(env.Stdout, "INCOMPLETE %s on %s, started %s (an interrupted upload; cleanup aborts it after cleanup.incomplete_write_age)\n",
						w.Name, id, w.Started.UTC().Format(time.RFC3339))
				}
			}
			return r, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, errors.New("the verification stream ended without a report")
}

func verdictCounts(m map[string]int) string {
	out := ""
	for _, k := range []string{store.StatusVerified, store.StatusMismatch, store.StatusMissing, store.StatusUnreadable} {
		if out != "" {
			out += ", "
		}
		out += fmt.Sprintf("%d %s", m[k], k)
	}
	return out
}
