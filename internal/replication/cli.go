package replication

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"

	"github.com/urfave/cli/v2"

	"artifactstore/store"
)

// CLI is what the migration command needs from the application: a way to
// call an admin endpoint (of the running service, or in process) and
// read its answer as it streams, and where to print.
type CLI struct {
	// Stream sends one admin POST and returns the body of a 200 answer;
	// any other answer is an error naming it.
	Stream func(c *cli.Context, path string) (io.ReadCloser, error)
	Stdout io.Writer
	// Flags are added to the command (the config flag).
	Flags func() []cli.Flag
}

// MigrateCommand is `artifactstore storage migrate`.
func MigrateCommand(e CLI) *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "copy content to another backend (--from ID --to ID, or --by-rules), verify it, then optionally remove the source copy",
		Description: `Runs inside the service (over the admin socket) while publishes and reads go on;
without a running service it opens the database itself. Each content is copied
through the digest check, read back and recorded before any source copy is removed
(--delete-source; never the last usable copy, never one an upload counts on). It
obeys the deep-verification byte budget (verify.bytes_per_second). Interrupted
(a crash, a restart, Ctrl-C), the same command resumes where it stopped; run again
after it finished, it finds everything in place. Change the routing first, so new
packages go where the old ones are moving.

Exit codes: 0 done; 1 some contents failed to move (run it again to retry);
2 bad usage, or the migration could not run.`,
		Flags: append(e.Flags(),
			&cli.StringFlag{Name: "from", Usage: "source backend `ID`"},
			&cli.StringFlag{Name: "to", Usage: "target backend `ID`"},
			&cli.BoolFlag{Name: "by-rules", Usage: "give every package's content a copy on each backend its routing rule names now (instead of --from/--to)"},
			&cli.StringFlag{Name: "producer", Usage: "only packages whose producer matches `GLOB`"},
			&cli.StringFlag{Name: "retention-class", Usage: "only packages whose retention class matches `GLOB`"},
			&cli.BoolFlag{Name: "delete-source", Usage: "remove the source copy once the new one is verified (--by-rules: copies on backends no rule names)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would move and how many bytes; change nothing"},
			&cli.IntFlag{Name: "concurrency", Value: 4, Usage: "contents moved at once (1-64)"},
			&cli.BoolFlag{Name: "json", Usage: "print the final report as JSON"},
		),
		Action: func(c *cli.Context) error {
			q := url.Values{}
			for flag, param := range map[string]string{"from": "from", "to": "to", "producer": "producer", "retention-class": "retention_class"} {
				if v := c.String(flag); v != "" {
					q.Set(param, v)
				}
			}
			for flag, param := range map[string]string{"by-rules": "by_rules", "delete-source": "delete_source", "dry-run": "dry_run"} {
				if c.Bool(flag) {
					q.Set(param, "1")
				}
			}
			q.Set("concurrency", strconv.Itoa(c.Int("concurrency")))
			body, err := e.Stream(c, "/v1/admin/migrate?"+q.Encode())
			if err != nil {
				return cli.Exit(err, 2)
			}
			defer body.Close()
			sc := bufio.NewScanner(body)
			sc.Buffer(make([]byte, 64<<10), 16<<20)
			plain := !c.Bool("json")
			for sc.Scan() {
				var l MigrateLine
				if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
					return cli.Exit(fmt.Sprintf("bad progress line: %v", err), 2)
				}
				switch l.Type {
				case "progress":
					if plain {
						fmt.Fprintf(e.Stdout, "migrate: %s\n", describeRun(l.Run, c.Bool("dry-run")))
					}
				case "error":
					return cli.Exit("migrate: "+l.Error+" (run the same command again to resume)", 2)
				case "report":
					if !plain {
						enc := json.NewEncoder(e.Stdout)
						enc.SetIndent("", "  ")
						enc.Encode(l.Run)
					} else {
						fmt.Fprintf(e.Stdout, "migrate done: %s\n", describeRun(l.Run, c.Bool("dry-run")))
					}
					if l.Run.Failed > 0 {
						return cli.Exit(fmt.Sprintf("%d contents failed to move; run the same command again to retry", l.Run.Failed), 1)
					}
					return nil
				}
			}
			if err := sc.Err(); err != nil {
				return cli.Exit(err, 2)
			}
			return cli.Exit(errors.New("the migration stream ended without a report (run the same command again to resume)"), 2)
		},
	}
}

// describeRun is one progress line for people.
func describeRun(r *store.MigrationRun, dry bool) string {
	verb, del := "copied", "deleted"
	if dry {
		verb, del = "would copy", "would delete"
	}
	s := fmt.Sprintf("%d packages, %d contents: %s %d (%d bytes), %d already in place, %s %d source copies (%d bytes), %d kept, %d failed",
		r.Packages, r.Contents, verb, r.Copied, r.CopiedBytes, r.Present, del, r.Deleted, r.DeletedBytes, r.Kept, r.Failed)
	if r.Resumed {
		s += " (resumed an interrupted run)"
	}
	return s
}
