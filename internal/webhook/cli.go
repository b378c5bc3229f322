package webhook

import (
	"artifactstore/internal/cliout"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// CLI is what the webhook commands need from the application: a way to
// call the admin endpoints (of the running service, or in process) and
// where to print.
type CLI struct {
	// Do sends one admin request and returns the body of an answer with
	// status want; any other answer is an error naming it.
	Do     func(c *cli.Context, method, path string, body io.Reader, want int) ([]byte, error)
	Stdout io.Writer
	Stderr io.Writer
	// Flags are added to every subcommand (the config flag).
	Flags func() []cli.Flag
}

// Command is `artifactstore webhook add|ls|rm|test`.
func Command(e CLI) *cli.Command {
	flags := func(more ...cli.Flag) []cli.Flag { return append(e.Flags(), more...) }
	return &cli.Command{
		Name:  "webhook",
		Usage: "manage webhook subscriptions (signed event deliveries with retries)",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "subscribe a URL to events: add ID --url URL [--type GLOB]...",
				ArgsUsage: "ID",
				Flags: flags(
					&cli.StringFlag{Name: "url", Required: true, Usage: "receiver `URL` (http or https)"},
					&cli.StringSliceFlag{Name: "type", Usage: "event type `GLOB`, e.g. v1.package.* (repeatable; default: every type)"},
					&cli.StringFlag{Name: "producer", Usage: "only events whose producer matches `GLOB`"},
					&cli.StringFlag{Name: "retention-class", Usage: "only events whose retention class matches `GLOB`"},
					&cli.StringFlag{Name: "secret-file", Usage: "read the signing secret from `FILE` (default: generate one and print it once)"},
					&cli.BoolFlag{Name: "from-start", Usage: "deliver every event still in the log, not only new ones"},
					&cli.BoolFlag{Name: "json", Usage: "print JSON"},
				),
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return cli.Exit("want one subscription ID", 2)
					}
					req := CreateRequest{ID: c.Args().First(), URL: c.String("url"), Types: c.StringSlice("type"),
						Producer: c.String("producer"), RetentionClass: c.String("retention-class"), From: "now"}
					if c.Bool("from-start") {
						req.From = "start"
					}
					if f := c.String("secret-file"); f != "" {
						b, err := os.ReadFile(f)
						if err != nil {
							return cli.Exit(fmt.Sprintf("--secret-file: %v", err), 2)
						}
						req.Secret = strings.TrimRight(string(b), "\r\n")
					}
					body, _ := json.Marshal(req)
					b, err := e.Do(c, http.MethodPost, "/v1/admin/webhooks", bytes.NewReader(body), http.StatusCreated)
					if err != nil {
						return cli.Exit(err, 1)
					}
					var out Created
					if err := json.Unmarshal(b, &out); err != nil {
						return cli.Exit(err, 1)
					}
					if c.Bool("json") {
						return cliout.JSON(e.Stdout, out)
					}
					fmt.Fprintf(e.Stdout, "webhook %s added: %s, starting after event %d\n", out.Subscription.ID, out.Subscription.URL, out.Subscription.Cursor)
					if out.Secret != "" {
						fmt.Fprintf(e.Stdout, "secret (shown only now): %s\n", out.Secret)
					}
					return nil
				},
			},
			{
				Name:  "ls",
				Usage: "list subscriptions with their position, lag and failures (never their secrets)",
				Flags: flags(&cli.BoolFlag{Name: "json", Usage: "print JSON"}),
				Action: func(c *cli.Context) error {
					b, err := e.Do(c, http.MethodGet, "/v1/admin/webhooks", nil, http.StatusOK)
					if err != nil {
						return cli.Exit(err, 1)
					}
					var sts []Status
					if err := json.Unmarshal(b, &sts); err != nil {
						return cli.Exit(err, 1)
					}
					if c.Bool("json") {
						return cliout.JSON(e.Stdout, sts)
					}
					tw := cliout.Table(e.Stdout)
					fmt.Fprintln(tw, "ID\tURL\tTYPES\tCURSOR\tLAG\tSTATE\tLOST")
					for _, s := range sts {
						state := "ok"
						switch {
						case s.Failing:
							state = "FAILING since " + s.RetryingSince.Format(time.RFC3339)
						case s.RetryingSince != nil:
							state = "retrying"
						}
						types := strings.Join(s.Types, ",")
						if types == "" {
							types = "*"
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d events, %.0fs\t%s\t%d\n", s.ID, s.URL, types, s.Cursor, s.LagEvents, s.LagSeconds, state, s.LostEvents)
					}
					return tw.Flush()
				},
			},
			{
				Name:      "rm",
				Usage:     "remove a subscription and its position",
				ArgsUsage: "ID",
				Flags:     flags(),
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return cli.Exit("want one subscription ID", 2)
					}
					if _, err := e.Do(c, http.MethodDelete, "/v1/admin/webhooks/"+c.Args().First(), nil, http.StatusNoContent); err != nil {
						return cli.Exit(err, 1)
					}
					fmt.Fprintf(e.Stdout, "webhook %s removed\n", c.Args().First())
					return nil
				},
			},
			{
				Name:      "test",
				Usage:     "send one signed v1.webhook.test event to a subscription's URL and report the answer",
				ArgsUsage: "ID",
				Flags:     flags(),
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return cli.Exit("want one subscription ID", 2)
					}
					b, err := e.Do(c, http.MethodPost, "/v1/admin/webhooks/"+c.Args().First()+"/test", nil, http.StatusOK)
					if err != nil {
						return cli.Exit(err, 1)
					}
					var res TestResult
					if err := json.Unmarshal(b, &res); err != nil {
						return cli.Exit(err, 1)
					}
					if !res.OK {
						return cli.Exit(fmt.Sprintf("webhook %s: test delivery failed after %d ms: %s", c.Args().First(), res.DurationMS, res.Error), 1)
					}
					fmt.Fprintf(e.Stdout, "webhook %s: test delivery accepted in %d ms\n", c.Args().First(), res.DurationMS)
					return nil
				},
			},
		},
	}
}
