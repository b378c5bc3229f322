package app

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/urfave/cli/v2"

	"artifactstore/internal/cliout"
	"artifactstore/internal/lifecycle"
)

// lifecycleCommands are delete (a client command, through the API with a
// token), gc and retention (operator commands, through the admin path).
func lifecycleCommands(env Env) []*cli.Command {
	return []*cli.Command{
		{
			Name:        "delete",
			Usage:       "delete a package: delete --reason TEXT NAME@VERSION (its content goes when no other package needs it, through gc)",
			ArgsUsage:   "NAME@VERSION",
			Description: "Needs an admin token, or a publish token of the package's producer when auth.producer_delete is on.\n" + clientExitHelp,
			Flags:       append(serverFlags(), &cli.StringFlag{Name: "reason", Required: true, Usage: "why the package is deleted (recorded in the v1.package.deleted event)"}),
			Action: func(c *cli.Context) error {
				ref := c.Args().First()
				name, version, ok := strings.Cut(ref, "@")
				if c.NArg() != 1 || !ok || name == "" || version == "" {
					return cli.Exit("usage: artifactstore delete --reason TEXT NAME@VERSION", 2)
				}
				cl, err := clientFrom(c, env)
				if err != nil {
					return cli.Exit(err, 2)
				}
				res, err := cl.Delete(c.Context, name, version, c.String("reason"))
				if err != nil {
					return cli.Exit(err, 1)
				}
				if c.Bool("json") {
					return cliout.JSON(env.Stdout, res)
				}
				fmt.Fprintf(env.Stdout, "deleted %s@%s (%d files, %d bytes); its content is freed by the next gc where no other package uses it\n",
					name, version, res.Deleted.FileCount, res.Deleted.TotalBytes)
				return nil
			},
		},
		{
			Name:  "gc",
			Usage: "delete content no package needs (safe while the service runs): gc [--dry-run] [--orphans]",
			Description: "Runs inside the service over its admin socket, or in this process when no service runs.\n" +
				"--orphans also deletes objects the registry does not know, once gc has seen them for gc.orphan_grace.",
			Flags: []cli.Flag{configFlag(), jsonFlag,
				&cli.BoolFlag{Name: "dry-run", Usage: "print what would be deleted and freed per backend; change nothing"},
				&cli.BoolFlag{Name: "orphans", Usage: "also delete orphans seen longer than gc.orphan_grace"},
			},
			Action: func(c *cli.Context) error {
				q := url.Values{"dry_run": {fmt.Sprint(c.Bool("dry-run"))}, "orphans": {fmt.Sprint(c.Bool("orphans"))}}
				var rep lifecycle.GCReport
				if err := adminPost(c, env, "/v1/admin/gc?"+q.Encode(), &rep); err != nil {
					return err
				}
				if c.Bool("json") {
					cliout.JSON(env.Stdout, &rep)
				} else {
					lifecycle.PrintGC(env.Stdout, &rep)
				}
				if rep.Error != "" {
					return cli.Exit("", 1)
				}
				return nil
			},
		},
		{
			Name:  "retention",
			Usage: "retention policies per retention class",
			Subcommands: []*cli.Command{{
				Name:  "apply",
				Usage: "delete what the retention policies say, then collect the freed content: retention apply [--dry-run]",
				Flags: []cli.Flag{configFlag(), jsonFlag,
					&cli.BoolFlag{Name: "dry-run", Usage: "print the packages that would be deleted and the bytes each backend would free; change nothing"},
				},
				Action: func(c *cli.Context) error {
					var rep lifecycle.RetentionReport
					if err := adminPost(c, env, "/v1/admin/retention?dry_run="+fmt.Sprint(c.Bool("dry-run")), &rep); err != nil {
						return err
					}
					if c.Bool("json") {
						cliout.JSON(env.Stdout, &rep)
					} else {
						lifecycle.PrintRetention(env.Stdout, &rep)
					}
					if rep.Error != "" {
						return cli.Exit("", 1)
					}
					return nil
				},
			}},
		},
		{
			Name:  "prune-events",
			Usage: "remove events older than their retention age now (the service also does it every events.prune_interval)",
			Flags: []cli.Flag{configFlag(), jsonFlag},
			Action: func(c *cli.Context) error {
				var rep lifecycle.PruneReport
				if err := adminPost(c, env, "/v1/admin/events/prune", &rep); err != nil {
					return err
				}
				if c.Bool("json") {
					return cliout.JSON(env.Stdout, &rep)
				}
				fmt.Fprintf(env.Stdout, "pruned %d events (%d bytes); the oldest available is seq %d\n", rep.Deleted, rep.Bytes, rep.Horizon)
				if rep.Error != "" {
					return cli.Exit(rep.Error, 1)
				}
				return nil
			},
		},
	}
}

// adminPost sends a POST to an admin endpoint (running service or in
// process) and decodes its JSON answer. Config and connection problems
// exit 2, a failed request 1.
func adminPost(c *cli.Context, env Env, path string, out any) error {
	cfg, err := loadFromCLI(c, env, nil)
	if err != nil {
		return cli.Exit(err, 2)
	}
	conn, err := dialAdmin(c.Context, cfg, NewLogger(env.Stderr, cfg.Log))
	if err != nil {
		return cli.Exit(err, 2)
	}
	defer conn.close()
	req, err := http.NewRequestWithContext(c.Context, http.MethodPost, adminBase+path, nil)
	if err != nil {
		return cli.Exit(err, 2)
	}
	resp, err := conn.http.Do(req)
	if err != nil {
		return cli.Exit(err, 1)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		return cli.Exit(fmt.Sprintf("%s: %s: %s", path, resp.Status, strings.TrimSpace(string(b))), 1)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return cli.Exit(fmt.Errorf("%s: %w", path, err), 1)
	}
	return nil
}
