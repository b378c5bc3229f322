package app

import (
	"artifactstore/internal/cliout"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"artifactstore/internal/registry"
)

var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print JSON for scripts"}

func storageCommand(env Env) *cli.Command {
	return &cli.Command{
		Name:  "storage",
		Usage: "inspect and test storage backends",
		Subcommands: []*cli.Command{
			{
				Name:  "ls",
				Usage: "show configured backends, routing rules, and what the registry places on each backend",
				Flags: []cli.Flag{configFlag(), jsonFlag},
				Action: func(c *cli.Context) error {
					var rep storageReport
					if _, err := adminGetJSON(c, env, "/v1/admin/storage", &rep); err != nil {
						return cli.Exit(err, 2)
					}
					if c.Bool("json") {
						return cliout.JSON(env.Stdout, rep)
					}
					printStorage(env.Stdout, &rep)
					return nil
				},
			},
			{
				Name:  "check",
				Usage: "self-test a backend: write, read, range-read, stat, list, large write, delete; leaves nothing behind",
				Flags: []cli.Flag{configFlag(), jsonFlag, &cli.StringFlag{Name: "backend", Required: true, Usage: "backend `ID`"}},
				Action: func(c *cli.Context) error {
					cfg, err := loadFromCLI(c, env, nil)
					if err != nil {
						return cli.Exit(err, 2)
					}
					id := c.String("backend")
					bc, ok := cfg.Backends[id]
					if !ok {
						return cli.Exit(fmt.Sprintf("no backend %q in the config", id), 2)
					}
					log := NewLogger(env.Stderr, cfg.Log)
					f := backendFactories[bc.Type]
					b, err := f(c.Context, id, bc, log)
					if err != nil {
						return cli.Exit(err, 2)
					}
					steps, ok := CheckBackend(c.Context, b)
					if c.Bool("json") {
						cliout.JSON(env.Stdout, map[string]any{"backend": id, "type": bc.Type, "target": backendTarget(bc), "ok": ok, "steps": steps})
					} else {
						fmt.Fprintf(env.Stdout, "storage check of backend %s (%s, %s)\n", id, bc.Type, backendTarget(bc))
						tw := cliout.Table(env.Stdout)
						for _, s := range steps {
							res := "PASS"
							if !s.OK {
								res = "FAIL"
							}
							fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", res, s.Name, s.Duration.Round(100*time.Microsecond), strings.TrimSpace(s.Detail+" "+s.Error))
						}
						tw.Flush()
						if last := steps[len(steps)-1]; last.Stopped != "" {
							fmt.Fprintln(env.Stdout, last.Stopped)
						}
					}
					if !ok {
						return cli.Exit("storage check failed", 1)
					}
					return nil
				},
			},
		},
	}
}

func printStorage(w io.Writer, rep *storageReport) {
	tw := cliout.Table(w)
	fmt.Fprintln(tw, "BACKEND\tTYPE\tTARGET\tBLOBS\tBYTES\tSTATUS\tHEALTH")
	for _, b := range rep.Backends {
		var st []string
		for k, v := range b.ByStatus {
			st = append(st, fmt.Sprintf("%s=%d", k, v))
		}
		health := "up"
		if !b.Healthy {
			health = "DOWN: " + b.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", b.ID, b.Type, b.Target, b.Blobs, b.Bytes, strings.Join(st, ","), health)
	}
	tw.Flush()
	for _, b := range rep.Backends {
		for _, iw := range b.IncompleteWrites {
			fmt.Fprintf(w, "INCOMPLETE %s on %s, started %s (an interrupted upload; cleanup aborts it after cleanup.incomplete_write_age)\n",
				iw.Name, b.ID, iw.Started.UTC().Format(time.RFC3339))
		}
	}
	if rep.UnderReplicated > 0 {
		fmt.Fprintf(w, "\nUNDER-REPLICATED: %d copies the rules ask for are not usable (pending below; failed ones in artifactstore verify and /v1/health); the service completes and repairs them from a good copy\n", rep.UnderReplicated)
		for _, p := range rep.PendingCopies {
			fmt.Fprintf(w, "PENDING %s on %s (%s, since %s)\n", p.Digest, p.Backend, p.Package, p.Since.UTC().Format(time.RFC3339))
		}
	}
	fmt.Fprintln(w, "\nROUTING (first match wins)")
	for i, r := range rep.Routing.Rules {
		fmt.Fprintf(w, "  %d. producer=%s retention_class=%s -> %s\n", i+1, orAny(r.Producer), orAny(r.RetentionClass), describeRoute(r.route()))
	}
	if def := rep.Routing.defaultRoute(); def.Primary() != "" {
		fmt.Fprintf(w, "  default -> %s\n", describeRoute(def))
	} else {
		fmt.Fprintln(w, "  default: none (a package no rule matches is refused)")
	}
}

// describeRoute shows a route's backends, and its minimum when it has copies.
func describeRoute(rt registry.Route) string {
	out := strings.Join(rt.Backends, ", ")
	if len(rt.Backends) > 1 {
		n := rt.MinCopies
		if n <= 0 {
			n = len(rt.Backends)
		}
		out += fmt.Sprintf(" (a copy on each; %d before commit)", n)
	}
	return out
}

func orAny(s string) string {
	if s == "" {
		return "*"
	}
	return s
}
